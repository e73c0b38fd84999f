"""The TOML config file: what a cron line should not carry, and how to read runs' configs.

Sections (all optional)::

    [sync]                      # any `forecast sync` option by its long name, dashes or underscores
    tracker = "mlflow"
    tracking_uri = "http://127.0.0.1:5000"
    experiments = ["pretrain"]
    metrics = ["loss"]

    [tracker]                   # options of the tracker adapter (e.g. workers = 8)

    [config.rename]             # your param name -> the name forecaster reads (HF/nanoGPT names)
    total_iters = "max_steps"

    [config.defaults]           # values for runs that do not log them
    lr_scheduler_type = "cosine"

    [config.runs."<run name or id>"]   # per-run values, e.g. a schedule spec
    "forecast.schedule" = "wsd(peak=3e-4, warmup=500, total=20000, decay=0.2)"

    [alerts]                    # alert rules and webhooks (see forecaster.notify.load_alert_config)

    [scaling]                   # sync --scaling: law, size/token param names, planned runs
                                # (see forecaster.scaling.sync.ScalingSettings)
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forecaster.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SECTIONS = ("sync", "tracker", "config", "alerts", "scaling")


# -- the schema --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    """What one config value must be: a type (booleans are never numbers) and, for numbers, a range."""

    what: str  # "a string", "a number", ... as the error line says it
    check: Any  # value -> bool
    lo: float | None = None
    hi: float | None = None

    def error(self, value: Any) -> str | None:
        """Why `value` does not fit (None: it does)."""
        if not self.check(value):
            return f"must be {self.what}, got {show(value)}"
        if self.lo is not None and value < self.lo:
            return f"must be at least {self.lo:g}, got {show(value)}"
        if self.hi is not None and value > self.hi:
            return f"must be at most {self.hi:g}, got {show(value)}"
        return None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_names(v: Any) -> bool:
    items = [v] if isinstance(v, str) else v
    return isinstance(items, list) and bool(items) and all(isinstance(x, str) and x.strip() for x in items)


def show(value: Any) -> str:
    """A value as the TOML file spells it (strings quoted, true/false), cut to a readable length."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = '"' + value.replace('"', '\\"') + '"'
    elif isinstance(value, Mapping):
        text = "a table"
    elif isinstance(value, list):
        text = "[" + ", ".join(show(x) for x in value) + "]"
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


