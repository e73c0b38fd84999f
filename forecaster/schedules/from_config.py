"""A schedule read from a run's logged config: a spec under the schedule tag, HF TrainingArguments, or nanoGPT.

Trackers store parameters as strings, W&B sometimes as ``{"value": x, "desc": ...}``; both read as the
value. The step keys read here are each framework's own (HF ``max_steps``, nanoGPT ``max_iters``), not
`forecaster.runconfig.STEPS_KEYS`: a key of another framework would mean another schedule.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Mapping
from typing import Any

from forecaster import tags
from forecaster.errors import InputError
from forecaster.schedules.families import (
    WSD, Constant, Cosine, CosineRestarts, InvSqrt, Linear, Poly, Schedule,
)
from forecaster.schedules.spec import parse
from forecaster.schedules.values import WARMUP_SHAPES, format_number, shape_name

# the spec tag as a flat key and as W&B's slash spelling; nested, it is config[_NEST][_LEAF]
_SPEC_KEYS = (tags.SCHEDULE, tags.SCHEDULE.replace(".", "/"))
_NEST, _LEAF = tags.SCHEDULE.split(".")


def _unwrap(v: Any) -> Any:
    """W&B config entries sometimes arrive as {'value': x, 'desc': ...}."""
    if isinstance(v, Mapping) and "value" in v and set(v) <= {"value", "desc"}:
        return v["value"]
    return v


def _is_none(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip().lower() in ("", "none", "null", "nan"))


def _get(cfg: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if k in cfg:
            v = _unwrap(cfg[k])
            if not _is_none(v):
                return v
    return None


def _finite(v: Any, what: str) -> float:
    """`v` as a finite float; InputError naming the config entry `what` otherwise."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise InputError(f"config {what}={v!r} is not a number") from None
    if not math.isfinite(x):
        raise InputError(f"config {what}={v!r} is not a finite number")
    return x


def _num(cfg: Mapping[str, Any], key: str, kind: str = "float") -> Any:
    v = _get(cfg, key)
    if v is None:
        return None
    if isinstance(v, str):
        v = v.strip()
    x = _finite(v, key)
    if kind == "int":
        if not x.is_integer():
            raise InputError(f"config {key}={v!r} is not a whole number of steps")
        return int(x)
    return x


def _flag(cfg: Mapping[str, Any], key: str) -> bool | None:
    v = _get(cfg, key)
    if v is None:
        return None
    if isinstance(v, str):
        t = v.strip().lower()
        if t in ("true", "1", "yes", "on"):
            return True
        if t in ("false", "0", "no", "off"):
            return False
        raise InputError(f"config {key}={v!r} is not true/false")
    return bool(v)


def _kwargs(v: Any) -> dict[str, Any]:
    """HF lr_scheduler_kwargs: a dict, or its JSON / Python-literal text as trackers store it."""
    v = _unwrap(v)
    if _is_none(v):
        return {}
    if isinstance(v, Mapping):
        return dict(v)
    if isinstance(v, str):
        for loader in (json.loads, ast.literal_eval):
            try:
                d = loader(v)
            except (ValueError, SyntaxError, TypeError):
                continue
            if isinstance(d, Mapping):
                return dict(d)
            if d is None:
                return {}
    raise InputError(f"config lr_scheduler_kwargs={v!r} is not a dict")


def _peak(cfg: Mapping[str, Any], key: str = "learning_rate") -> float | None:
    lr = _num(cfg, key)
    if lr is not None and not lr > 0:
        raise InputError(f"config {key}={format_number(lr)}: the learning rate must be positive")
    return lr


def _hf_total(cfg: Mapping[str, Any]) -> int | None:
    """HF max_steps; -1/absent means epochs decide it (known only with steps-per-epoch info)."""
    total = _num(cfg, "max_steps", "int")
    if total is not None and total > 0:
        return total
    epochs = _num(cfg, "num_train_epochs")
    per_epoch = None
    for k in ("num_update_steps_per_epoch", "steps_per_epoch"):
        per_epoch = _num(cfg, k)
        if per_epoch is not None:
            break
    if epochs is not None and per_epoch is not None and epochs > 0 and per_epoch > 0:
        return int(math.ceil(epochs * per_epoch))  # as Trainer sets max_steps from epochs
    return None


