"""A loopback W&B server for tests: answers the GraphQL operations and file-stream calls the real client sends.

Since wandb 0.27 every API call goes through the Go service (wandb-core), so patching ``requests``
cannot intercept it; the client is pointed at this server with ``WANDB_BASE_URL`` instead.

Honesty rules: every GraphQL document is parsed and validated against a small schema holding only
the fields the supported client versions (recorded with wandb 0.31) really select, and its
operation name must be one of ``KNOWN_OPERATIONS``; anything else is answered with an error *and*
recorded in ``server.unknown`` so that a test fixture can fail loudly.  Run state follows the real
service's rules that matter to us: history arrives through the file stream at line offsets,
summaries and tags change through ``upsertBucket``, deleted runs disappear from every query.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest

from graphql import (
    GraphQLError,
    GraphQLScalarType,
    build_schema,
    graphql_sync,
    parse,
)
from graphql.language import OperationDefinitionNode

# Operation names seen from wandb 0.31 (Python public API + wandb-core); others are refused.
KNOWN_OPERATIONS = frozenset({
    "Viewer", "ServerFeaturesQuery", "ServerInfo", "Runs", "Run", "RunState",
    "RunHistoryKeys", "RunParquetHistory", "SampledHistoryPage", "HistoryPage",
    "RunSampledHistory", "RunFullHistory", "QueryRunInfo", "RunResumeStatus",
    "UpsertBucket", "CreateRunFiles", "MarkRunFilesUploaded", "NotifyScriptableRunAlert",
    "DeleteRun", "StopRun", "ClientIDMapping", "GetDefaultEntity",
    "OrganizationCoreWeaveOrganizationID",
})

SDL = """
scalar JSONString
scalar JSON
scalar Int64
scalar Duration
scalar DateTime

enum AlertSeverity { INFO WARN ERROR }

type Query {
  viewer: User
  serverInfo: ServerInfo
  project(name: String, entityName: String): Project
  model(name: String, entityName: String): Project
  clientIDMapping(clientID: ID!): ClientIDMapping
  entity(name: String!): Entity
}

type ClientIDMapping { serverID: ID }
type ServerInfo {
  features: [ServerFeature!]!
  cliVersionInfo: JSON
  latestLocalVersionInfo: JSON
}
type ServerFeature { name: String!  isEnabled: Boolean! }
type User {
  id: ID!
  name: String
  entity: String
  username: String
  email: String
  flags: JSONString
  admin: Boolean
  teams: EntityConnection
}
type EntityConnection { edges: [EntityEdge!]! }
type EntityEdge { node: Entity }
type Entity { id: ID!  name: String!  organization: Organization }
type Organization { coreWeaveOrganizationId: String }

type Project {
  id: ID!
  internalId: ID!
  name: String!
  entity: Entity!
  readOnly: Boolean
  runCount(filters: JSONString): Int!
  runs(filters: JSONString, after: String, first: Int, order: String): RunConnection!
  run(name: String!): Run
  bucket(name: String!, missingOk: Boolean): Run
}
type RunConnection { edges: [RunEdge!]!  pageInfo: PageInfo! }
type RunEdge { node: Run!  cursor: String! }
type PageInfo { endCursor: String  hasNextPage: Boolean! }

type Run {
  id: ID!
  name: String!
  projectId: ID!
  project: Project
  displayName: String
  sweepName: String
  state: String
  config: JSONString
  group: String
  jobType: String
  commit: String
  readOnly: Boolean
  createdAt: DateTime
  heartbeatAt: DateTime
  description: String
  notes: String
  tags: [String!]!
  systemMetrics: JSONString
  summaryMetrics: JSONString
  historyLineCount: Int
  logLineCount: Int
  eventsLineCount: Int
  historyTail: String
  eventsTail: String
  wandbConfig(keys: [String!]): JSONString
  user: User
  historyKeys(format: String): JSON
  history(minStep: Int64, maxStep: Int64, samples: Int): [String!]!
  events(samples: Int): [String!]!
  sampledHistory(specs: [JSONString!]!): [JSON!]!
  parquetHistory(liveKeys: [String!]!): ParquetHistory!
}
type ParquetHistory { parquetUrls: [String!]!  liveData: [JSON!]! }

