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