def _from_hf(cfg: Mapping[str, Any]) -> Schedule | None:
    kind = str(_get(cfg, "lr_scheduler_type") or "").strip().lower()
    if kind.startswith("schedulertype."):  # str(enum) as some loggers store it
        kind = kind.split(".", 1)[1]
    peak = _peak(cfg)
    if peak is None:
        peak = 5e-5  # TrainingArguments default; an HF config without it never logged the others either
    total = _hf_total(cfg)
    kw = _kwargs(cfg.get("lr_scheduler_kwargs"))
    ws = _num(cfg, "warmup_steps")
    ratio = _num(cfg, "warmup_ratio")
    if ws is not None and ws < 0 or ratio is not None and ratio < 0:
        raise InputError("config warmup_steps / warmup_ratio must be >= 0")
    if ws is not None and 0 < ws < 1:  # newer HF: a float warmup_steps below 1 is a ratio
        ratio, ws = ws, 0
    if ws:
        if not float(ws).is_integer():
            raise InputError(f"config warmup_steps={ws!r} is not a whole number of steps")
        warmup: int | None = int(ws)
    elif ratio:
        warmup = int(math.ceil(ratio * total)) if total is not None else None
    else:
        warmup = 0

    def kwf(key: str, default: Any = None) -> Any:
        v = kw.get(key, default)
        if _is_none(v):
            return default
        return _finite(v, f"lr_scheduler_kwargs {key}")

    if kind == "constant":  # HF's plain constant ignores warmup entirely
        return Constant(peak=peak, total=total)
    if warmup is None:  # warmup_ratio without a known total
        return None
    if kind == "constant_with_warmup":
        return Constant(peak=peak, warmup=warmup, total=total)
    if kind == "inverse_sqrt":
        ts = kwf("timescale")
        return InvSqrt(peak=peak, warmup=warmup, total=total, timescale=None if ts is None else int(ts))
    if kind == "warmup_stable_decay":
        return _from_hf_wsd(peak, warmup, total, kw, kwf)
    if kind in ("linear", "cosine", "cosine_with_restarts", "polynomial", "cosine_with_min_lr",
                "cosine_warmup_with_min_lr"):
        if total is None:
            return None
        if kind == "linear":
            return Linear(peak=peak, warmup=warmup, total=total)
        if kind == "cosine":
            return Cosine(peak=peak, warmup=warmup, total=total, cycles=kwf("num_cycles", 0.5))
        if kind == "cosine_with_restarts":
            return CosineRestarts(peak=peak, warmup=warmup, total=total, cycles=kwf("num_cycles", 1.0))
        if kind == "polynomial":
            lr_end = kwf("lr_end", 1e-7)
            if not lr_end < peak:
                raise InputError(f"config lr_end ({format_number(lr_end)}) must be below learning_rate "
                                 f"({format_number(peak)})")
            return Poly(peak=peak, warmup=warmup, total=total, power=kwf("power", 1.0), final=lr_end)
        # cosine_with_min_lr; cosine_warmup_with_min_lr is read as it (its +1 step offsets are ignored)
        min_lr, rate = kwf("min_lr"), kwf("min_lr_rate")
        if min_lr is not None and rate is not None:
            raise InputError("config lr_scheduler_kwargs: give min_lr or min_lr_rate, not both")
        if min_lr is None and rate is None:
            raise InputError(f"config lr_scheduler_type={kind} needs min_lr or min_lr_rate in lr_scheduler_kwargs")
        final = min_lr if min_lr is not None else rate * peak
        return Cosine(peak=peak, warmup=warmup, total=total, final=final, cycles=kwf("num_cycles", 0.5))
    return None  # reduce_lr_on_plateau (driven by the metric) or a type this module does not know


