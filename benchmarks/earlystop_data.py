"""Convert Baker et al. (2018) learning-curve CSVs into `forecast backtest --early-stop` input.

Accuracies become errors (1 - accuracy: lower-is-better and positive, as the replay needs); LSTM
perplexities stay as they are. One group per file (one search), runs in file order, step = epoch.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

BAKER = Path(__file__).resolve().parents[2] / "shared" / "data" / "learning_curves" / "baker2018_accelerating_nas"
SETS = {
    "metaqnn_cifar10": "MetaQNN CIFAR-10",
    "metaqnn_svhn": "MetaQNN SVHN",
    "deep_resnets_cifar10": "ResNet CIFAR-10",
    "deep_resnets_tinyimagenet": "ResNet TinyImageNet",
    "lstm_ptb": "LSTM PTB",
}


def baker_curves(name: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(epochs, values[runs, epochs], metric) of one Baker file, error-transformed where needed."""
    with open(BAKER / f"{name}.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    cols = [c for c in rows[0] if c.startswith("acc_") or c.startswith("ep_")]
    epochs = np.array([int(c.split("_")[1]) for c in cols])
    vals = np.array([[float(r[c]) for c in cols] for r in rows[:limit]])
    if cols[0].startswith("acc_"):
        return epochs, 1.0 - vals, "error"
    return epochs, vals, "perplexity"


def write_backtest_csv(name: str, out: Path, limit: int | None = None) -> str:
    """Write `run,group,step,<metric>` rows for one Baker file; returns the metric column name."""
    epochs, vals, metric = baker_curves(name, limit)
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "group", "step", metric])
        for i, row in enumerate(vals):
            for e, v in zip(epochs, row):
                w.writerow([f"{name}-{i:04d}", name, int(e), repr(float(v))])
    return metric
