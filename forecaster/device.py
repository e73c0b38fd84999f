"""Which torch device and dtype the fitting runs on: CUDA when present, unless forced."""

from __future__ import annotations

import os

import torch

DTYPE = torch.float64
ENV_VAR = "FORECASTER_DEVICE"
CHOICES = ("auto", "cpu", "cuda")  # what the CLIs offer; pick_device also takes "cuda:N"
THREADS_VAR = "FORECASTER_THREADS"


def pick_device(choice: str | None = None) -> torch.device:
    """Resolve 'auto' | 'cpu' | 'cuda' (argument, else $FORECASTER_DEVICE, else auto)."""
    choice = (choice or os.environ.get(ENV_VAR) or "auto").lower()
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cpu":
        # the batched ops are many and small: extra intra-op threads cost more than they give,
        # badly so on a loaded machine; $FORECASTER_THREADS raises it for big batches
        torch.set_num_threads(int(os.environ.get(THREADS_VAR, "1")))
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {choice!r} requested but CUDA is not available")
    if choice != "cpu" and not choice.startswith("cuda"):
        raise ValueError(f"unknown device {choice!r}: use {', '.join(CHOICES)}")
    return torch.device(choice)
