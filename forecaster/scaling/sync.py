"""`forecast sync --scaling`: fit each experiment's scaling law across its runs and write a summary run.

Points come from what the sync already holds, without reading any history: a finished run's last
logged value of the primary metric, or a running run's forecast final value with its p10/p90
interval (sigma = (p90 - p10) / 2.563, so forecast uncertainty flows through `fit_scaling`'s
per-point sigma). Model size N and token count D come from the run's params/config (after the
config file's mapping). Values are rounded to the 6 significant digits the forecast tags hold, so a
run's point is the same whether its forecast was made in this sync or read back from its tags.

Idempotence: the summary run carries ``forecast.input``, a fingerprint of the points and the
settings; a scope whose complete summary run matches is not fitted and not written. A revision
creates the new summary run completely, then deletes the old ones.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forecaster import __version__, tags
from forecaster.errors import InputError
from forecaster.runconfig import BATCH_TOKEN_KEYS, SIZE_KEYS, STEPS_KEYS, TOKEN_KEYS
from forecaster.stats import Z90
from forecaster.trackers import FINISHED, RunInfo, SummaryRevision, Tracker, fingerprint

log = logging.getLogger("forecaster.sync")

_TABLE_KEYS = ("law", "objective", "size_keys", "token_keys", "steps_keys", "batch_tokens_keys", "planned",
               "budgets", "n_boot", "min_runs", "seed", "enabled")


@dataclass(frozen=True)
class Planned:
    """A configuration to predict the final loss of (from the config file's [[scaling.planned]])."""

    name: str
    N: float
    D: float


@dataclass
class ScalingSettings:
    """The [scaling] table: which law, where N and D are found, what to predict."""

    law: str = "chinchilla"
    objective: str | None = None
    size_keys: tuple[str, ...] = SIZE_KEYS
    token_keys: tuple[str, ...] = TOKEN_KEYS
    steps_keys: tuple[str, ...] = STEPS_KEYS
    batch_tokens_keys: tuple[str, ...] = BATCH_TOKEN_KEYS
    planned: tuple[Planned, ...] = ()
    budgets: tuple[float, ...] = ()
    n_boot: int = 200
    min_runs: int | None = None  # default: the law's parameter count + 1
    seed: int = 0
    level: float = 0.8  # intervals as p10 / p90, like the forecast tags

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None) -> "ScalingSettings":
        """Settings from the config file's [scaling] table; InputError (one line) on bad values."""
        from forecaster.scaling import laws

        t = dict(table or {})
        unknown = sorted(set(t) - set(_TABLE_KEYS))
        if unknown:
            raise InputError(f"[scaling]: unknown key(s) {', '.join(unknown)}; known: {', '.join(_TABLE_KEYS)}")
        s = cls()
        if "law" in t:
            s.law = str(t["law"])
            loss_laws = laws.available(predicts="loss")
            if s.law not in loss_laws:
                raise InputError(f"[scaling] law: {s.law!r} is not a loss law ({', '.join(loss_laws)})")
        if t.get("objective") is not None:
            s.objective = str(t["objective"])
        for k in ("size_keys", "token_keys", "steps_keys", "batch_tokens_keys"):
            if k in t:
                v = t[k]
                v = [v] if isinstance(v, str) else v
                if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
                    raise InputError(f"[scaling] {k}: give a param name or a list of them")
                setattr(s, k, tuple(v))
        try:
            if "n_boot" in t:
                s.n_boot = int(t["n_boot"])
            if "min_runs" in t:
                s.min_runs = int(t["min_runs"])
            if "seed" in t:
                s.seed = int(t["seed"])
            s.budgets = tuple(float(c) for c in t.get("budgets", ()))
        except (TypeError, ValueError) as e:
            raise InputError(f"[scaling]: {e}") from None
        if s.n_boot < 0 or any(not (c > 0 and math.isfinite(c)) for c in s.budgets):
            raise InputError("[scaling]: n_boot must be >= 0 and budgets positive FLOP counts")
        s.planned = tuple(_planned(i, p) for i, p in enumerate(t.get("planned", ())))
        if len({p.name for p in s.planned}) != len(s.planned):
            raise InputError("[scaling] planned: names must be unique")
        return s

    def token(self) -> str:
        """What of the settings changes the summary (part of its fingerprint)."""
        return repr((__version__, self.law, self.objective, self.size_keys, self.token_keys, self.steps_keys,
                     self.batch_tokens_keys, self.planned, self.budgets, self.n_boot, self.seed, self.level))