def _from_hf_wsd(peak: float, warmup: int, total: int | None, kw: Mapping[str, Any], kwf: Any) -> Schedule | None:
    n_decay = kwf("num_decay_steps")
    if n_decay is None:
        raise InputError("config lr_scheduler_type=warmup_stable_decay needs num_decay_steps in lr_scheduler_kwargs")
    n_decay = int(n_decay)
    n_stable = kwf("num_stable_steps")
    if n_stable is None:
        if total is None:
            return None
        n_stable = total - warmup - n_decay
    n_stable = int(n_stable)
    if n_stable < 0 or n_decay < 0:
        raise InputError(f"config warmup_stable_decay: warmup {warmup} + decay {n_decay} steps exceed max_steps {total}")
    if kwf("num_cycles", 0.5) != 0.5:
        raise InputError("config warmup_stable_decay with num_cycles != 0.5 is not supported; "
                         f"give the schedule as a spec in {tags.SCHEDULE}")
    end = warmup + n_stable + n_decay
    ratio = kwf("min_lr_ratio", 0.0)
    if not 0 <= ratio <= 1:
        raise InputError(f"config min_lr_ratio={format_number(ratio)} must be in [0, 1]")
    final = ratio * peak
    shape = shape_name(kw.get("decay_type", "cosine"), ("linear", "sqrt", "cosine"), "decay_type")
    wshape = shape_name(kw.get("warmup_type", "linear"), WARMUP_SHAPES, "warmup_type")
    return WSD(peak=peak, warmup=warmup, total=total if total is not None else end,
               until=end if total is not None and total != end else None,
               decay=n_decay / end, shape=shape, final=final, start=final, warmup_shape=wshape)


def _from_nanogpt(cfg: Mapping[str, Any]) -> Schedule | None:
    """nanoGPT train.py: linear warmup, cosine to min_lr at lr_decay_iters, then min_lr.

    nanoGPT warms up as lr*(it+1)/(warmup_iters+1); read here as HF's lr*it/warmup_iters (at most
    one warmup step apart). Missing keys: warmup 0, min_lr 0, lr_decay_iters = max_iters.
    """
    peak = _peak(cfg)
    if peak is None:
        return None
    total = _num(cfg, "max_iters", "int")
    if total is not None and total <= 0:
        total = None
    if _flag(cfg, "decay_lr") is False:  # nanoGPT then uses the bare learning_rate, no warmup
        return Constant(peak=peak, total=total)
    decay_end = _num(cfg, "lr_decay_iters", "int")
    if decay_end is None:
        decay_end = total
    if decay_end is None:
        return None
    warmup = _num(cfg, "warmup_iters", "int") or 0
    final = _num(cfg, "min_lr") or 0.0
    if final < 0:
        raise InputError(f"config min_lr={format_number(final)} must be >= 0")
    if final > peak:
        raise InputError(f"config min_lr ({format_number(final)}) is above learning_rate ({format_number(peak)})")
    if total is None:
        total = decay_end
    return Cosine(peak=peak, warmup=warmup, total=total, final=final,
                  until=decay_end if decay_end != total else None)


def from_config(config: Mapping[str, Any] | str | None) -> Schedule | None:
    """Schedule from a run's config: a spec under forecast.schedule/schedule, HF TrainingArguments, or nanoGPT.

    Values may be strings as trackers store parameters. Returns None when the config says nothing
    usable (no LR, an unknown or metric-driven scheduler, or an unknown total for a decaying one);
    raises InputError on contradictory or bad values.
    """
    if config is None:
        return None
    if isinstance(config, str):
        return parse(config)
    nested = _unwrap(config.get(_NEST))
    spec = _get(config, *_SPEC_KEYS)
    if spec is None and isinstance(nested, Mapping):
        spec = _get(nested, _LEAF)
    if spec is None:
        s = _get(config, "schedule")
        if isinstance(s, str) and "(" in s:
            spec = s
    if spec is not None:
        return parse(str(spec))
    if _get(config, "lr_scheduler_type") is not None:
        return _from_hf(config)
    if any(_get(config, k) is not None for k in ("warmup_iters", "lr_decay_iters", "decay_lr")):
        return _from_nanogpt(config)
    return None
