"""Every use of a private part of the wandb client, each behind one small named function.

The plugin otherwise uses only wandb's public API (`wandb.init`, `wandb.Api`, public `Run`
methods). What the public API does not offer is reached here: private attributes of
`wandb.apis.public.Run`, private (``x_``) settings and the internal protobuf of the ``.wandb``
transaction log. Each function names the wandb versions it was checked on and has a test in
``tests/test_wandb_compat.py``, so a wandb upgrade that breaks one fails a named test. (The
loopback test server models the 0.31 client's queries, so the three `Run` functions were run
against 0.31.0 only; the offline ones also against 0.28.0, the lowest version the extra allows.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

KeyPath = tuple[str, ...]  # a config/summary/history key: one name, or the path of a nested key


def quiet_settings(base_url: str | None = None) -> Any:
    """`wandb.Settings` for a run that logs only what it is given (``x_`` settings); checked on wandb 0.28.0, 0.31.0."""
    import wandb

    return wandb.Settings(console="off", silent=True, x_disable_stats=True, x_disable_meta=True,
                          x_disable_machine_info=True, disable_git=True, save_code=False,
                          disable_job_creation=True, x_save_requirements=False,
                          **({"base_url": base_url} if base_url else {}))


def history_keys(run: Any) -> dict[str, Any]:
    """A listed public `Run`'s ``historyKeys`` (``lastStep``, ``keys``) from ``_attrs``; checked on wandb 0.31.0."""
    info = run._attrs.get("historyKeys") or {}
    if isinstance(info, str):
        info = json.loads(info or "{}")
    return info


def history_line_count(run: Any) -> int:
    """How many history rows the server holds for a public `Run` (``_attrs``); checked on wandb 0.31.0."""
    return int(run._attrs.get("historyLineCount") or 0)


_SET_TAGS = """
mutation UpsertBucket($id: String!, $tags: [String!]) {
    upsertBucket(input: {id: $id, tags: $tags}) { bucket { id tags } }
}"""


def set_run_tags(run: Any, tags: list[str]) -> None:
    """Replace a public `Run`'s W&B tags, nothing else, through ``_service_api``; checked on wandb 0.31.0.

    ``Run.update()`` would also rewrite the config and the whole summary.
    """
    run._service_api.execute_graphql(_SET_TAGS, {"id": run.storage_id, "tags": tags})


@dataclass
class LogRecord:
    """One record of a ``.wandb`` transaction log as plain data (only the parts the plugin reads)."""

    kind: str | None  # "run", "config", "summary", "history", "exit", or another record type
    run: dict[str, Any] = field(default_factory=dict)  # "run": id, entity, project, name, group, job_type, tags
    update: list[tuple[KeyPath, str]] = field(default_factory=list)  # (key, JSON text): config/summary/history
    remove: list[KeyPath] = field(default_factory=list)  # config/summary keys removed
    step: int | None = None  # "history": the step, when the record carries one
    exit_code: int | None = None  # "exit"


def _path(item: Any) -> KeyPath:
    return tuple(item.nested_key) if len(item.nested_key) else (item.key,)


def decode_record(raw: bytes) -> LogRecord:
    """Decode one transaction-log record with wandb's internal ``Record`` protobuf; checked on wandb 0.28.0, 0.31.0."""
    from wandb.proto import wandb_internal_pb2 as pb

    rec = pb.Record()
    rec.ParseFromString(raw)
    kind = rec.WhichOneof("record_type")
    out = LogRecord(kind)
    if kind == "run":
        r = rec.run
        out.run = {"id": r.run_id, "entity": r.entity, "project": r.project, "name": r.display_name,
                   "group": r.run_group, "job_type": r.job_type, "tags": list(r.tags)}
        out.update = [(_path(i), i.value_json) for i in r.config.update]
    elif kind in ("config", "summary"):
        block = getattr(rec, kind)
        out.update = [(_path(i), i.value_json) for i in block.update]
        out.remove = [_path(i) for i in block.remove]
    elif kind == "history":
        h = rec.history
        out.step = int(h.step.num) if h.HasField("step") else None
        out.update = [(_path(i), i.value_json) for i in h.item]
    elif kind == "exit":
        out.exit_code = int(rec.exit.exit_code)
    return out