def _planned(i: int, p: Any) -> Planned:
    if not isinstance(p, Mapping):
        raise InputError(f"[scaling] planned #{i + 1}: give a table like {{name = \"7B\", N = 7e9, D = 1.4e11}}")
    try:
        N = float(p.get("N", p.get("n_params")))
        D = float(p.get("D", p.get("tokens")))
    except (TypeError, ValueError):
        raise InputError(f"[scaling] planned #{i + 1}: needs numbers N (parameters) and D (tokens)") from None
    if not (N > 0 and D > 0 and math.isfinite(N) and math.isfinite(D)):
        raise InputError(f"[scaling] planned #{i + 1}: N and D must be positive")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(p.get("name") or f"N{N:.3g}_D{D:.3g}"))
    return Planned(name, N, D)


@dataclass
class ScalingOutcome:
    """What the scaling step did for one scope."""

    scope: str
    action: str  # "fit" | "unchanged" | "too few" | "would fit"
    message: str
    n_points: int = 0
    fit: Any = None  # forecaster.scaling.ScalingFit
    summary_id: str | None = None
    excluded: dict[str, str] = field(default_factory=dict)  # run label -> why it is not a point


def _num(cfg: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[float | None, bool]:
    """(value, present): the first of `keys` present; value None when it is not a positive number."""
    for k in keys:
        if k in cfg and cfg[k] not in (None, ""):
            try:
                x = float(cfg[k])
            except (TypeError, ValueError):
                return None, True
            return (x if math.isfinite(x) and x > 0 else None), True
    return None, False


def _r6(x: float) -> float:
    """Round to the 6 significant digits the forecast tags are written with."""
    return float(f"{x:.6g}")


@dataclass(frozen=True)
class NotAPoint:
    """Why a run is not a scaling point; `config` when its logged size or token count is missing or bad."""

    reason: str
    config: bool = False

    def __str__(self) -> str:
        return self.reason


def run_point(run: RunInfo, cfg: Mapping[str, Any], metric: str, fresh: tuple[float, float, float] | None,
              s: ScalingSettings) -> tuple[tuple[float, float, float, float] | None, NotAPoint | None]:
    """(N, D, loss, sigma) of one run, or None and why it is not a point."""
    N, has_n = _num(cfg, s.size_keys)
    if N is None:
        return None, NotAPoint(("bad size: " if has_n else "no size: ")
                               + f"none of {', '.join(s.size_keys)} is a positive number", config=True)
    D, has_d = _num(cfg, s.token_keys)
    if D is None:
        steps, _ = _num(cfg, s.steps_keys)
        per, _ = _num(cfg, s.batch_tokens_keys)
        if steps is None or per is None:
            return None, NotAPoint(("bad tokens: " if has_d else "no tokens: ") + f"no {' / '.join(s.token_keys[:3])}, "
                                   f"nor {s.steps_keys[0]} x {s.batch_tokens_keys[0]}", config=True)
        D = steps * per
    if run.status == FINISHED:
        w = run.latest.get(metric)
        if w is None or not math.isfinite(w.value) or w.value <= 0:
            return None, NotAPoint(f"no final {metric}")
        return (N, D, _r6(w.value), 0.0), None
    if not run.active:
        return None, NotAPoint(f"{run.status} before its end")
    if fresh is None:
        got = run.tags
        if got.get(tags.STATUS) == tags.STATUS_OK and got.get(tags.METRIC, metric) == metric:
            try:
                fresh = tuple(float(got[k]) for k in (tags.FINAL, tags.FINAL_P10, tags.FINAL_P90))
            except (KeyError, ValueError):
                fresh = None
        elif str(got.get(tags.SKIPPED, "")).startswith("done") and metric in run.latest:
            fresh = (run.latest[metric].value,) * 3  # reached its planned end: the last value is final
    if fresh is None:
        return None, NotAPoint("running, no forecast yet")
    final, lo, hi = (_r6(x) for x in fresh)
    if not (math.isfinite(final) and final > 0):
        return None, NotAPoint(f"no finite forecast of {metric}")
    sigma = max(0.0, (hi - lo) / (2 * Z90)) if math.isfinite(hi - lo) else 0.0
    return (N, D, final, _r6(sigma)), None


def sync_scaling(tracker: Tracker, settings: ScalingSettings, runs: list[RunInfo], summaries: list[RunInfo],
                 configs: Mapping[str, Mapping[str, Any]], fresh: Mapping[str, tuple[float, float, float]],
                 metric: str, dry_run: bool = False, force: bool = False, plots: bool = True,
                 device: str | None = None, on_write: Any = None) -> list[ScalingOutcome]:
    """Per scope: collect points, compare with the live summary run, fit and write only on change."""
    out = []
    for scope in dict.fromkeys(r.scope for r in runs):
        mine = [r for r in runs if r.scope == scope]
        old = [r for r in summaries if r.scope == scope and r.tags.get(tags.KIND) == tags.KIND_SCALING]
        out.append(_one_scope(tracker, settings, scope, mine, old, configs, fresh, metric, dry_run, force, plots,
                              device, on_write or (lambda: None)))
    return out


def _one_scope(tracker, settings, scope, runs, old, configs, fresh, metric, dry_run, force, plots, device,
               on_write) -> ScalingOutcome:
    from forecaster.scaling import laws
    from forecaster.scaling.fit import fit_scaling
    from forecaster.scaling.points import ScalingPoints

    rows, names, excluded, bad = [], [], {}, {}
    for r in runs:
        pt, why = run_point(r, configs.get(r.id, r.config), metric, fresh.get(r.id), settings)
        if why is not None:
            excluded[r.label] = str(why)
            if why.config:
                bad[r.label] = str(why)
        else:
            rows.append(pt)
            names.append(r.id)
    need = settings.min_runs or len(laws.get(settings.law).params) + 1
    left_out = ""
    if bad:
        shown = "; ".join(f"{k}: {v.split(':')[0]}" for k, v in list(bad.items())[:5])
        left_out = (f"{len(bad)} run(s) without usable size/token info left out ({shown}"
                    f"{', ...' if len(bad) > 5 else ''})")
    if len(rows) < need or len({p[0] for p in rows}) < 2 or len({p[1] for p in rows}) < 2:
        msg = (f"scaling {scope}: {len(rows)} run(s) with size, tokens and a final or forecast {metric} "
               f"(need {need} at two or more sizes and token counts); no scaling fit"
               + (f"; {left_out}" if left_out else ""))
        log.info(msg)
        return ScalingOutcome(scope, "too few", msg, len(rows), excluded=excluded)
    if left_out:
        log.info("scaling %s: %s", scope, left_out)
    order = sorted(range(len(rows)), key=lambda i: names[i])
    rows, names = [rows[i] for i in order], [names[i] for i in order]
    fp = fingerprint("scaling", settings.token(), metric, list(zip(names, rows)))
    current = [s for s in old if s.tags.get(tags.INPUT) == fp and s.status == FINISHED]
    if current and not force:
        keep = current[0]
        stale = [s for s in old if s.id != keep.id]
        if not dry_run:
            for s in stale:  # left over from a sync that stopped between create and delete
                tracker.delete_summary(s)
                on_write()
        msg = f"scaling {scope}: unchanged ({len(rows)} runs; summary run {keep.id})"
        log.info(msg)
        return ScalingOutcome(scope, "unchanged", msg, len(rows), summary_id=keep.id, excluded=excluded)

    arr = np.array(rows, dtype=np.float64)
    sigma = arr[:, 3] if (arr[:, 3] > 0).any() else None
    pts = ScalingPoints(N=arr[:, 0], D=arr[:, 1], loss=arr[:, 2], sigma=sigma, names=names)
    with np.errstate(all="ignore"):  # a few bootstrap rows overflow far from the data; quantiles absorb them
        fit = fit_scaling(pts, law=settings.law, objective=settings.objective, n_boot=settings.n_boot,
                          level=settings.level, seed=settings.seed, device=device, budgets=settings.budgets)
        preds = {p.name: fit.predict(N=p.N, D=p.D) for p in settings.planned}
    n_fc = int((arr[:, 3] > 0).sum())
    head = (f"{fit.law} fit to {len(rows)} runs ({n_fc} forecast): "
            + ", ".join(f"{k}={v:.4g}" for k, v in fit.params.items()))
    pred_text = "; ".join(f"{k} -> {v['value']:.4g}" + (f" [{v['lo']:.4g}, {v['hi']:.4g}]" if v["lo"] is not None
                                                         else "") for k, v in preds.items())
    if dry_run:
        msg = f"scaling {scope}: would write {head}" + (f"; {pred_text}" if pred_text else "")
        log.info(msg)
        return ScalingOutcome(scope, "would fit", msg, len(rows), fit=fit, excluded=excluded)
    rev = _revision(scope, fp, fit, pts, preds, metric, settings, plots, runs)
    sid = tracker.create_summary(rev)
    on_write()
    for s in old:  # only now that the new summary run is complete
        if s.id != sid:
            tracker.delete_summary(s)
            on_write()
    msg = f"scaling {scope}: {head}" + (f"; {pred_text}" if pred_text else "") + f" -> summary run {sid}"
    log.info(msg)
    return ScalingOutcome(scope, "fit", msg, len(rows), fit=fit, summary_id=sid, excluded=excluded)


def _revision(scope: str, fp: str, fit: Any, pts: Any, preds: dict[str, dict[str, Any]], metric: str,
              s: ScalingSettings, plots: bool, runs: list[RunInfo]) -> SummaryRevision:
    """The summary run: law parameters as params, intervals as tags, predictions as metrics, plot + JSON."""
    params = {k: f"{v:.6g}" for k, v in fit.params.items()}
    params.update(law=fit.law, objective=fit.objective, metric=metric, n_runs=str(fit.n_points),
                  n_boot=str(fit.n_boot))
    out = {tags.SCALING_LAW: fit.law, tags.SCALING_LEVEL: f"{fit.level:g}", tags.VERSION: __version__}
    for k, (lo, hi) in fit.intervals.items():
        out[f"{tags.SCALING_PREFIX}{k}.lo"] = f"{lo:.6g}"
        out[f"{tags.SCALING_PREFIX}{k}.hi"] = f"{hi:.6g}"
    if fit.notes:
        out[tags.SCALING_NOTES] = "; ".join(fit.notes)
    metrics = {"rss": fit.rss, "n_runs": float(fit.n_points)}
    for name, p in preds.items():
        metrics[f"pred.{name}"] = p["value"]
        if p["lo"] is not None:
            metrics[f"pred.{name}.p10"] = p["lo"]
            metrics[f"pred.{name}.p90"] = p["hi"]
    for i, row in enumerate(fit.derived.get("compute_optimal", [])):
        for k in ("N_opt", "D_opt", "loss"):
            if row[k]["value"] is not None:
                metrics[f"optimal.{i}.{k}"] = row[k]["value"]
    label = {r.id: r.name for r in runs}
    doc = {"fit": fit.to_dict(samples=False), "metric": metric,
           "planned": [{"name": p.name, "N": p.N, "D": p.D, **preds[p.name]} for p in s.planned],
           "points": [{"run_id": rid, "run": label.get(rid, rid), "N": float(n), "D": float(d), "loss": float(l),
                       "sigma": float(sg) if pts.sigma is not None else 0.0}
                      for rid, n, d, l, sg in zip(pts.names, pts.N, pts.D, pts.loss,
                                                  pts.sigma if pts.sigma is not None else pts.N * 0)]}
    artifacts = {"scaling.json": json.dumps(doc, indent=1, allow_nan=False, default=_jsonable).encode()}
    if plots:
        try:
            artifacts["scaling.png"] = _png(fit, pts)
        except Exception as e:  # noqa: BLE001 - a plot must never block the summary
            log.warning("scaling %s: plot failed: %s", scope, e)
    return SummaryRevision(scope=scope, kind=tags.KIND_SCALING, input=fp, name=f"scaling law ({fit.law})",
                           params=params, tags=out, metrics=metrics, artifacts=artifacts)


def _jsonable(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else str(x)


def _png(fit: Any, pts: Any) -> bytes:
    from forecaster.scaling.plot import plot_fit

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scaling.png"
        with np.errstate(all="ignore"):  # bootstrap rows far out along the frontier overflow harmlessly
            plot_fit(fit, pts, path)
        return path.read_bytes()


__all__ = ["NotAPoint", "Planned", "ScalingOutcome", "ScalingSettings", "run_point", "sync_scaling"]