input UpsertBucketInput {
  id: String
  name: String
  groupName: String
  modelName: String
  entityName: String
  description: String
  displayName: String
  notes: String
  config: JSONString
  commit: String
  host: String
  debug: Boolean
  jobProgram: String
  jobRepo: String
  jobType: String
  state: String
  sweep: String
  tags: [String!]
  summaryMetrics: JSONString
}
type UpsertBucketPayload { bucket: Run  inserted: Boolean }

input CreateRunFilesInput { entityName: String!  projectName: String!  runName: String!  files: [String!]! }
type CreateRunFilesPayload { runID: ID!  uploadHeaders: [String!]!  files: [RunFileUpload!]! }
type RunFileUpload { name: String!  uploadUrl: String }

input MarkRunFilesUploadedInput { entityName: String!  projectName: String!  runName: String!  files: [String!]! }
input NotifyScriptableRunAlertInput {
  entityName: String!
  projectName: String!
  runName: String!
  title: String!
  text: String!
  severity: AlertSeverity
  waitDuration: Duration
}
input DeleteRunInput { id: ID!  deleteArtifacts: Boolean  clientMutationId: String }
input StopRunInput { id: ID! }
type SuccessPayload { success: Boolean!  clientMutationId: String }

type Mutation {
  upsertBucket(input: UpsertBucketInput!): UpsertBucketPayload
  createRunFiles(input: CreateRunFilesInput!): CreateRunFilesPayload
  markRunFilesUploaded(input: MarkRunFilesUploadedInput!): SuccessPayload
  notifyScriptableRunAlert(input: NotifyScriptableRunAlertInput!): SuccessPayload
  deleteRun(input: DeleteRunInput!): SuccessPayload
  stopRun(input: StopRunInput!): SuccessPayload
}
"""


def _identity(value: Any) -> Any:
    return value


def _parse_literal(node: Any, _variables: Any = None) -> Any:
    from graphql import value_from_ast_untyped

    return value_from_ast_untyped(node, _variables)


def _json_string(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


SCHEMA = build_schema(SDL)
for _name, _serialize in [("JSONString", _json_string), ("JSON", _identity), ("Int64", _identity),
                          ("Duration", _identity), ("DateTime", _identity)]:
    _scalar: GraphQLScalarType = SCHEMA.type_map[_name]  # type: ignore[assignment]
    _scalar.serialize = _serialize  # type: ignore[method-assign]
    _scalar.parse_value = _identity  # type: ignore[method-assign]
    _scalar.parse_literal = _parse_literal  # type: ignore[method-assign]


def storage_id(entity: str, project: str, name: str) -> str:
    """The opaque server id of a run, shaped like W&B's base64 node ids."""
    return base64.b64encode(f"Run:v1:{name}:{project}:{entity}".encode()).decode()


