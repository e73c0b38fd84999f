"""What a sync did: the action per run (`Action`), why a run was skipped (`Skip`), the per-run
outcome with its log line, and the final summary."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

from forecaster.histories import RunForecast
from forecaster.sync.settings import KEEP_SHARE
from forecaster.trackers import RunInfo


class Action(str, Enum):
    """What the sync did with a run; the value is the word the log lines and the summary use."""

    FORECAST = "forecast"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    CONTEXT = "context"  # an ended run: read only as a sibling of runs with work

    def __str__(self) -> str:
        return self.value


class SkipKind(str, Enum):
    """Why a run got no forecast; the value opens its reason text (``forecast.skipped``, log lines)."""

    NO_DATA = "no data"
    BAD_CONFIG = "bad config"
    NO_SCHEDULE = "no schedule"
    NO_PLANNED_END = "no planned end"
    DONE = "done"  # forecaster.scaling.sync reads a "done" prefix as "its last value is final"
    GONE = "gone"
    BAD_DATA = "bad data"
    DIVERGED = "diverged"
    NOT_FITTED = "not fitted"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Skip:
    """A skip reason: its kind (what code branches on) and the detail shown after it."""

    kind: SkipKind
    detail: str

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.detail}"


def gone(e: Exception) -> Skip:
    """The skip of a run deleted while the sync was at it."""
    return Skip(SkipKind.GONE, f"run deleted during sync ({e})")


@dataclass
class RunOutcome:
    """What the sync did with one run."""

    run: RunInfo
    action: Action
    skip: Skip | None = None  # why, when skipped
    forecast: RunForecast | None = None
    forecast_id: str | None = None
    alerts: list[str] = field(default_factory=list)  # firing alert messages
    stop: str | None = None  # what was done about a stop request (only with --stop-runs)
    notes: list[str] = field(default_factory=list)  # what screening did to its data (dropped points, not pooled)
    kept: bool = False  # the new forecast is within KEEP_SHARE of the drawn one: that one stays

    @property
    def reason(self) -> str | None:
        """The skip reason's text; for an ended run, its status."""
        if self.skip is not None:
            return str(self.skip)
        return self.run.status if self.action is Action.CONTEXT else None

    def line(self) -> str:
        """The one log line for this run."""
        who = self.run.label
        if self.action is Action.FORECAST and self.forecast is not None:
            lo, hi = self.forecast.final_interval
            extra = f"; kept the drawn forecast (within {KEEP_SHARE:.0%} of its band)" if self.kept else ""
            extra += f"; NOTE {'; '.join(self.notes)}" if self.notes else ""
            extra += f"; ALERT {'; '.join(self.alerts)}" if self.alerts else ""
            extra += f"; STOP {self.stop}" if self.stop else ""
            return (f"{who}: {self.forecast.metric} -> {self.forecast.final:.4g} "
                    f"[{lo:.4g}, {hi:.4g}] at step {int(self.forecast.steps[-1])} ({self.forecast.law}){extra}")
        if self.action is Action.SKIPPED:
            return (f"{who}: skipped: {self.reason}" + (f"; NOTE {'; '.join(self.notes)}" if self.notes else "")
                    + (f"; ALERT {'; '.join(self.alerts)}" if self.alerts else ""))
        reason = self.reason
        return f"{who}: {self.action.value}" + (f" ({reason})" if reason else "")


@dataclass
class SyncReport:
    """Counts and timings of one sync (the final summary)."""

    outcomes: list[RunOutcome] = field(default_factory=list)
    writes: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    dry_run: bool = False
    scaling: list = field(default_factory=list)  # forecaster.scaling.sync.ScalingOutcome per scope

    def by(self, action: Action | str) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.action == action]

    @property
    def seen(self) -> int:
        return len(self.outcomes)

    @property
    def skipped(self) -> dict[str, str]:
        return {o.run.id: o.reason or "" for o in self.by(Action.SKIPPED)}

    def summary(self) -> str:
        """One line: runs seen / forecast / unchanged / skipped with reasons / alerts; timings."""
        reasons = Counter(o.skip.kind.value if o.skip else "" for o in self.by(Action.SKIPPED))
        skip = ", ".join(f"{r} x{n}" for r, n in reasons.most_common())
        alerts = sum(len(o.alerts) for o in self.outcomes)
        stops = sum(1 for o in self.outcomes if o.stop)
        t = self.timings
        times = ", ".join(f"{k} {v:.2f}s" for k, v in t.items() if k != "total")
        verb = "would forecast" if self.dry_run else "forecast"
        forecast = self.by(Action.FORECAST)
        kept = sum(1 for o in forecast if o.kept)
        return (f"{self.seen} runs seen: {len(forecast)} {verb}"
                + (f" ({kept} kept as drawn)" if kept else "") + f", {len(self.by(Action.UNCHANGED))} unchanged, "
                f"{len(self.by(Action.CONTEXT))} ended (context only), {len(self.by(Action.SKIPPED))} skipped"
                + (f" ({skip})" if skip else "") + f", {alerts} alerts firing"
                + (f", {stops} stop requests" if stops else "") + f"; {self.writes} writes; "
                f"{t.get('total', 0.0):.2f}s ({times})")


class Progress:
    """tqdm on a terminal, nothing otherwise (per-run lines are logged instead)."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.bar = None
        if enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="run", leave=False, file=sys.stderr)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
