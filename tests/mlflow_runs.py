"""Runs logged to MLflow the way Hugging Face's Trainer logs them (for the sync tests and benchmark)."""

from __future__ import annotations

import numpy as np


# -- logging runs the way Hugging Face's Trainer does -----------------------------------------
def cosine_lr(steps: np.ndarray, peak: float, warmup: int, total: int) -> np.ndarray:
    """HF get_cosine_schedule_with_warmup."""
    s = np.asarray(steps, dtype=float)
    prog = np.clip((s - warmup) / max(1, total - warmup), 0, 1)
    return np.where(s < warmup, peak * s / max(1, warmup), peak * 0.5 * (1 + np.cos(np.pi * prog)))


def synthetic_loss(steps: np.ndarray, lr: np.ndarray, scale: float = 1.0, seed: int = 0,
                   noise: float = 0.004) -> np.ndarray:
    """A loss that falls with the LR area and drops further as the LR anneals (multi-power-like)."""
    s = np.asarray(steps)
    full = np.zeros(int(s.max()) + 1)
    full[: len(full)] = np.interp(np.arange(len(full)), s, lr)
    area = np.cumsum(full)[s]
    peak = max(lr.max(), 1e-12)
    anneal = (peak - lr) / peak
    base = 2.0 * scale + 3.0 * (1.0 + area / 0.05) ** -0.5 - 0.15 * anneal
    rng = np.random.default_rng(seed)
    return base * np.exp(noise * rng.standard_normal(len(s)))


def log_hf_run(client, experiment_id: str, name: str, *, total: int = 1000, upto: int | None = None,
               every: int = 20, peak: float = 3e-4, warmup: int = 100, log_lr: bool = True,
               params: dict | None = None, status: str = "FINISHED", scale: float = 1.0, seed: int = 0,
               loss_override: np.ndarray | None = None) -> str:
    """Create a run logged like HF Trainer (loss, learning_rate; TrainingArguments params) via the client."""
    from mlflow.entities import Metric, Param

    upto = total if upto is None else upto
    steps = np.arange(every, upto + 1, every)
    lr = cosine_lr(steps, peak, warmup, total)
    loss = synthetic_loss(steps, lr, scale, seed) if loss_override is None else loss_override
    run = client.create_run(experiment_id, run_name=name)
    rid = run.info.run_id
    base = {"learning_rate": str(peak), "lr_scheduler_type": "cosine", "warmup_steps": str(warmup),
            "max_steps": str(total), "num_train_epochs": "3.0", "per_device_train_batch_size": "8"}
    if params is not None:
        base = {k: v for k, v in {**base, **params}.items() if v is not None}
    t0 = 1_700_000_000_000
    metrics = [Metric("loss", float(v), t0 + int(s), int(s)) for s, v in zip(steps, loss)]
    if log_lr:
        metrics += [Metric("learning_rate", float(v), t0 + int(s), int(s)) for s, v in zip(steps, lr)]
    client.log_batch(rid, metrics=metrics, params=[Param(k, str(v)) for k, v in base.items()])
    if status != "RUNNING":
        client.set_terminated(rid, status)
    return rid


def add_points(client, run_id: str, start: int, stop: int, every: int = 20, total: int = 1000,
               peak: float = 3e-4, warmup: int = 100, seed: int = 1) -> None:
    """Log more points to a running run (as training goes on)."""
    from mlflow.entities import Metric

    steps = np.arange(start, stop + 1, every)
    lr = cosine_lr(steps, peak, warmup, total)
    full = np.arange(every, stop + 1, every)
    loss = synthetic_loss(full, cosine_lr(full, peak, warmup, total), seed=seed)[-len(steps):]
    t0 = 1_700_000_000_000
    client.log_batch(run_id, metrics=[Metric("loss", float(v), t0 + int(s), int(s)) for s, v in zip(steps, loss)]
                     + [Metric("learning_rate", float(v), t0 + int(s), int(s)) for s, v in zip(steps, lr)])


# -- runs gone wrong (the hostile-run test and benchmark) -------------------------------------
def _points(client, rid: str, key: str, pairs) -> None:
    from mlflow.entities import Metric

    client.log_batch(rid, metrics=[Metric(key, float(v), 1_700_000_000_000, int(s)) for s, v in pairs])


REPAIRABLE = ("nan_middle", "stray_step", "stray_lr_step", "lr_inf")


def log_hostile_run(client, exp: str, kind: str, rng: np.random.Generator, repaired: bool = False,
                    params: dict | None = None) -> str | None:
    """One run gone wrong in the way `kind` names (all RUNNING, all in the healthy runs' group);
    with `repaired`, the same run without the damage, or None where nothing is left to keep."""
    upto = int(rng.integers(8, 30)) * 20
    seed = int(rng.integers(100, 10_000))
    steps = np.arange(20, upto + 1, 20)
    loss = synthetic_loss(steps, cosine_lr(steps, 3e-4, 100, 1000), seed=seed)
    name = f"{kind}-{seed}"
    if repaired:
        return log_hf_run(client, exp, name, upto=upto, seed=seed, status="RUNNING", params=params
                          ) if kind in REPAIRABLE else None
    if kind == "summed":  # a loss summed over the batch instead of averaged
        return log_hf_run(client, exp, name, upto=upto, seed=seed, status="RUNNING", params=params,
                          loss_override=loss * float(rng.choice([1e3, 1e12])))
    if kind == "perplexity":  # exp(loss) logged under the loss's name
        return log_hf_run(client, exp, name, upto=upto, seed=seed, status="RUNNING", params=params,
                          loss_override=np.exp(loss))
    if kind == "huge_total":
        return log_hf_run(client, exp, name, upto=upto, seed=seed, status="RUNNING",
                          params={**(params or {}), "max_steps": "1e15"})
    rid = log_hf_run(client, exp, name, upto=upto, seed=seed, status="RUNNING", params=params)
    last = int(steps[-1])
    if kind == "inf_tail":
        _points(client, rid, "loss", [(last + 20, float("inf")), (last + 40, float("inf"))])
    elif kind == "mixed_inf":
        _points(client, rid, "loss", [(last + 20, float("inf")), (last + 40, float("-inf"))])
    elif kind == "nan_middle":
        _points(client, rid, "loss", [(int(steps[len(steps) // 2]) + 1, float("nan"))])
    elif kind == "stray_step":
        _points(client, rid, "loss", [(int(rng.choice([10**8, 10**12])), 2.5)])
    elif kind == "stray_lr_step":
        _points(client, rid, "learning_rate", [(10**12, 1e-4)])
    elif kind == "lr_inf":
        _points(client, rid, "learning_rate", [(last + 20, float("inf"))])
    elif kind == "zero_loss":
        _points(client, rid, "loss", [(last + 20, 0.0)])
    return rid


HOSTILE_KINDS = ("summed", "perplexity", "huge_total", "inf_tail", "mixed_inf", "nan_middle", "stray_step",
                 "stray_lr_step", "lr_inf", "zero_loss")


def recording_mlflow() -> type:
    """The real MLflow adapter class, recording what each `read_since` asked for in `.asked`."""
    from forecaster import trackers

    class Recording(trackers.load("mlflow")):  # type: ignore[misc]
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.asked: list[dict] = []

        def read_since(self, runs, since, max_points=None):
            self.asked.append({r.id: dict(since[r.id]) for r in runs})
            return super().read_since(runs, since, max_points)

    return Recording
