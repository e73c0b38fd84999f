"""Fitting: per metric, screened histories of the targets and their context pooled per group, one
batched `Forecaster` fit (a failing group contained), then each target judged ready or skipped."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from forecaster import screen
from forecaster.histories import RunForecast, RunHistory
from forecaster.join import join
from forecaster.sync.lawmemo import LawMemo, members_of
from forecaster.sync.plan import Plan
from forecaster.sync.read import build_history
from forecaster.sync.report import Skip, SkipKind
from forecaster.sync.settings import SyncSettings
from forecaster.trackers import Series

log = logging.getLogger("forecaster.sync")


@dataclass
class Fits:
    """What the fit step made of the targets: forecasts, histories, notes and a verdict per run."""

    curves: dict[str, dict[str, RunForecast]] = field(default_factory=dict)  # run -> metric -> forecast
    histories: dict[str, RunHistory] = field(default_factory=dict)  # run -> its primary history
    pooled: list[RunHistory] = field(default_factory=list)  # every primary history fitted (context too)
    notes: dict[str, list[str]] = field(default_factory=dict)  # run -> what screening did to its data
    ready: list[Plan] = field(default_factory=list)  # a forecast of the primary metric to write
    broken: list[Plan] = field(default_factory=list)  # diverged: skipped, but their alerts are still judged
    skipped: list[tuple[Plan, Skip]] = field(default_factory=list)
    # run -> its primary metric cooled down from its last step, and the cooldown's length (runs at constant LR)
    cooldowns: dict[str, tuple[RunForecast, int]] = field(default_factory=dict)


def _factor(f: float) -> str:
    """'1000x above' / '5x below'."""
    return f"{f:.3g}x above" if f >= 1 else f"{1 / f:.3g}x below"


Cooled = dict[int, tuple[RunForecast, int]]  # history index -> (cooled down now, cooldown length)


def _fit_one(hist: list[RunHistory], settings: SyncSettings, law: str, *, cool: frozenset[int] = frozenset(),
             cooled: Cooled | None = None, init: dict[str, dict[str, float]] | None = None) -> list[RunForecast]:
    """One batched fit and its forecasts (warm-started from `init`, by run); runs in `cool` (at constant
    LR) also cooled down now, into `cooled`."""
    from forecaster.forecast import Forecaster

    fc = Forecaster(law=law, device=settings.device, seed=settings.seed, init=init or None,
                    **settings.forecaster_options)
    out = list(fc.fit(hist).predict())
    want = [i for i in sorted(cool) if not out[i].skipped]
    if want and cooled is not None:
        from forecaster import advisor

        try:
            cooled.update(advisor.cooldown_now(fc, want, settings.cooldown_share))
        except Exception as e:  # noqa: BLE001 - a what-if must never cost a run its forecast
            log.warning("cooling down now could not be forecast: %s: %s", type(e).__name__, e)
    return out


def _fit(hist: list[RunHistory], settings: SyncSettings, laws: dict[str, str] | None = None,
         cool: frozenset[int] = frozenset(), cooled: Cooled | None = None,
         init: dict[str, dict[str, float]] | None = None) -> list[RunForecast]:
    """One batched fit per law: groups in `laws` with their remembered law (warm-started from `init`,
    by run), the rest with the settings'."""
    by_law: dict[str, list[int]] = {}
    for i, h in enumerate(hist):
        by_law.setdefault((laws or {}).get(h.group, settings.law), []).append(i)
    out: list[RunForecast | None] = [None] * len(hist)
    for law, idx in sorted(by_law.items()):
        part: Cooled = {}
        mine = frozenset(k for k, i in enumerate(idx) if i in cool)
        extra: dict = {"cool": mine, "cooled": part} if mine else {}
        if init:
            extra["init"] = {hist[i].run: init[hist[i].run] for i in idx if hist[i].run in init}
        for i, fc in zip(idx, _fit_one([hist[i] for i in idx], settings, law, **extra)):
            out[i] = fc
        if cooled is not None:
            cooled.update({idx[k]: v for k, v in part.items()})
    return [fc for fc in out if fc is not None]


def fit_contained(hist: list[RunHistory], settings: SyncSettings, laws: dict[str, str] | None = None,
                  cool: frozenset[int] = frozenset(), cooled: Cooled | None = None,
                  init: dict[str, dict[str, float]] | None = None) -> list[RunForecast]:
    """All groups in one batched fit (one per remembered law, `laws` by group); if that fails, each
    group on its own, so a failure costs only the group it happened in (its runs are skipped with
    the error as reason). Runs (indices) in `cool` also get their "cooled down now" forecast in `cooled`."""
    try:
        return _fit(hist, settings, laws, cool, cooled, init)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - contained below, group by group
        log.warning("the batched fit failed (%s: %s); fitting each group on its own", type(e).__name__, e)
    by_group: dict[str, list[int]] = {}
    for i, h in enumerate(hist):
        by_group.setdefault(h.group, []).append(i)
    out: list[RunForecast | None] = [None] * len(hist)
    for group, idx in by_group.items():  # only after a failure: the price of isolating it
        try:
            part: Cooled = {}
            fcs = _fit([hist[i] for i in idx], settings, laws, frozenset(k for k, i in enumerate(idx) if i in cool),
                       part, init)
            if cooled is not None:
                cooled.update({idx[k]: v for k, v in part.items()})
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as e:  # noqa: BLE001 - this group's runs are skipped, the others go on
            log.warning("group %s: fit failed: %s: %s", group, type(e).__name__, e, exc_info=log.isEnabledFor(10))
            fcs = [RunForecast.skip(hist[i].run, group, f"fit failed: {type(e).__name__}: {e}", hist[i].metric)
                   for i in idx]
        for i, fc in zip(idx, fcs):
            out[i] = fc
    return [fc for fc in out if fc is not None]


