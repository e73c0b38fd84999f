"""The plain records that cross the tracker interface: runs as listed, and what a sync writes.

Adapters map their tracker's objects onto these; the engine sees nothing else of a tracker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from forecaster.trackers.series import drawn

if TYPE_CHECKING:  # pragma: no cover
    from forecaster.alerts import Alert
    from forecaster.histories import RunForecast

# normalised run states; adapters map their tracker's states onto these
RUNNING, FINISHED, FAILED, KILLED = "running", "finished", "failed", "killed"
STATES = (RUNNING, FINISHED, FAILED, KILLED)


@dataclass(frozen=True)
class Watermark:
    """The latest point of one metric as the tracker's run search reports it (no history read)."""

    step: int
    timestamp: int = 0
    value: float = float("nan")

    def token(self) -> str:
        """Stable text for fingerprints (NaN-safe)."""
        return f"{self.step}:{self.timestamp}:{self.value!r}"


@dataclass
class RunInfo:
    """One run as listed: identity, state, latest-metric watermarks, config and live forecast runs.

    ``config`` is what schedules are read from: params/config values (strings as MLflow stores
    them, or native values from W&B). ``tags`` are key-value annotations including the
    ``forecast.*`` keys this engine wrote (W&B adapters return them from the run summary).
    ``forecasts`` lists the ids of this run's complete, live forecast runs, oldest first;
    ``partial`` those a crashed sync left incomplete (the engine deletes them before anything else).
    """

    id: str
    name: str
    scope: str  # experiment id (MLflow) or entity/project (W&B)
    status: str  # one of STATES
    latest: dict[str, Watermark] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    forecasts: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # adapter-private (e.g. the client's run object)

    @property
    def active(self) -> bool:
        return self.status == RUNNING

    @property
    def label(self) -> str:
        """Short human name for logs: name (id prefix)."""
        return f"{self.name} ({self.id[:8]})" if self.name and self.name != self.id else self.id


@dataclass
class ForecastRevision:
    """Everything one forecast run holds; `create_forecast` writes it completely or raises.

    ``curves`` maps each metric key to its forecast, logged under that same key at the future
    steps with the bands under ``<key>.p10`` / ``<key>.p90`` (``band_keys``). ``lr`` is the
    planned LR at the horizon, logged under ``lr_key`` when the source logs its LR. ``alerts``
    are newly firing alerts, for trackers that raise alerts from a live run (W&B). ``whatif``
    maps series keys (``whatif_key``) to what-if forecasts logged beside the curves, e.g. the
    run cooled down now, drawn on its metric's chart (p50 under the key, bands under its band keys).
    """

    source: RunInfo
    input: str  # fingerprint of the inputs; deterministic ids may use it
    curves: dict[str, "RunForecast"]
    tags: dict[str, str] = field(default_factory=dict)  # extra tags/config for the forecast run
    lr_key: str | None = None
    lr_steps: np.ndarray | None = None
    lr_values: np.ndarray | None = None
    plot_png: bytes | None = None
    plot_name: str = "forecast.png"
    alerts: list["Alert"] = field(default_factory=list)
    name: str = ""
    whatif: dict[str, "RunForecast"] = field(default_factory=dict)

    WHATIF_SUFFIXES: ClassVar[tuple[str, ...]] = (".if_cooldown_now",)

    @staticmethod
    def band_keys(metric: str) -> tuple[str, str]:
        """The keys the p10/p90 bands of `metric` are logged under."""
        return f"{metric}.p10", f"{metric}.p90"

    @staticmethod
    def whatif_key(metric: str, suffix: str = ".if_cooldown_now") -> str:
        """The series key of a what-if forecast of `metric` (drawn on `metric`'s own chart)."""
        return metric + suffix

    @classmethod
    def whatif_of(cls, key: str) -> str | None:
        """The metric a what-if series key belongs to, or None when `key` is not one."""
        return next((key[: -len(s)] for s in cls.WHATIF_SUFFIXES if key.endswith(s) and len(key) > len(s)), None)

    def series(self, budget: int | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Every series to log as (key, steps, values): each curve, its bands, the planned LR.

        Each series keeps the points a chart needs to draw it as all of them would (`drawn`:
        a smooth curve's few dozen, more where it bends; the tracker stores, and its UI reads,
        every point written); with a `budget`, at most ``budget // len(series)`` each, so the
        whole forecast fits one atomic write.
        """
        # (steps, [(key, values)]): a curve and its band edges keep the same steps
        parts: list[tuple[np.ndarray, list[tuple[str, np.ndarray]]]] = []
        for key, fc in [*self.curves.items(), *self.whatif.items()]:
            lo_key, hi_key = self.band_keys(key)
            parts.append((np.asarray(fc.steps, dtype=np.int64), [
                (key, np.asarray(fc.p50)), (lo_key, np.asarray(fc.p10)), (hi_key, np.asarray(fc.p90))]))
        if self.lr_key and self.lr_steps is not None and len(self.lr_steps):
            ok = np.isfinite(np.asarray(self.lr_values, dtype=float))
            parts.append((np.asarray(self.lr_steps, dtype=np.int64)[ok],
                          [(self.lr_key, np.asarray(self.lr_values, dtype=float)[ok])]))
        n_series = sum(len(named) for _, named in parts)
        most = max(2, budget // n_series) if budget is not None and n_series else max(
            (len(st) for st, _ in parts), default=0)
        return [(k, st[i], v[i]) for st, named in parts for i in [drawn(st, [v for _, v in named], most)]
                for k, v in named]


@dataclass
class SummaryRevision:
    """A complete summary run of one scope (experiment / project), e.g. its scaling-law fit.

    Not a child of any run. ``tags`` must include ``forecast.kind`` (``kind``) and
    ``forecast.input`` so that `list_runs` returns the run with them and the engine can tell it
    apart from the user's runs and see whether it is current. ``params`` are fixed values (MLflow
    params, W&B config), ``metrics`` single values, ``artifacts`` file name -> content.
    """

    scope: str
    kind: str
    input: str
    name: str
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)
