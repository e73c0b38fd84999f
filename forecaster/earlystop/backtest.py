"""The whole early-stop backtest: forecast what the replay reaches, replay our rule, score it and the baselines."""

from __future__ import annotations

import time
from typing import Any, Callable

from forecaster.csvio import jsonable
from forecaster.earlystop.baselines import BASELINES, replay_baseline
from forecaster.earlystop.lawchoice import candidate_laws
from forecaster.earlystop.replay import _groups, _share_grid, contexts, forecast_checkpoints, replay_forecast_rule
from forecaster.earlystop.scores import score
from forecaster.earlystop.settings import EarlyStopSettings
from forecaster.histories import RunForecast, RunHistory

# the settings a result records (device is where it ran, not what it decided)
RECORDED = ("delta", "margin", "min_points", "first_share", "ratio", "min_calibration", "neighbours", "patience",
            "startup_trials", "context", "pool", "law", "law_score", "law_score_alpha", "law_score_from", "seed")


def run_early_stop(histories: list[RunHistory], settings: EarlyStopSettings | None = None,
                   baselines: tuple[str, ...] = BASELINES,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The whole backtest: our rule and each baseline replayed on the same runs; JSON-ready result."""
    s = settings or EarlyStopSettings()
    groups, notes = _groups(histories)
    runs = [r for rs in groups.values() for r in rs]
    grid = _share_grid(runs, s)
    t0 = time.perf_counter()
    by_name = {r.history.run: r for r in runs}
    cands = {r.history.run: candidate_laws(r.history, s.law) for r in runs}
    cache: dict[tuple[str, int, tuple[str, ...], str], RunForecast] = {}
    # a run's context (its finished siblings) depends on the decisions about the runs before it, and
    # those on their forecasts: replay with contexts implied by the previous round's decisions
    # until they imply the same contexts again. At that fixed point every forecast used exactly
    # the siblings a live search would have had finished, so the result is the sequential replay.
    ctx = contexts(groups, {}, s.context)

    def view() -> dict[tuple[str, int], dict[str, RunForecast]]:
        out: dict[tuple[str, int], dict[str, RunForecast]] = {}
        for run, ks in grid.items():
            for k in ks:
                got = {law: cache[(run, k, ctx[run], law)] for law in cands[run]
                       if (run, k, ctx[run], law) in cache}
                if len(got) == len(cands[run]):
                    out[(run, k)] = got
        return out

    calls = rounds = 0
    while True:
        # forecast only the prefixes the replay reaches: whatever the replay with the forecasts
        # so far reaches next, until it needs nothing new
        reached: set[tuple[str, int]] = set()
        replay_forecast_rule(groups, grid, view(), s, reached)
        if reached:
            # a run that got past a checkpoint usually gets past the next ones: forecast them all now
            need = {(run, k, law) for run, k0 in reached for k in grid[run] if k >= k0
                    for law in cands[run] if (run, k, ctx[run], law) not in cache}
            calls += len({(law, grid[run].index(k)) for run, k, law in need})
            forecast_checkpoints(by_name, need, grid, s, cache, ctx, progress)
            continue
        rounds += 1
        new = contexts(groups, replay_forecast_rule(groups, grid, view(), s).stops, s.context)
        if new == ctx:
            break
        if rounds >= s.max_rounds:
            raise RuntimeError(f"early-stop replay: contexts still changing after {rounds} rounds")
        if progress:
            progress(f"round {rounds}: {sum(new[r] != ctx[r] for r in ctx)} runs' finished siblings changed")
        ctx = new
    fcs = view()
    ours = replay_forecast_rule(groups, grid, fcs, s)
    ours.seconds = time.perf_counter() - t0
    skipped = sum(1 for fl in fcs.values() for f in fl.values() if f.skipped)
    out: dict[str, Any] = score(ours, groups, s.margin)
    out["seconds"] = ours.seconds
    base: dict[str, Any] = {}
    for name in baselines:
        m = replay_baseline(name, groups, s)
        base[name] = score(m, groups, s.margin)
        base[name]["seconds"] = m.seconds
    out["baselines"] = base
    out["runs"] = len(runs)
    out["group_count"] = len(groups)
    out["checkpoints"] = sorted({len(g) for g in grid.values()})
    out["forecasts"] = sum(len(fl) for fl in fcs.values())
    # which law the calibrated checks used, per checkpoint index (1 = first checkpoint)
    out["law_choice"] = {}
    for (c, law), n in sorted(ours.laws.items()):
        out["law_choice"].setdefault(str(c + 1), {})[law] = n
    out["forecasts_made"] = len(cache)
    out["forecaster_calls"] = calls
    out["context_rounds"] = rounds
    out["forecasts_skipped"] = skipped
    out["settings"] = {k: getattr(s, k) for k in RECORDED}
    out["notes"] = notes
    return jsonable(out)
