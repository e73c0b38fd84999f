"""The cooldown advisor: "if I cool down now, where do I land?", answered from a fitted group.

For a run in a stable (constant-LR) phase it compares, in one batched `predict_schedules` call,
cooling down now (over a stated share of the planned run), the planned schedule, cooling down
after k more steps at the current LR (a curve of final loss against cooldown start), and the
cooldown lengths that end at the planned total (the best one, with how sure that is). The
candidates share their band's random draws (keyed by the run), so differences between them —
gains, the best length — are read from paired draws, not from two independent bands.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from forecaster import schedules, whatif
from forecaster.batch import lr_per_step
from forecaster.errors import InputError
from forecaster.histories import RunForecast, RunHistory, planned_end

if TYPE_CHECKING:  # pragma: no cover
    from forecaster.forecast import Forecaster
    from forecaster.schedules import Schedule

DEFAULT_SHARE = 0.2  # a cooldown of 20 % of the run: the common WSD choice (Hägele et al. 2024)
DEFAULT_STARTS = 5  # cooldown starts between now and the latest that still ends at the planned total
LENGTH_SHARES = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)  # cooldown lengths tried for a fixed total
_FLAT_POINTS = 5  # logged points the LR must be flat over for a "stable phase"
_FLAT_TOL = 1e-3


@dataclass
class Option:
    """One candidate future: what it is, and the run's forecast under it."""

    kind: str  # "planned" | "now" | "start" | "length" | "schedule"
    label: str
    forecast: RunForecast
    start: int | None = None  # cooldown start (None: not a cooldown)
    length: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # derived numbers, e.g. the gain over cooling now

    @property
    def end(self) -> int:
        return int(self.forecast.steps[-1])

    @property
    def final(self) -> float:
        return float(self.forecast.p50[-1])

    @property
    def interval(self) -> tuple[float, float]:
        return float(self.forecast.p10[-1]), float(self.forecast.p90[-1])

    @property
    def unidentified(self) -> str | None:
        """The band's note when it spans a range of annealing gains (the group never decayed)."""
        return self.forecast.unidentified

    def line(self) -> str:
        lo, hi = self.interval
        return f"{self.label}: {_num(self.final)} ({_num(lo)}-{_num(hi)})"


@dataclass
class Advice:
    """The advisor's answer for one run: every option, the derived comparisons, plain-language lines."""

    run: str
    group: str
    last_step: int
    total: int | None  # the planned end (None: the run has no plan beyond its last step)
    length: int  # the cooldown length assumed for "now" and the starts curve
    shape: str
    final_lr: float
    stable: bool
    options: list[Option]
    best_length: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def of(self, kind: str) -> list[Option]:
        return [o for o in self.options if o.kind == kind]

    @property
    def now(self) -> Option | None:
        return next(iter(self.of("now")), None)

    @property
    def planned(self) -> Option | None:
        return next(iter(self.of("planned")), None)

    def lines(self) -> list[str]:
        """Plain-language answer, one fact per line."""
        out = [f"run {self.run} (group {self.group or '-'}), seen to step {self.last_step:,}"
               + ("" if self.stable else "; its LR is not constant now: a cooldown starts from the current LR")]
        head = [o.line() for o in (self.now, self.planned) if o is not None]
        if head:
            out.append("; ".join(head))
        now = self.now
        for o in self.of("start"):
            gain = ""
            if now is not None and o.start != now.start and "gain" in o.extra:
                g = o.extra["gain"]
                gain = f"; gain over cooling down now {_num(g[1])} ({_num(g[0])} to {_num(g[2])})"
            out.append(o.line() + gain)
        for o in self.of("schedule"):
            out.append(o.line())
        b = self.best_length
        if b is not None and not b["identified"]:
            out.append(f"best cooldown length to step {self.total:,}: not identified (the group has shown no LR "
                       "decay, so nothing says how the gain grows with the cooldown's length)")
        elif b is not None:
            edge = " (the edge of the lengths tried: try longer or shorter ones)" if b["edge"] else ""
            out.append(f"best cooldown length to step {self.total:,}: {b['length']:,} steps ({_num(b['final'])}, "
                       f"best in {b['probability']:.0%} of draws; p10-p90 of the best length "
                       f"{b['p10']:,}-{b['p90']:,}){edge}")
        out.extend(f"note: {n}" for n in self.notes)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: settings, each option's final with band, the best length, the notes."""
        return {"run": self.run, "group": self.group, "last_step": self.last_step, "total": self.total,
                "cooldown_length": self.length, "shape": self.shape, "final_lr": self.final_lr,
                "stable": self.stable, "best_length": self.best_length, "notes": list(self.notes),
                "lines": self.lines(),
                "options": [{"kind": o.kind, "label": o.label, "start": o.start, "length": o.length,
                             "end": o.end, "final": o.final, "p10": o.interval[0], "p90": o.interval[1],
                             "unidentified": o.unidentified is not None,
                             **{k: list(v) if isinstance(v, tuple) else v for k, v in o.extra.items()}}
                            for o in self.options]}