@dataclass
class FakeRun:
    """One run as the server stores it."""

    entity: str
    project: str
    name: str
    display_name: str = ""
    state: str = "running"
    config: dict[str, Any] = field(default_factory=dict)  # W&B form: {key: {"value": v, "desc": d}}
    summary: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    group: str | None = None
    job_type: str | None = None
    notes: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per history line
    events: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    heartbeat_at: float = field(default_factory=time.time)
    exit_code: int | None = None
    stop_requests: int = 0  # stopRun calls (the real service flags the run; its client then exits)

    @property
    def id(self) -> str:
        return storage_id(self.entity, self.project, self.name)

    @property
    def last_step(self) -> int:
        steps = [int(r["_step"]) for r in self.history if "_step" in r]
        return max(steps) if steps else -1

    def history_keys(self) -> dict[str, Any]:
        keys: dict[str, Any] = {}
        for row in self.history:
            for k, v in row.items():
                kind = "number" if isinstance(v, (int, float)) and not isinstance(v, bool) else "string"
                info = keys.setdefault(k, {"typeCounts": [{"type": kind, "count": 0}]})
                info["typeCounts"][0]["count"] += 1
        return {"lastStep": self.last_step, "keys": keys}

    def user_config(self) -> dict[str, Any]:
        """The config as the user logged it (values only)."""
        return {k: (v["value"] if isinstance(v, dict) and "value" in v else v)
                for k, v in self.config.items() if k not in ("_wandb", "wandb_version")}

    def metric(self, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one history key, for assertions."""
        rows = sorted((r for r in self.history if key in r), key=lambda r: r["_step"])
        return [int(r["_step"]) for r in rows], [r[key] for r in rows]


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))


def _match(run: FakeRun, filters: dict[str, Any]) -> bool:
    """The subset of W&B's Mongo-style run filters we support; unknown operators fail loudly."""
    for key, cond in filters.items():
        if key == "$and":
            if not all(_match(run, f) for f in cond):
                return False
            continue
        if key == "$or":
            if not any(_match(run, f) for f in cond):
                return False
            continue
        value = _field(run, key)
        if isinstance(cond, dict):
            for op, arg in cond.items():
                if op == "$in":
                    ok = value in arg
                elif op == "$nin":
                    ok = value not in arg
                elif op == "$ne":
                    ok = value != arg
                elif op == "$eq":
                    ok = value == arg
                elif op == "$regex":
                    ok = value is not None and re.search(arg, str(value)) is not None
                elif op == "$exists":
                    ok = (value is not None) == bool(arg)
                elif op in ("$gt", "$gte", "$lt", "$lte"):
                    ok = value is not None and {"$gt": value > arg, "$gte": value >= arg,
                                                "$lt": value < arg, "$lte": value <= arg}[op]
                else:
                    raise _HTTPError(400, f"test server: unsupported filter operator {op}")
                if not ok:
                    return False
        elif key == "tags":
            if cond not in (run.tags or []):
                return False
        elif value != cond:
            return False
    return True


def _field(run: FakeRun, key: str) -> Any:
    if key in ("name", "id"):
        return run.name
    if key == "display_name":
        return run.display_name
    if key == "state":
        return run.state
    if key == "group":
        return run.group
    if key in ("jobType", "job_type"):
        return run.job_type
    if key == "tags":
        return run.tags
    if key in ("createdAt", "created_at"):
        return _iso(run.created_at)
    if key in ("heartbeatAt", "heartbeat_at"):
        return _iso(run.heartbeat_at)
    if key.startswith("config."):
        parts = key.split(".")[1:]
        if parts and parts[-1] == "value":
            parts = parts[:-1]
        value: Any = run.user_config()
        for p in parts:
            value = value.get(p) if isinstance(value, dict) else None
        return value
    if key.startswith("summary_metrics."):
        value = run.summary
        for p in key.split(".")[1:]:
            value = value.get(p) if isinstance(value, dict) else None
        return value
    raise _HTTPError(400, f"test server: unsupported filter key {key}")


class WandbTestServer:
    """A threaded HTTP server on 127.0.0.1 (random port) speaking W&B's GraphQL and file-stream API."""

    def __init__(self, api_key: str | None = None, viewer: str = "tester") -> None:
        self.api_key = api_key
        self.viewer = viewer
        self.lock = threading.RLock()
        self.runs: dict[tuple[str, str, str], FakeRun] = {}
        self.deleted: dict[tuple[str, str, str], FakeRun] = {}
        self.operations: list[str] = []  # every GraphQL operation name, in arrival order
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.unknown: list[str] = []  # refused operations / paths: a fixture asserts it empty
        self._faults: list[dict[str, Any]] = []
        self._hooks: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> "WandbTestServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_POST(self) -> None:
                server._handle(self, "POST")

            def do_PUT(self) -> None:
                server._handle(self, "PUT")

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients dropping keep-alive connections are not test failures

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "WandbTestServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # ---- test controls -----------------------------------------------------------------------
    def add_run(self, entity: str, project: str, name: str, *, metrics: dict[str, Any] | None = None,
                steps: list[int] | None = None, config: dict[str, Any] | None = None,
                state: str = "finished", **kw: Any) -> FakeRun:
        """Seed a run; ``metrics`` maps key -> values logged at ``steps`` (one history line per step)."""
        cfg = {k: {"value": v, "desc": None} for k, v in (config or {}).items()}
        cfg["_wandb"] = {"value": {"cli_version": "0.31.0"}, "desc": None}
        run = FakeRun(entity, project, name, display_name=kw.pop("display_name", name), state=state,
                      config=cfg, **kw)
        metrics = metrics or {}
        n = len(next(iter(metrics.values()))) if metrics else 0
        steps = list(range(n)) if steps is None else steps
        for i, step in enumerate(steps):
            row: dict[str, Any] = {"_step": step, "_runtime": float(i), "_timestamp": run.created_at + i}
            for k, vals in metrics.items():
                if vals[i] is not None:
                    row[k] = vals[i]
            run.history.append(row)
        if run.history:
            run.summary.update({k: v for k, v in run.history[-1].items()})
        with self.lock:
            self.runs[(entity, project, name)] = run
        return run

    def run(self, entity: str, project: str, name: str) -> FakeRun | None:
        with self.lock:
            return self.runs.get((entity, project, name))

    def project_runs(self, entity: str, project: str) -> list[FakeRun]:
        with self.lock:
            return [r for (e, p, _), r in self.runs.items() if (e, p) == (entity, project)]

    def fail(self, operation: str, status: int = 429, times: int = 1,
             retry_after: float | None = None) -> None:
        """Answer the next ``times`` requests for ``operation`` (a GraphQL name or 'file_stream')
        with HTTP ``status``, as a rate limiter or a broken proxy would."""
        with self.lock:
            self._faults.append({"op": operation, "status": status, "times": times,
                                 "retry_after": retry_after})

    def on(self, operation: str, hook: Callable[[dict[str, Any]], None]) -> None:
        """Call ``hook(variables)`` before handling each request for ``operation``."""
        with self.lock:
            self._hooks.setdefault(operation, []).append(hook)

    def delete_run(self, entity: str, project: str, name: str) -> None:
        with self.lock:
            run = self.runs.pop((entity, project, name), None)
            if run is not None:
                self.deleted[(entity, project, name)] = run

    def count(self, operation: str) -> int:
        with self.lock:
            return self.operations.count(operation)

    def reset_log(self) -> None:
        with self.lock:
            self.operations.clear()
            self.requests.clear()

    # ---- HTTP plumbing ------------------------------------------------------------------------
    def _fault_for(self, operation: str) -> dict[str, Any] | None:
        with self.lock:
            for fault in self._faults:
                if fault["op"] == operation and fault["times"] > 0:
                    fault["times"] -= 1
                    return fault
        return None

    def _check_auth(self, handler: BaseHTTPRequestHandler) -> None:
        header = handler.headers.get("Authorization", "")
        key = None
        if header.startswith("Basic "):
            try:
                user, _, key = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                key = None
        elif header.startswith("Bearer "):
            key = header[7:]
        if not key:
            raise _HTTPError(401, "missing credentials")
        if self.api_key is not None and key != self.api_key:
            raise _HTTPError(401, "invalid api key")

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = handler.path.split("?", 1)[0]
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self.lock:
            self.requests.append((method, path))
        try:
            if method == "POST" and path == "/graphql":
                self._check_auth(handler)
                payload = self._graphql(json.loads(body or b"{}"))
            elif method == "POST" and path.startswith("/files/") and path.endswith("/file_stream"):
                self._check_auth(handler)
                payload = self._file_stream(path, json.loads(body or b"{}"))
            elif method == "POST" and path.startswith("/sdk/otel/v1/"):
                payload = {}  # wandb-core's own telemetry: accepted and ignored
            elif method == "PUT" and path.startswith("/storage/"):
                payload = self._store_file(path, body)
            elif method == "GET" and path.startswith("/storage/"):
                entity, project, name, fname = path[len("/storage/"):].split("/", 3)
                run = self.run(entity, project, name)
                if run is None or fname not in run.files:
                    raise _HTTPError(404, "no such file")
                self._send(handler, 200, run.files[fname], "application/octet-stream")
                return
            else:
                with self.lock:
                    self.unknown.append(f"{method} {path}")
                raise _HTTPError(404, f"test server: unknown endpoint {method} {path}")
        except _HTTPError as err:
            data = json.dumps({"errors": [{"message": str(err)}], "error": str(err)}).encode()
            self._send(handler, err.status, data, "application/json", err.headers)
            return
        self._send(handler, 200, json.dumps(payload).encode(), "application/json")

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, data: bytes, ctype: str,
              headers: dict[str, str] | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)

    # ---- GraphQL ------------------------------------------------------------------------------
    def _graphql(self, body: dict[str, Any]) -> dict[str, Any]:
        query = body.get("query") or ""
        variables = body.get("variables") or {}
        try:
            document = parse(query)
        except GraphQLError as err:
            with self.lock:
                self.unknown.append(f"unparsable query: {err.message}")
            raise _HTTPError(400, f"test server: cannot parse query: {err.message}")
        ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        name = body.get("operationName") or (ops[0].name.value if ops and ops[0].name else "")
        with self.lock:
            self.operations.append(name)
        if name not in KNOWN_OPERATIONS:
            with self.lock:
                self.unknown.append(f"operation {name or '<anonymous>'}")
            raise _HTTPError(400, f"test server: unknown GraphQL operation {name!r}")
        for hook in list(self._hooks.get(name, [])):
            hook(variables)
        fault = self._fault_for(name)
        if fault is not None:
            headers = {"Retry-After": str(fault["retry_after"])} if fault["retry_after"] else {}
            raise _HTTPError(fault["status"], f"injected HTTP {fault['status']}", headers)
        with self.lock:
            result = graphql_sync(SCHEMA, query, root_value=_Root(self), variable_values=variables,
                                  operation_name=body.get("operationName") or None)
        if result.errors:
            validation = [e for e in result.errors if not e.path]
            if validation:  # the client selected something this server does not model: loud
                with self.lock:
                    self.unknown.append(f"{name}: {validation[0].message}")
            return {"data": result.data, "errors": [{"message": e.message, "path": e.path}
                                                    for e in result.errors]}
        return {"data": result.data}

    # ---- file stream and storage ----------------------------------------------------------------
    def _file_stream(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        entity, project, name = path[len("/files/"):-len("/file_stream")].split("/")
        fault = self._fault_for("file_stream")
        if fault is not None:
            raise _HTTPError(fault["status"], f"injected HTTP {fault['status']}")
        with self.lock:
            self.operations.append("file_stream")
            run = self.runs.get((entity, project, name))
            if run is None:
                raise _HTTPError(404, f"run {entity}/{project}/{name} not found")
            run.heartbeat_at = time.time()
            for fname, chunk in (body.get("files") or {}).items():
                lines = [json.loads(x) if fname.endswith((".jsonl", ".json")) else x
                         for x in chunk.get("content", [])]
                offset = int(chunk.get("offset", 0))
                if fname == "wandb-history.jsonl":
                    run.history[offset:offset + len(lines)] = lines  # a retried chunk replaces itself
                elif fname == "wandb-events.jsonl":
                    run.events[offset:offset + len(lines)] = lines
                elif fname == "wandb-summary.json" and lines:
                    run.summary = lines[-1]
            if body.get("complete"):
                run.exit_code = int(body.get("exitcode") or 0)
                run.state = "finished" if run.exit_code == 0 else "failed"
        return {"exitcode": None, "limits": {}}

    def _store_file(self, path: str, data: bytes) -> dict[str, Any]:
        entity, project, name, fname = path[len("/storage/"):].split("/", 3)
        with self.lock:
            run = self.runs.get((entity, project, name))
            if run is None:
                raise _HTTPError(404, "no such run")
            run.files[fname] = data
        return {}


class _Root:
    """Root resolvers: graphql-core reads attributes / calls methods named like the fields."""

    def __init__(self, server: WandbTestServer) -> None:
        self.s = server

    # queries
    def viewer(self, info: Any) -> dict[str, Any]:
        v = self.s.viewer
        return {"id": "VXNlcjox", "name": v, "entity": v, "username": v, "email": f"{v}@example.com",
                "flags": "{}", "admin": False, "teams": {"edges": []}}

    def serverInfo(self, info: Any) -> dict[str, Any]:  # noqa: N802
        return {"features": [], "cliVersionInfo": {}, "latestLocalVersionInfo": None}

    def project(self, info: Any, name: str | None = None, entityName: str | None = None) -> "_Project":  # noqa: N803
        return _Project(self.s, entityName or self.s.viewer, name or "uncategorized")

    model = project

    def entity(self, info: Any, name: str) -> dict[str, Any]:
        return {"id": name, "name": name, "organization": None}

    def clientIDMapping(self, info: Any, clientID: str) -> None:  # noqa: N802,N803
        return None

    # mutations
    def upsertBucket(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: N802,A002
        s = self.s
        run: FakeRun | None = None
        inserted = False
        if input.get("id"):
            run = next((r for r in s.runs.values() if r.id == input["id"]), None)
            if run is None:
                raise GraphQLError(f"run {input['id']} not found")
        else:
            entity = input.get("entityName") or s.viewer
            project = input.get("modelName") or "uncategorized"
            name = input.get("name")
            if not name:
                raise GraphQLError("upsertBucket needs a name or an id")
            if (entity, project, name) in s.deleted:
                raise GraphQLError(f"run {name} was previously created and deleted")
            run = s.runs.get((entity, project, name))
            if run is None:
                run = FakeRun(entity, project, name, display_name=name)
                s.runs[(entity, project, name)] = run
                inserted = True
        simple = {"displayName": "display_name", "groupName": "group", "jobType": "job_type",
                  "notes": "notes", "state": "state", "tags": "tags"}
        for key, attr in simple.items():
            if input.get(key) is not None:
                setattr(run, attr, input[key])
        if input.get("config") is not None:
            run.config = json.loads(input["config"])
        if input.get("summaryMetrics") is not None:
            run.summary = json.loads(input["summaryMetrics"])
        return {"bucket": _RunView(s, run), "inserted": inserted}

    def createRunFiles(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: N802,A002
        run = self.s.runs.get((input["entityName"], input["projectName"], input["runName"]))
        if run is None:
            raise GraphQLError("run not found")
        return {"runID": run.id, "uploadHeaders": [],
                "files": [{"name": f, "uploadUrl": f"{self.s.url}/storage/{run.entity}/{run.project}/{run.name}/{f}"}
                          for f in input["files"]]}

    def markRunFilesUploaded(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: N802,A002
        return {"success": True}

    def notifyScriptableRunAlert(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: N802,A002
        run = self.s.runs.get((input["entityName"], input["projectName"], input["runName"]))
        if run is None:
            raise GraphQLError("run not found")
        run.alerts.append({"title": input["title"], "text": input["text"],
                           "severity": input.get("severity") or "INFO"})
        return {"success": True}

    def deleteRun(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: N802,A002
        key = next((k for k, r in self.s.runs.items() if r.id == input["id"]), None)
        if key is None:
            raise GraphQLError(f"run {input['id']} not found")
        self.s.deleted[key] = self.s.runs.pop(key)
        return {"success": True, "clientMutationId": None}

    def stopRun(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: N802,A002
        # only flags the run: its state changes when its own client exits, never by this call
        run = next((r for r in self.s.runs.values() if r.id == input["id"]), None)
        if run is None:
            raise GraphQLError(f"run {input['id']} not found")
        run.stop_requests += 1
        return {"success": True}


class _Project:
    def __init__(self, s: WandbTestServer, entity: str, name: str) -> None:
        self.s, self.entity_name, self.name = s, entity, name
        self.id = base64.b64encode(f"Project:{entity}/{name}".encode()).decode()
        self.internalId = self.id
        self.readOnly = False
        self.entity = {"id": entity, "name": entity}

    def _runs(self, filters: str | None) -> list[FakeRun]:
        f = json.loads(filters) if filters else {}
        runs = [r for (e, p, _), r in self.s.runs.items() if (e, p) == (self.entity_name, self.name)]
        return [r for r in runs if _match(r, f)]

    def runCount(self, info: Any, filters: str | None = None) -> int:  # noqa: N802
        return len(self._runs(filters))

    def runs(self, info: Any, filters: str | None = None, after: str | None = None,
             first: int | None = None, order: str | None = None) -> dict[str, Any]:
        runs = sorted(self._runs(filters), key=lambda r: (r.created_at, r.name))
        if order and order.lstrip("+-") not in ("created_at", "createdAt"):
            raise GraphQLError(f"test server: unsupported order {order}")
        if order and order.startswith("-"):
            runs.reverse()
        start = int(after) if after else 0
        page = runs[start:start + (first or 50)]
        edges = [{"node": _RunView(self.s, r), "cursor": str(start + i + 1)} for i, r in enumerate(page)]
        return {"edges": edges, "pageInfo": {"endCursor": edges[-1]["cursor"] if edges else after,
                                             "hasNextPage": start + len(page) < len(runs)}}

    def run(self, info: Any, name: str) -> "_RunView | None":
        r = self.s.runs.get((self.entity_name, self.name, name))
        return _RunView(self.s, r) if r is not None else None

    def bucket(self, info: Any, name: str, missingOk: bool = False) -> "_RunView | None":  # noqa: N803
        return self.run(info, name)


class _RunView:
    """The GraphQL face of a FakeRun."""

    def __init__(self, s: WandbTestServer, r: FakeRun) -> None:
        self.s, self.r = s, r
        self.id = r.id
        self.name = r.name
        self.projectId = "1"
        self.displayName = r.display_name
        self.sweepName = None
        self.state = r.state
        self.config = json.dumps(r.config)
        self.group = r.group
        self.jobType = r.job_type
        self.commit = None
        self.readOnly = False
        self.createdAt = _iso(r.created_at)
        self.heartbeatAt = _iso(r.heartbeat_at)
        self.description = r.notes
        self.notes = r.notes
        self.tags = list(r.tags)
        self.systemMetrics = "{}"
        self.summaryMetrics = json.dumps(r.summary)
        self.historyLineCount = len(r.history)
        self.logLineCount = 0
        self.eventsLineCount = len(r.events)
        self.historyTail = json.dumps([json.dumps(x) for x in r.history[-10:]])
        self.eventsTail = "[]"
        self.user = {"id": "VXNlcjox", "name": s.viewer, "username": s.viewer}

    def project(self, info: Any) -> _Project:
        return _Project(self.s, self.r.entity, self.r.project)

    def wandbConfig(self, info: Any, keys: list[str] | None = None) -> str:  # noqa: N802
        wb = self.r.config.get("_wandb", {}).get("value", {})
        return json.dumps({k: wb.get(k) for k in (keys or wb.keys()) if k in wb})

    def historyKeys(self, info: Any, format: str | None = None) -> dict[str, Any]:  # noqa: N802,A002
        return self.r.history_keys()

    def history(self, info: Any, minStep: int = 0, maxStep: int | None = None,  # noqa: N803
                samples: int = 500) -> list[str]:
        # maxStep is inclusive: wandb-core 0.31 pages [min, max] then asks for max + 1 next.
        rows = [h for h in self.r.history
                if h.get("_step", 0) >= minStep and (maxStep is None or h.get("_step", 0) <= maxStep)]
        return [json.dumps(h) for h in rows[:samples]]

    def events(self, info: Any, samples: int = 500) -> list[str]:
        return [json.dumps(e) for e in self.r.events[:samples]]

    def sampledHistory(self, info: Any, specs: list[Any]) -> list[list[dict[str, Any]]]:  # noqa: N802
        out = []
        for spec in specs:
            spec = json.loads(spec) if isinstance(spec, str) else spec
            keys = spec.get("keys") or []
            lo, hi = spec.get("minStep"), spec.get("maxStep")
            rows = [{k: h[k] for k in keys if k in h} for h in self.r.history
                    if all(k in h for k in keys)
                    and (lo is None or h["_step"] >= lo) and (hi is None or h["_step"] <= hi)]
            out.append(rows[: spec.get("samples", 500)])
        return out

    def parquetHistory(self, info: Any, liveKeys: list[str]) -> dict[str, Any]:  # noqa: N802,N803
        # No parquet export on this server: every row is "live" data, as for a fresh run.
        live = [{k: h[k] for k in h if not liveKeys or k in liveKeys or k == "_step"}
                for h in self.r.history]
        return {"parquetUrls": [], "liveData": live}


FAKE_API_KEY = "f" * 40  # wandb checks only the shape: 40 characters


class wandb_session_env:  # noqa: N801 - used like contextlib helpers
    """Point the wandb client at ``server`` through its environment variables, restored on exit.

    Retry waits are shortened so that a 429 or 5xx costs a test a fraction of a second, and a
    fresh temporary directory holds everything the client writes.
    """

    def __init__(self, server: WandbTestServer, tmpdir: str | None = None) -> None:
        import tempfile

        self.server = server
        self.dir = tmpdir or tempfile.mkdtemp(prefix="wandb-test-")
        self._saved: dict[str, str | None] = {}

    def __enter__(self) -> "wandb_session_env":
        import os

        values = {
            "WANDB_BASE_URL": self.server.url,
            "WANDB_API_KEY": FAKE_API_KEY,
            "WANDB_MODE": "online",
            "WANDB_DIR": self.dir,
            "WANDB_CACHE_DIR": os.path.join(self.dir, "cache"),
            "WANDB_CONFIG_DIR": os.path.join(self.dir, "config"),
            "WANDB_DATA_DIR": os.path.join(self.dir, "data"),
            "WANDB_ARTIFACT_DIR": os.path.join(self.dir, "artifacts"),
            "WANDB_SILENT": "true",
            "WANDB_DISABLE_GIT": "true",
            "WANDB_DISABLE_CODE": "true",
            "WANDB_ENTITY": "",
            "WANDB_PROJECT": "",
            "WANDB__GRAPHQL_RETRY_WAIT_MIN_SECONDS": "0.05",
            "WANDB__GRAPHQL_RETRY_WAIT_MAX_SECONDS": "0.5",
            "WANDB__GRAPHQL_RETRY_MAX": "4",
            "WANDB__FILE_STREAM_RETRY_WAIT_MIN_SECONDS": "0.05",
            "WANDB__FILE_STREAM_RETRY_WAIT_MAX_SECONDS": "0.5",
        }
        for k, v in values.items():
            self._saved[k] = os.environ.get(k)
            if v:
                os.environ[k] = v
            else:
                os.environ.pop(k, None)
        _reset_wandb_setup()
        return self

    def __exit__(self, *exc: Any) -> None:
        import os

        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _reset_wandb_setup()


def _reset_wandb_setup() -> None:
    """Stop wandb's service and drop its cached settings, so that the next call reads the environment."""
    try:
        import wandb
    except ImportError:  # pragma: no cover - wandb extra not installed
        return
    wandb.teardown()


@pytest.fixture(scope="module")
def server():
    """One loopback server per test module (import it there); fails if the client sent anything
    the server does not model."""
    with WandbTestServer() as srv, wandb_session_env(srv):
        yield srv
        assert not srv.unknown, f"client sent requests the test server does not model: {srv.unknown}"


def file_digests(root: Path) -> dict[str, str]:
    """Every file below `root` by its SHA-256 (links by their target): to show a tree unchanged."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = "->" + os.readlink(p)
        elif p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out