def fit(settings: SyncSettings, targets: list[Plan], context: list[Plan],
        series: dict[str, dict[str, Series]], memo: LawMemo | None = None) -> Fits:
    """One fit per metric over all groups with work; then each target's verdict. With `memo`, a
    group whose law choice still holds is fitted with that law directly (`lawmemo`)."""
    primary = settings.primary
    targets = [p for p in targets if p.run.id in series]
    out = Fits(curves={p.run.id: {} for p in targets}, notes={p.run.id: [] for p in targets})
    failed: dict[str, Skip] = {}  # target run -> why its data could not be used at all
    diverged: dict[str, RunHistory] = {}
    for metric in settings.metrics:
        hist, is_target = [], []
        for p in [*targets, *[c for c in context if c.run.id in series]]:
            tgt = p.run.id in out.curves
            try:
                h = build_history(p, metric, series[p.run.id], tgt, settings)
            except Exception as e:  # noqa: BLE001 - one run's odd data must not stop its experiment
                log.warning("%s: %s unreadable: %s: %s", p.run.label, metric, type(e).__name__, e)
                if tgt and metric == primary:
                    failed[p.run.id] = Skip(SkipKind.BAD_DATA,
                                            f"{metric} could not be read ({type(e).__name__}: {e})")
                continue
            if h is None:
                continue
            if tgt and (d := screen.describe_dropped(h.meta.get("dropped", {}))):
                out.notes[p.run.id].append(f"{metric}: {d}")
            if h.meta.get("diverged_at") is not None:
                # a diverged curve is no evidence for its siblings, and has no future to forecast
                if tgt and metric == primary:
                    diverged[p.run.id] = h
                continue
            hist.append(h)
            is_target.append(tgt)
        for i, factor in screen.level_outliers(hist).items():
            h = hist[i]
            h.group = f"{h.group} (alone: {h.run})"
            if is_target[i]:
                out.notes[h.run].append(f"{metric}: fitted alone, not pooled: it sits {_factor(factor)} its "
                                        "siblings' at the same steps (a summed loss, or another scale?)")
            else:
                log.info("%s: not pooled as context: %s sits %s its siblings'", h.meta.get("name", h.run),
                         metric, _factor(factor))
        if metric == primary:
            out.pooled = hist
        if not any(is_target):
            continue
        laws: dict[str, str] = {}
        if memo is not None:
            laws = {g: law for g, m in members_of(hist).items() if (law := memo.reuse(metric, g, m))}
        cool: frozenset[int] = frozenset()
        if metric == primary and settings.cooldown_share > 0:
            from forecaster.advisor import stable_phase

            cool = frozenset(i for i, (h, tgt) in enumerate(zip(hist, is_target)) if tgt and stable_phase(h))
        cooled: Cooled = {}
        # a group fitted with its remembered law starts where its last fit ended (a few LM steps)
        init = {run: p for g, law in laws.items() for run, p in memo.starts(metric, g, law).items()} \
            if memo is not None else {}
        fcs = fit_contained(hist, settings, laws, cool, cooled, init)
        if memo is not None:
            memo.record(metric, hist, fcs, {h.group for h in hist} - set(laws))
            memo.record_params(metric, hist, fcs)
        for i, (h, fc, tgt) in enumerate(zip(hist, fcs, is_target)):
            if tgt:
                out.curves[h.run][metric] = join(h, fc)
                if metric == primary:
                    out.histories[h.run] = h
                    if i in cooled and not cooled[i][0].skipped:
                        out.cooldowns[h.run] = (join(h, cooled[i][0]), cooled[i][1])
    _judge(out, targets, failed, diverged, primary)
    if memo is not None:
        memo.save()
    return out


def _judge(out: Fits, targets: list[Plan], failed: dict[str, Skip], diverged: dict[str, RunHistory],
           primary: str) -> None:
    """Each target ready (its secondary metrics that could not be fitted dropped) or skipped, and why."""
    for p in targets:
        rid = p.run.id
        fc = out.curves[rid].get(primary)
        if rid in failed:
            skip = failed[rid]
        elif rid in diverged:
            at = diverged[rid].meta["diverged_at"]
            skip = Skip(SkipKind.DIVERGED, f"{primary} is NaN/inf from step {at} on")
            out.histories[rid] = diverged[rid]
            out.broken.append(p)
        elif fc is None:
            skip = Skip(SkipKind.NO_DATA, f"metric {primary!r} has no finite values")
        elif fc.skipped:
            skip = Skip(SkipKind.NOT_FITTED, str(fc.skipped))
        else:
            skip = None
        if skip is not None:
            out.skipped.append((p, skip))
            continue
        for m in list(out.curves[rid]):
            if out.curves[rid][m].skipped:
                del out.curves[rid][m]
        out.ready.append(p)
