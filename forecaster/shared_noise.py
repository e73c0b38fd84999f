"""Deviations from the law that sibling runs share, step by step, carried over to a target's horizon.

Runs trained on the same data in the same order see the same easy and hard batches, so their
losses wiggle together: a sibling's deviation from its own fitted law at a step it logged foretells
the target's at that step (the PKU curves: correlation 0.999 between runs with different schedules). Whether
siblings share it is measured, not assumed: each sibling is regressed on the target where both
logged a value, in the second half of the target's observed steps, and carried over only where
their step-to-step changes correlate. Steps where the two logged the same value are not evidence:
a branch of the target (a cooldown started from its checkpoint) repeats its history, and its
deviations after the branch point are its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from forecaster.batch import build_features
from forecaster.fit import GroupFit
from forecaster.histories import RunHistory
from forecaster.stats import EPS, TINY

# common steps (values differing) a sibling needs with the target before it counts as evidence
MIN_EVIDENCE = 20
# correlation of the step-to-step changes of the two runs' deviations above which they are shared
MIN_CORRELATION = 0.5


@dataclass
class SharedNoise:
    """What a target's siblings say about its horizon: a log-space shift per horizon step."""

    shift: np.ndarray  # (H,) log-space deviation its siblings share at each horizon step (0: none)
    covered: np.ndarray  # (H,) bool, a sibling logged that step
    left: float  # typical deviation from the law the shift leaves on the target's observed steps
    siblings: int  # siblings carried over


def _typical(e: np.ndarray) -> float:
    """Robust scale of deviations around zero (an offset counts: it is an error too)."""
    return float(1.4826 * np.median(np.abs(e))) if len(e) else 0.0


def shared_noise(fit: GroupFit, histories: list[RunHistory], rows: list[int], targets: list[int],
                 slots: list[tuple[int, int]], warmup: str, device: torch.device) -> dict[int, SharedNoise]:
    """Per target (index into `histories`, in the fit's group and member slot given by `slots`;
    `rows` maps member slots to histories), the deviations its siblings in the group share with
    it, at its horizon steps; targets without such siblings are left out."""
    members = fit.members.cpu().numpy()
    groups: dict[int, list[tuple[int, int]]] = {}  # group -> (target, its member slot)
    for t, (g, m) in zip(targets, slots):
        h = histories[t]
        if h.horizon is not None and len(h.horizon) and (members[g] >= 0).sum() > 1:
            groups.setdefault(g, []).append((t, m))
    if not groups:
        return {}
    # every member of those groups, at its observed steps that some target there needs: the
    # targets' evidence (second half of their observed steps) and their horizons
    needed: dict[int, np.ndarray] = {}
    involved: list[tuple[int, int, int, np.ndarray, np.ndarray]] = []  # (group, slot, row, steps, values)
    for g, ts in groups.items():
        needed[g] = np.unique(np.concatenate(
            [histories[t].steps[len(histories[t].steps) // 2:] for t, _ in ts] + [histories[t].horizon for t, _ in ts]))
        for m, slot in enumerate(members[g]):
            if slot >= 0:
                h = histories[rows[slot]]
                keep = np.isin(h.steps, needed[g])
                involved.append((g, m, rows[slot], h.steps[keep], h.values[keep]))
    feats = build_features([histories[r] for _, _, r, _, _ in involved], [s for *_, s, _ in involved],
                           warmup=warmup, blocks=fit.law.uses_blocks, device=device)
    gi = torch.as_tensor([g for g, *_ in involved], device=device)
    mi = torch.as_tensor([m for _, m, *_ in involved], device=device)
    pred = fit.law.predict(fit.law.natural(fit.run_params()[gi, mi]), feats).cpu().numpy()

    by_group: dict[int, list[int]] = {}
    for j, (g, *_) in enumerate(involved):
        by_group.setdefault(g, []).append(j)

    out: dict[int, SharedNoise] = {}
    for g, ts in groups.items():
        grid = needed[g]
        M = members.shape[1]
        dev = np.full((M, len(grid)), np.nan)  # log deviation of each member from its own fit
        val = np.full((M, len(grid)), np.nan)
        for j in by_group[g]:
            _, m, _, steps, values = involved[j]
            if len(steps):
                at = np.searchsorted(grid, steps)
                dev[m, at] = np.log(values) - np.log(np.clip(pred[j, : len(steps)], EPS, None))
                val[m, at] = values
        for t, mt in ts:
            h = histories[t]
            evidence = np.isin(grid, h.steps[len(h.steps) // 2:])
            ok = evidence[None] & np.isfinite(dev) & np.isfinite(dev[mt])[None] & (val != val[mt][None])
            ok[mt] = False
            x, y = np.where(ok, dev, 0.0), np.where(ok, dev[mt][None], 0.0)
            b = np.clip((x * y).sum(1) / np.maximum((x * x).sum(1), TINY), 0.0, 1.0)
            pair = ok[:, 1:] & ok[:, :-1]
            dx = np.where(pair, np.diff(np.nan_to_num(dev), axis=1), 0.0)
            dy = np.where(pair, np.diff(np.nan_to_num(dev[mt]))[None], 0.0)
            corr = (dx * dy).sum(1) / np.sqrt(np.maximum((dx * dx).sum(1) * (dy * dy).sum(1), TINY))
            # and well clear of what independent noise gives on that many pairs (sd 1/sqrt(n)), so a
            # big group does not carry over the few siblings that correlate by chance
            n = pair.sum(1)
            use = (ok.sum(1) >= MIN_EVIDENCE) & (corr >= np.maximum(MIN_CORRELATION, 3.0 / np.sqrt(np.maximum(n, 1))))
            if not use.any():
                continue
            carried = b[use, None] * dev[use]  # (K, grid)
            have = np.isfinite(carried)
            shift = np.where(have.any(0), np.nansum(carried, 0) / np.maximum(have.sum(0), 1), 0.0)
            horizon = np.searchsorted(grid, h.horizon)
            if not have.any(0)[horizon].any():
                continue  # the siblings ended before the target's horizon: nothing to carry over
            at_ev = evidence & np.isfinite(dev[mt]) & have.any(0)
            out[t] = SharedNoise(shift=shift[horizon], covered=have.any(0)[horizon],
                                 left=_typical(dev[mt, at_ev] - shift[at_ev]), siblings=int(use.sum()))
    return out
