"""Which law forecasts each group: the candidate that best forecasts held-back data, not the one
with the smallest training error, and a richer law only when it is clearly better."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from forecaster import laws
from forecaster.batch import build_features
from forecaster.eligibility import MIN_POINTS, informative_lr
from forecaster.histories import RunHistory, planned_end
from forecaster.stats import EPS
from forecaster.transients import chunk_bias

if TYPE_CHECKING:  # pragma: no cover
    from forecaster.forecast import Forecaster

HOLDOUT = 0.2
SIMPLER_MARGIN = 0.6
# the most members of one group that contest the law choice: a choice made on 64 runs spread over
# the group is the one all of them would make, at a fraction of fitting every candidate on every
# run (the cost of a first sync of a 300-run group); no group of the dev sets is this large
CONTEST_MAX = 64


@dataclass
class Plan:
    """Which runs are fitted together, on which points, with which candidate laws."""

    rows: list[int]  # indices into the fitted histories
    groups: list[list[int]]  # member rows (into `rows`) of each fitting group
    candidates: list[str]


def plans(histories: list[RunHistory], skipped: dict[int, str], law: str) -> list[Plan]:
    """Split fittable runs by whether they carry LR information; group by `group`."""
    out = []
    for has_lr in (True, False):
        idx = [i for i, h in enumerate(histories) if i not in skipped and informative_lr(h) == has_lr]
        if not idx:
            continue
        by_group: dict[str, list[int]] = {}
        for k, i in enumerate(idx):
            by_group.setdefault(histories[i].group, []).append(k)
        if law != "auto":
            cands = [law]
        else:
            names = laws.automatic(needs_lr=has_lr)
            cands = sorted(names, key=lambda n: (len(laws.get(n).params), n))
        out.append(Plan(rows=idx, groups=list(by_group.values()), candidates=cands))
    return out


def select(fc: Forecaster, plan: Plan) -> dict[int, str]:
    """Per group, the candidate that best forecasts the held-back tail of its target runs."""
    if len(plan.candidates) == 1:
        return {g: plan.candidates[0] for g in range(len(plan.groups))}
    hist = fc.histories_
    cut_hist = list(hist)
    held: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for m, r in enumerate(plan.rows):
        h = hist[r]
        if h.horizon is None or len(h.horizon) == 0:
            continue
        n = len(h.steps)
        k = int(round(n * (1 - fc.holdout)))
        if k < MIN_POINTS or k >= n:
            continue
        held[r] = (h.steps[k:], h.values[k:])
        cut_hist[r] = RunHistory(h.run, h.steps[:k], h.values[:k], group=h.group, lr_steps=h.lr_steps,
                                 lr_values=h.lr_values, schedule=h.schedule, horizon=h.steps[k:],
                                 size=h.size, metric=h.metric, meta={"planned_end": planned_end(h)})
    # a lone run cannot tell one annealing law from another (its own prefix rarely shows the
    # decay it will see), so only groups of siblings with something held back are contested
    contested = [g for g, members in enumerate(plan.groups)
                 if len(members) > 1 and any(plan.rows[m] in held for m in members)]
    contest = {g: _contestants(plan.groups[g], [plan.rows[m] in held for m in plan.groups[g]], CONTEST_MAX)
               for g in contested}
    scores = np.full((len(plan.groups), len(plan.candidates)), np.inf)
    scores[:, 0] = 0.0
    # besides the targets' held-back tails, each law is judged on how well it reproduces the
    # finished siblings' last fifth (where their LR decays mostly sit): a law that cannot fit
    # the annealing its group has shown should not be trusted to forecast it
    check = dict(held)
    for g in contested:
        for m in contest[g]:
            r = plan.rows[m]
            h = hist[r]
            if r not in held and not (h.horizon is not None and len(h.horizon)):
                k = int(round(len(h.steps) * (1 - fc.holdout)))
                check[r] = (h.steps[k:], h.values[k:])
    for c, name in enumerate(plan.candidates if contested else []):
        fit, rows, _ = fc._fit(name, plan, [contest[g] for g in contested], cut_hist)
        targets = [(k, mi, plan.rows[m]) for k, g in enumerate(contested)
                   for mi, m in enumerate(contest[g]) if plan.rows[m] in check]
        # each target's planned last step rides along: the candidates' finals, whose spread is the
        # law family's disagreement (`selfcal`)
        feats = build_features([cut_hist[r] for _, _, r in targets],
                               [np.r_[check[r][0], hist[r].horizon[-1:]] if r in held else check[r][0]
                                for _, _, r in targets],
                               warmup=fc.warmup, blocks=fit.law.uses_blocks, device=fc.device_)
        gi = torch.as_tensor([k for k, _, _ in targets], device=fc.device_)
        mi = torch.as_tensor([m for _, m, _ in targets], device=fc.device_)
        pred = fit.law.predict(fit.law.natural(fit.run_params()[gi, mi]), feats).cpu().numpy()
        errs: dict[int, tuple[list[float], list[float]]] = {}
        for j, (k, _, r) in enumerate(targets):
            n = len(check[r][1])
            e = chunk_bias(np.log(np.clip(pred[j, :n], EPS, None)) - np.log(check[r][1]))
            fc.validation_.setdefault(r, {})[name] = e
            if r in held:
                fc.law_finals_.setdefault(r, {})[name] = float(pred[j, n])
            errs.setdefault(contested[k], ([], []))[0 if r in held else 1].append(e)
        for g, (tail, sibs) in errs.items():
            score = np.mean(tail) if not sibs else 0.5 * (np.mean(tail) + np.mean(sibs))
            scores[g, c] = score if np.isfinite(score) else np.inf
    return {g: plan.candidates[prefer_simple(scores[g])] for g in range(len(plan.groups))}


def _contestants(members: list[int], target: list[bool], most: int) -> list[int]:
    """At most `most` of a group's members, in their order: targets and finished siblings each
    evenly spread, at least half of the places for the targets where there are that many."""
    if len(members) <= most:
        return members
    targets = [m for m, t in zip(members, target) if t]
    others = [m for m, t in zip(members, target) if not t]
    n_targets = min(len(targets), max(most - len(others), most // 2))
    return sorted(spread(targets, n_targets) + spread(others, most - n_targets))


def spread(items: list[int], k: int) -> list[int]:
    """`k` of `items` evenly spread over their order (all of them when they are no more)."""
    if len(items) <= k:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, k).round().astype(int)] if k > 0 else []


def prefer_simple(scores: np.ndarray) -> int:
    """Index of the law to use: a law with more parameters must forecast the held-back data
    clearly better (40 % less error) than the simpler ones: a short tail is a noisy judge, and the
    siblings' part of the score is in-sample, which favours the richer law. On Luo's smooth curves
    the extra parameters rarely paid off; on the noisy PKU curves multi-power scored about 0.55x
    momentum in every group and forecast better (docs/benchmarks.md)."""
    best = 0
    for c in range(1, len(scores)):
        if scores[c] < SIMPLER_MARGIN * scores[best]:
            best = c
    return best