def _num(x: float) -> str:
    """A loss as people quote it (2.913); small numbers such as gains with 4 significant digits."""
    return f"{x:.3f}" if 1 <= abs(x) < 1000 else f"{x:.4g}"


def _shape_text(shape: str, final_lr: float) -> str:
    return f"{shape} to {'0' if final_lr == 0 else f'{final_lr:g}x the LR'}"


def stable_phase(h: RunHistory) -> bool:
    """True when the LR at the run's last few observed steps is flat (a constant-LR phase)."""
    if not h.has_lr or len(h.steps) < 2:
        return False
    lr = lr_per_step(h, h.last_step)
    if lr is None:
        return False
    at = lr[h.steps[-_FLAT_POINTS:]]
    top = float(np.max(np.abs(at)))
    return top > 0 and float(np.ptp(at)) <= _FLAT_TOL * top


def held(h: RunHistory, warmup: str = "linear") -> RunHistory:
    """`h` with its LR as known up to its last observed step, then held there (training on as now);
    `warmup` fills the steps before its first logged LR (as the `Forecaster` that fitted it does)."""
    lr = lr_per_step(h, h.last_step, warmup)
    if lr is None:
        raise InputError(f"run {h.run!r} has no learning rate: a what-if schedule needs one")
    sched = schedules.from_points(np.arange(h.last_step + 1), lr)
    return dataclasses.replace(h, schedule=sched, lr_steps=None, lr_values=None)


def planned_schedule(h: RunHistory, warmup: str = "linear") -> Schedule | None:
    """The run's own plan (logged/planned LR to its last horizon step) as a schedule; None without one."""
    total = planned_end(h)
    if total <= h.last_step:
        return None
    lr = lr_per_step(h, total, warmup)
    return None if lr is None else schedules.from_points(np.arange(total + 1), lr, total=total)


def default_length(h: RunHistory, share: float = DEFAULT_SHARE) -> int:
    """`share` of the planned run (of the run it would make cooling down now, without a plan)."""
    if not 0 < share < 1:
        raise InputError(f"cooldown share {share}: expected a fraction between 0 and 1")
    total = planned_end(h)
    base = total if total > h.last_step else h.last_step / (1 - share)
    return max(1, int(round(share * base)))


