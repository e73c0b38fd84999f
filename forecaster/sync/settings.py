"""What a sync reads, how it fits and what it writes: `SyncSettings`, filled by the CLI and the config file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forecaster import __version__
from forecaster.config import ConfigMapping

# a revision whose finals and bands move less than this share of the band's width is not written
KEEP_SHARE = 0.1
# Sampled reads cut a first sync's read but cost accuracy where siblings share per-step noise
# (docs/benchmarks.md, "Sampled reads"): every point by default, sampling on request.
HISTORY_SAMPLE: int | None = None
# An LR series is a schedule: read sampled to this many points it gave the same forecasts as read
# whole (PKU with the LR logged every step, modded-nanogpt), at half the points of a first read
LR_SAMPLE: int | None = 500


@dataclass
class SyncSettings:
    """What to read, how to fit and what to write; the CLI and the config file fill it."""

    metrics: tuple[str, ...] = ("loss",)
    lr_keys: tuple[str, ...] = ("learning_rate", "lr")
    group_by: str | None = None  # param/config or tag key whose value splits an experiment into groups
    law: str = "auto"
    device: str | None = None
    seed: int = 0
    include_ended: bool = False  # also forecast finished/failed/killed runs stopped before their plan
    dry_run: bool = False
    force: bool = False  # re-forecast even runs whose inputs did not change
    plots: bool = True
    max_points: int = 500  # horizon points per run
    workers: int = 8  # concurrent writes
    mapping: ConfigMapping = field(default_factory=ConfigMapping)
    alert_settings: Any = None  # forecaster.alerts.AlertSettings
    notify_settings: Any = None  # forecaster.notify.NotifySettings
    forecaster_options: dict[str, Any] = field(default_factory=dict)
    scaling: Any = None  # forecaster.scaling.sync.ScalingSettings: also fit the experiment's scaling law
    history_cache: str | Path | None = None  # SQLite file of read histories (forecaster.cache); None: none
    history_sample: int | None = HISTORY_SAMPLE  # at most this many points per history read in full (None: all)
    lr_sample: int | None = LR_SAMPLE  # the same for the LR keys
    # runs at constant LR also get "cooled down now" over this share of their planned run (0: none)
    cooldown_share: float = 0.2

    @property
    def primary(self) -> str:
        """The metric that drives the source run's tags and the alerts."""
        return self.metrics[0]

    def samples(self) -> dict[str, int | None]:
        """Points per full read of each key read (None: every point)."""
        lr = min((n for n in (self.history_sample, self.lr_sample) if n), default=None)
        return {**{k: lr for k in self.lr_keys}, **{k: self.history_sample for k in self.metrics}}

    def token(self) -> str:
        """What of the settings changes a forecast (part of every run's fingerprint)."""
        target = getattr(self.alert_settings, "target", None)
        return repr((__version__, self.metrics, self.lr_keys, self.group_by, self.law, self.seed,
                     self.max_points, target, sorted(self.forecaster_options.items()), self.cooldown_share))
