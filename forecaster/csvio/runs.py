"""Validated rows of one or more tables assembled into runs: one `RunHistory` per run, in order of appearance.

A run's metric values, LR values and rows are each deduplicated by step (the last row wins) and sorted;
its horizon is its rows after its last observed value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from forecaster.csvio.columns import Rows
from forecaster.csvio.report import ReadReport
from forecaster.errors import InputError
from forecaster.histories import RunHistory


def _concat_coded(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One (labels, codes) for several files' columns, equal labels merged."""
    if len(pairs) == 1:
        labels, codes = pairs[0]
    else:
        offsets = np.cumsum([0] + [len(lab) for lab, _ in pairs[:-1]])
        labels = np.concatenate([lab for lab, _ in pairs])
        codes = np.concatenate([c + o for (_, c), o in zip(pairs, offsets)])
    uniq, inverse = np.unique(labels, return_inverse=True)
    return uniq, inverse.reshape(-1)[codes] if len(codes) else codes


def _last_per_key(code: np.ndarray, step: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Indices (into the inputs) of the last row, in `order`, of each (code, step) pair; sorted by pair."""
    if len(code) and code.max() < 2**62 // (int(step.max()) + 2):
        key = code * (int(step.max()) + 1) + step
        if np.all(np.diff(order) > 0) and np.all(key[1:] > key[:-1]):
            # rows already grouped by run, steps rising, no duplicates: the usual file needs no sort
            return np.arange(len(code))
    # lexsort: last key is primary; stable in file order so the last duplicate ends last
    idx = np.lexsort((order, step, code))
    c, s = code[idx], step[idx]
    last = np.ones(len(idx), dtype=bool)
    last[:-1] = (c[1:] != c[:-1]) | (s[1:] != s[:-1])
    return idx[last]


def _factorize(labels: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels present in order of first appearance, index of each one's first row, code of every
    row in that order) from codes into `labels`."""
    first = np.full(len(labels), len(codes), dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)  # the last write, the first row, wins
    present = np.flatnonzero(first < len(codes))
    order = present[np.argsort(first[present], kind="stable")]
    rank = np.full(len(labels), -1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    return labels[order], first[order], rank[codes]


def histories_from_rows(parts: list[Rows], metric: str, report: ReadReport, source: Path | str) -> list[RunHistory]:
    """The runs in `parts` (one `Rows` per table read) as histories; `source` names the input in errors.

    A run belongs to one group; repairs (duplicate steps, unsorted rows) are counted in `report`.
    """
    src = np.concatenate([np.full(len(p.step), i) for i, p in enumerate(parts)])
    runs = _concat_coded([p.runs for p in parts])
    groups = _concat_coded([p.groups for p in parts])

    def joined(name: str) -> np.ndarray:  # one file's column as it is: a copy of a big file costs
        return getattr(parts[0], name) if len(parts) == 1 else np.concatenate([getattr(p, name) for p in parts])

    step, value, has_value, lr, has_lr, lines, size, has_size = (joined(k) for k in (
        "step", "value", "has_value", "lr", "has_lr", "lines", "size", "has_size"))
    if len(step) == 0:
        raise InputError(f"{source}: empty input (no usable rows)")
    order = np.arange(len(step))

    names, first, code = _factorize(*runs)
    # one group per run
    gcode = groups[1]
    clash = gcode != gcode[first][code]
    if clash.any():
        dup = code[np.argmax(clash)]
        raise InputError(f"run {str(names[dup])!r} appears in more than one group "
                         f"({', '.join(sorted(set(groups[0][gcode[code == dup]])))}); a run belongs to one group")

    # unsorted: a step smaller than the previous row's step of the same run, in file order
    by_run = order if np.all(code[1:] >= code[:-1]) else np.lexsort((order, code))
    c, s = code[by_run], step[by_run]
    back = (c[1:] == c[:-1]) & (s[1:] < s[:-1])
    for r in np.unique(c[1:][back]):
        report.unsorted.append(str(names[r]))

    def column(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sel = np.flatnonzero(mask)
        keep = sel[_last_per_key(code[sel], step[sel], order[sel])]
        dups = np.bincount(code[sel], minlength=len(names)) - np.bincount(code[keep], minlength=len(names))
        for r in np.flatnonzero(dups):
            report.duplicates[str(names[r])] = report.duplicates.get(str(names[r]), 0) + int(dups[r])
        return keep, code[keep]

    obs, obs_code = column(has_value)
    lrk, lr_code = column(has_lr)
    allk = _last_per_key(code, step, order)
    all_code = code[allk]

    def split(idx: np.ndarray, codes: np.ndarray) -> list[np.ndarray]:
        bounds = np.searchsorted(codes, np.arange(len(names) + 1))
        return [idx[bounds[i]: bounds[i + 1]] for i in range(len(names))]

    obs_by, lr_by, all_by = split(obs, obs_code), split(lrk, lr_code), split(allk, all_code)
    any_lr = bool(has_lr.any())
    run_size = np.full(len(names), np.nan)
    run_size[code[has_size][::-1]] = size[has_size][::-1]  # the first size a run gives
    out = []
    for r in np.argsort(first, kind="stable"):
        o = obs_by[r]
        s_obs = step[o]
        last = int(s_obs[-1]) if len(o) else -1
        rows = step[all_by[r]]
        horizon = rows[rows > last]
        lr_idx = lr_by[r]
        out.append(RunHistory(
            run=str(names[r]), steps=s_obs, values=value[o], group=str(groups[0][gcode[first[r]]]),
            lr_steps=step[lr_idx] if any_lr else None, lr_values=lr[lr_idx] if any_lr else None,
            horizon=horizon, metric=metric, size=None if np.isnan(run_size[r]) else float(run_size[r]),
            meta={"source": str(parts[src[first[r]]].source), "line": int(lines[first[r]]),
                  "row_steps": rows},
        ))
    return out
