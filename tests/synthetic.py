"""Synthetic loss curves drawn from the laws themselves, for tests that need known answers."""

from __future__ import annotations

import numpy as np
import torch

from forecaster.batch import build_features
from forecaster.histories import RunHistory
from forecaster.laws import get


def cosine_lr(steps: np.ndarray, peak: float, total: int, warmup: int = 200, final: float = 0.1) -> np.ndarray:
    s = np.asarray(steps, dtype=float)
    prog = np.clip((s - warmup) / max(total - warmup, 1), 0, 1)
    lr = peak * (final + (1 - final) * 0.5 * (1 + np.cos(np.pi * prog)))
    return np.where(s < warmup, peak * s / warmup, lr)


def wsd_lr(steps: np.ndarray, peak: float, total: int, warmup: int = 200, decay: float = 0.2, final: float = 0.0):
    s = np.asarray(steps, dtype=float)
    start = total * (1 - decay)
    lr = np.where(s < start, peak, peak + (final - peak) * np.clip((s - start) / (total - start), 0, 1))
    return np.where(s < warmup, peak * s / warmup, lr)


def constant_lr(steps: np.ndarray, peak: float, warmup: int = 200) -> np.ndarray:
    s = np.asarray(steps, dtype=float)
    return np.where(s < warmup, peak * s / warmup, peak)


def curve(law: str, theta: dict[str, float], steps: np.ndarray, lr: np.ndarray | None,
          noise: float = 0.0, seed: int = 0, size: float | None = None) -> np.ndarray:
    """The law's values at `steps` for a run whose LR is known at every step."""
    L = get(law)
    full = np.arange(int(steps.max()) + 1)
    h = RunHistory("x", steps, np.ones(len(steps)), lr_steps=None if lr is None else full,
                   lr_values=None if lr is None else lr, size=size)
    f = build_features([h], [steps])
    th = torch.tensor([[theta[p] for p in L.params]], dtype=torch.float64)
    y = L.predict(th, f)[0].numpy()
    rng = np.random.default_rng(seed)
    return y * np.exp(noise * rng.standard_normal(len(y)))