def advise(fc: Forecaster, run: int | str, length: int | None = None, share: float = DEFAULT_SHARE,
           shape: str = "linear", final_lr: float = 0.0, starts: Sequence[int] | None = None,
           lengths: Sequence[int] | None = None, extra: Sequence[Schedule] = ()) -> Advice:
    """Every candidate future of fitted run `run` in one batched call, compared (module docstring).

    `length`: the cooldown length for "now" and the starts curve (default `share` of the planned run);
    `starts`: cooldown starts (default `DEFAULT_STARTS` from now to the latest ending at the plan);
    `lengths`: cooldown lengths ending at the planned total (default `LENGTH_SHARES` of it);
    `extra`: further whole schedules to compare (each must end after the last observed step).
    """
    i = fc._row(run)
    h = fc.histories_[i]
    last = h.last_step
    base = held(h, fc.warmup)
    L = int(length) if length is not None else default_length(h, share)
    if L < 1:
        raise InputError(f"cooldown length {L}: must be a positive number of steps")
    total = planned_end(h)
    total_or_none = total if total > last else None
    plan = planned_schedule(h, fc.warmup)
    if starts is None:
        latest = (total - L) if total_or_none is not None and total - L > last else 2 * last
        starts = np.unique(np.linspace(last, latest, DEFAULT_STARTS).round().astype(np.int64)).tolist()
    bad = [s for s in starts if s < last]
    if bad:
        raise InputError(f"cooldown start {bad[0]:,} is before the run's last observed step {last:,}")
    if lengths is None:
        lengths = [] if total_or_none is None else sorted({int(round(f * total)) for f in LENGTH_SHARES
                                                          if total - round(f * total) >= last})
    bad = [n for n in lengths if total_or_none is None or n < 1 or total - n < last]
    if bad:
        raise InputError(f"cooldown length {bad[0]:,} to the planned end {total:,}: must start at or after "
                         f"the last observed step {last:,}")
    how = _shape_text(shape, final_lr)
    todo: list[tuple[str, str, Schedule, int | None, int | None]] = [
        ("now", f"cooling down now ({L:,} steps, {how})", whatif.cooldown(base, last, L, shape, final_lr), last, L)]
    if plan is not None:
        todo.append(("planned", f"as planned (step {total:,})", plan, None, None))
    todo += [("start", f"cooling down at step {s:,} ({L:,} steps, {how})",
              whatif.cooldown(base, int(s), L, shape, final_lr), int(s), L) for s in starts if s != last]
    todo += [("length", f"cooling down over the last {n:,} steps to {total:,} ({how})",
              whatif.cooldown(base, total - int(n), int(n), shape, final_lr), total - int(n), int(n))
             for n in lengths]
    todo += [("schedule", f"schedule {_short(s.spec())}", s, None, None) for s in extra]
    out = whatif.predict_variants(fc, [(i, t[2]) for t in todo])
    skipped = next((f.skipped for f in out if f.skipped), None)
    if skipped:
        raise InputError(f"run {h.run!r} could not be forecast under a candidate schedule: {skipped}")
    options = [Option(kind, label, f, start, n) for (kind, label, _, start, n), f in zip(todo, out)]
    advice = Advice(h.run, h.group, last, total_or_none, L, shape, final_lr, stable_phase(h), options)
    _paired(advice)
    note = next((o.unidentified for o in options if o.unidentified), None)
    if note is not None:
        advice.notes.append(note.replace("not identifiable", "not identified", 1)
                            + " — the bands include no gain, so compare options by their bands, not their medians")
    return advice


def cooldown_now(fc: Forecaster, runs: Sequence[int], share: float = DEFAULT_SHARE, shape: str = "linear",
                 final_lr: float = 0.0) -> dict[int, tuple[RunForecast, int]]:
    """For each fitted run index in `runs`: its forecast if it cooled down from its last observed step
    over `share` of its planned run, and that length; all runs in one batched call per fitted law."""
    pairs, lengths = [], []
    for i in runs:
        h = fc.histories_[i]
        n = default_length(h, share)
        pairs.append((i, whatif.cooldown(held(h, fc.warmup), h.last_step, n, shape, final_lr)))
        lengths.append(n)
    out = whatif.predict_variants(fc, pairs) if pairs else []
    return {i: (f, n) for i, f, n in zip(runs, out, lengths)}


def _paired(advice: Advice) -> None:
    """Gains over cooling down now and the best length, from the draws the options share."""
    now = advice.now
    if now is not None and now.forecast.final_samples is not None:
        base = now.forecast.final_samples
        for o in advice.of("start") + advice.of("planned"):
            if o.forecast.final_samples is not None:
                g = np.quantile(base - o.forecast.final_samples, (0.1, 0.5, 0.9))
                o.extra["gain"] = tuple(float(x) for x in g)
    cands = [o for o in advice.of("length") if o.forecast.final_samples is not None]
    if len(cands) >= 2:
        draws = np.stack([np.asarray(o.forecast.final_samples) for o in cands])  # (options, draws)
        lengths = np.array([o.length for o in cands])
        best = lengths[np.argmin(draws, axis=0)]
        point = min(cands, key=lambda o: o.final)
        lo, hi = point.interval
        # p10/p90: the deciles of the length that is best in each draw (how sure the choice is)
        advice.best_length = {"length": int(point.length or 0), "final": point.final, "final_p10": lo, "final_p90": hi,
                              "probability": float(np.mean(best == point.length)),
                              "p10": int(np.quantile(best, 0.1, method="lower")),
                              "p90": int(np.quantile(best, 0.9, method="higher")),
                              "identified": not any(o.unidentified for o in cands),
                              "edge": point.length in (lengths.min(), lengths.max())}


def _short(spec: str, width: int = 60) -> str:
    return spec if len(spec) <= width else spec[: width - 3] + "..."