STRING = Kind("a string", lambda v: isinstance(v, str))
TEXT = Kind("a non-empty string", lambda v: isinstance(v, str) and bool(v.strip()))
BOOL = Kind("true or false (a TOML boolean, not a string)", lambda v: isinstance(v, bool))
NAMES = Kind("a non-empty string or a list of them", _is_names)
NUMBER = Kind("a number", _is_number)
INT = Kind("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool))


def number(lo: float | None = None, hi: float | None = None) -> Kind:
    return Kind("a number", _is_number, lo, hi)


def whole(lo: float | None = None, hi: float | None = None) -> Kind:
    return Kind("a whole number", INT.check, lo, hi)


# [sync]: every `forecast sync` option by its long name (plural lists read naturally in TOML)
SYNC = {
    "tracker": TEXT, "tracking_uri": TEXT, "uri": TEXT, "experiments": NAMES, "experiment": NAMES,
    "filter": STRING, "metrics": NAMES, "metric": NAMES, "lr_keys": NAMES, "lr_key": NAMES,
    "group_by": TEXT, "law": TEXT, "device": TEXT, "target": NUMBER, "include_ended": BOOL, "plots": BOOL,
    "follow_siblings": BOOL, "dry_run": BOOL, "force": BOOL, "lock_file": TEXT, "lock_wait": number(0),
    "quiet": BOOL, "log_file": TEXT, "seed": INT, "max_points": whole(2), "workers": whole(1),
    "stop_runs": BOOL, "scaling": BOOL, "cache": BOOL, "sample": whole(2), "lr_sample": whole(0), "cooldown_share": number(0, 0.95),
}
# [tracker]: what the adapters take; an adapter rejects names it does not know
TRACKER = {"workers": whole(1), "page_size": whole(10), "timeout": whole(1), "cache_dir": STRING,
           "project": NAMES, "wandb_dir": TEXT}
ALERTS = {
    "min_points": whole(1), "beat_threshold": number(0, 1), "beat_margin": number(0, 1), "spike_factor": number(1),
    "spike_window": whole(1), "target": NUMBER, "reach_threshold": number(0, 1), "eta_quantile": number(0, 1),
    "anneal_target": NUMBER, "rules": NAMES, "timeout": number(0.001), "retries": whole(0), "backoff": number(0),
    "notify_resolved": BOOL, "stop_runs": BOOL,
}
WEBHOOK = {"url": TEXT, "url_env": TEXT, "kind": TEXT, "name": STRING}
SCALING = {"law": TEXT, "objective": TEXT, "size_keys": NAMES, "token_keys": NAMES, "steps_keys": NAMES,
           "batch_tokens_keys": NAMES, "n_boot": whole(0), "min_runs": whole(1), "seed": INT, "enabled": BOOL}


def check_table(table: Mapping[str, Any], schema: Mapping[str, Kind], where: str,
                unknown_ok: bool = True) -> None:
    """InputError naming the first key of `table` whose value does not fit `schema`.

    Keys the schema does not name pass when `unknown_ok` (their owner checks them), else are errors.
    """
    for key, value in table.items():
        kind = schema.get(key)
        if kind is None:
            if not unknown_ok:
                raise InputError(f"{where} unknown key {key!r}; known: {', '.join(sorted(schema))}")
            continue
        why = kind.error(value)
        if why is not None:
            raise InputError(f"{where} {key} {why}")


def validate(data: Mapping[str, Any]) -> None:
    """Types and ranges of every table the file holds; InputError naming the table and key."""
    check_table(data.get("sync", {}), SYNC, "[sync]")
    check_table(data.get("tracker", {}), TRACKER, "[tracker]")
    alerts = data.get("alerts", {})
    check_table({k: v for k, v in alerts.items() if k not in ("webhook", "webhooks")}, ALERTS, "[alerts]")
    for name in ("webhook", "webhooks"):
        hooks = alerts.get(name, [])
        if not isinstance(hooks, list) or not all(isinstance(h, Mapping) for h in hooks):
            raise InputError(f"[alerts] {name} must be a list of tables ([[alerts.{name}]]), got {show(hooks)}")
        for i, hook in enumerate(hooks):
            check_table(hook, WEBHOOK, f"[[alerts.{name}]] #{i + 1}", unknown_ok=False)
    scaling = data.get("scaling", {})
    check_table(scaling, SCALING, "[scaling]")
    if "budgets" in scaling and not (isinstance(scaling["budgets"], list)
                                     and all(_is_number(b) for b in scaling["budgets"])):
        raise InputError(f"[scaling] budgets must be a list of numbers, got {show(scaling['budgets'])}")
    if "planned" in scaling and not isinstance(scaling["planned"], list):
        raise InputError(f"[scaling] planned must be a list of tables, got {show(scaling['planned'])}")
    cfg = data.get("config", {})
    rename = cfg.get("rename", {})
    if isinstance(rename, Mapping):
        check_table(rename, {k: TEXT for k in rename}, "[config.rename]")


def load(path: str | Path) -> dict[str, Any]:
    """Read and check a config file; InputError (one line) on a missing file, bad TOML or unknown section."""
    p = Path(path).expanduser()
    try:
        with p.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise InputError(f"config file {p} not found") from None
    except OSError as e:
        raise InputError(f"config file {p}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"config file {p} is not valid TOML: {e}") from None
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise InputError(f"config file {p}: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    for s in SECTIONS:
        if s in data and not isinstance(data[s], Mapping):
            raise InputError(f"config file {p}: [{s}] must be a table")
    data["sync"] = {k.replace("-", "_"): v for k, v in data.get("sync", {}).items()}
    try:
        validate(data)
    except InputError as e:
        raise InputError(f"config file {p}: {e}") from None
    return data


@dataclass
class ConfigMapping:
    """How a run's logged config is read: renames, defaults and per-run values from the config file."""

    rename: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None) -> "ConfigMapping":
        """From the file's ``[config]`` table."""
        table = dict(table or {})
        unknown = sorted(set(table) - {"rename", "defaults", "runs"})
        if unknown:
            raise InputError(f"[config]: unknown key(s) {', '.join(unknown)}; known: rename, defaults, runs")
        for k in ("rename", "defaults", "runs"):
            if not isinstance(table.get(k, {}), Mapping):
                raise InputError(f"[config.{k}] must be a table")
        runs = {str(k): dict(v) for k, v in table.get("runs", {}).items() if isinstance(v, Mapping)}
        if len(runs) != len(table.get("runs", {})):
            raise InputError("[config.runs]: each entry must be a table, e.g. [config.runs.\"my-run\"]")
        return cls({str(k): str(v) for k, v in table.get("rename", {}).items()},
                   dict(table.get("defaults", {})), runs)

    def apply(self, config: Mapping[str, Any], *names: str) -> dict[str, Any]:
        """The run's config with renames, then defaults under it, then per-run values (by any of `names`) over it."""
        out = {**self.defaults}
        for k, v in config.items():
            out[self.rename.get(k, k)] = v
        for n in names:
            if n in self.runs:
                out.update(self.runs[n])
        return out

    def token(self) -> str:
        """Stable text of the mapping (part of a run's forecast fingerprint)."""
        return repr((sorted(self.rename.items()), sorted(map(repr, self.defaults.items())),
                     sorted((k, sorted(map(repr, v.items()))) for k, v in self.runs.items())))
