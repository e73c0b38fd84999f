"""Per-step learning-rate schedules: one-line specs, builders from tracker configs, logged points.

The LR-aware laws need the LR at *every* step, past and planned, while trackers log it sparsely or
not at all. A `Schedule` answers ``lr(steps)`` vectorised in float64 and prints itself as a one-line
spec that `parse` reads back to an equal object, e.g.::

    wsd(peak=3e-4, warmup=2160, total=24000, decay=0.2, shape=linear, final=3e-5)

Conventions (all families):

- ``step`` is the number of completed optimizer steps (0-based), as trackers log it and as the
  Hugging Face ``get_scheduler`` lambdas read it: ``lr(step) = peak * lambda(step)``.
- Warmup rises from ``start`` (default 0) to ``peak`` over ``warmup`` steps: ``lr = start +
  (peak - start) * w(step / warmup)`` with ``w`` linear (HF), cosine or 1-sqrt; step 0 gets ``start``.
- After warmup, progress-driven families read ``p = (step - warmup) / max(1, end - warmup)`` with
  ``end = until`` if given, else ``total`` (exactly the HF lambdas).
- ``total`` is the run's planned last step (``None`` when open-ended). ``until`` is only set when
  the LR shape finishes at another step than the run (nanoGPT ``lr_decay_iters != max_iters``, HF
  WSD phases shorter than ``max_steps``).
- Past the shape's end (``until`` or ``total``) the LR holds its value there (the final LR). HF's
  cosine would swing back up past ``num_training_steps``; no real run trains there, so we hold.
- Negative steps read as step 0.
- Step and multi-step milestones are absolute steps (the steps the tracker shows), not counted
  from the end of warmup.
"""

from __future__ import annotations

import ast
import json
import math
import re
from decimal import Decimal
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from forecaster.errors import InputError

__all__ = [
    "Schedule", "Constant", "Linear", "Cosine", "CosineRestarts", "Poly", "WSD", "Step", "MultiStep",
    "InvSqrt", "Power", "Interpolated", "FAMILIES", "parse", "from_config", "from_points",
    "format_number", "spec_number",
]

DECAY_SHAPES = ("linear", "sqrt", "cosine", "exp")
WARMUP_SHAPES = ("linear", "sqrt", "cosine")
_SHAPE_ALIASES = {"1-sqrt": "sqrt", "one-sqrt": "sqrt", "1_sqrt": "sqrt", "cos": "cosine",
                  "exponential": "exp", "lin": "linear"}


def format_number(x: float | int) -> str:
    """Shortest text that reads back to exactly `x` (repr or compact scientific, whichever is shorter)."""
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(int(x))
    x = float(x)
    r = repr(x)
    if x == 0 or not math.isfinite(x):
        return r
    # repr holds the shortest exact digits; Decimal re-spells them in scientific form unchanged
    mant, _, exp = format(Decimal(r), "e").partition("e")
    sci = f"{mant}e{int(exp)}"
    return sci if len(sci) < len(r) else r


SPEC_DIGITS = 6  # significant digits of the numbers a spec writes


def spec_number(x: float | int) -> str:
    """A number as a spec writes it: at most `SPEC_DIGITS` significant digits, so a fraction
    worked out from steps (decay 1/6) reads 0.166667, not 0.16666666666666666."""
    exact = format_number(x)
    if isinstance(x, (int, np.integer)) or not math.isfinite(float(x)):
        return exact
    short = format_number(float(format(float(x), f".{SPEC_DIGITS}g")))
    return short if len(short) < len(exact) else exact


def _decay_number(decay: float, end: int | None) -> str:
    """`decay` in as few digits as keep its cooldown window the same whole number of steps."""
    for digits in range(SPEC_DIGITS, 18):
        text = format_number(float(format(decay, f".{digits}g")))
        if end is None or _decay_window(float(text), end) == _decay_window(decay, end):
            return text if len(text) < len(format_number(decay)) else format_number(decay)
    return format_number(decay)  # pragma: no cover - 17 digits are exact


def _shape_name(v: Any, allowed: tuple[str, ...], what: str) -> str:
    s = str(v).strip().lower()
    s = _SHAPE_ALIASES.get(s, s)
    if s not in allowed:
        raise InputError(f"unknown {what} {v!r}; expected one of {', '.join(allowed)} (1-sqrt = sqrt)")
    return s


def _warmup_curve(x: np.ndarray, shape: str) -> np.ndarray:
    """Warmup fraction of the way from start to peak at warmup progress x in [0, 1]."""
    if shape == "cosine":
        return 0.5 * (1.0 - np.cos(np.pi * x))
    if shape == "sqrt":  # HF '1-sqrt' warmup
        return 1.0 - np.sqrt(np.clip(1.0 - x, 0.0, 1.0))
    return x


def _decay_curve(v0: np.ndarray | float, v1: float, q: np.ndarray, shape: str) -> np.ndarray:
    """LR going from v0 (q = 0) to v1 (q = 1) along a decay shape."""
    if shape == "exp":  # Luo et al.: v0^(1-q) * v1^q, geometric interpolation
        return np.exp((1.0 - q) * np.log(v0) + q * math.log(v1))
    if shape == "sqrt":
        f = 1.0 - np.sqrt(q)
    elif shape == "cosine":
        f = 0.5 * (1.0 + np.cos(np.pi * q))
    else:
        f = 1.0 - q
    return v1 + (v0 - v1) * f


# --------------------------------------------------------------------------------------------------
# Schedules


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """A planned per-step LR: warmup in front of a family's shape; `lr` vectorised, `spec` round-trips."""

    name: ClassVar[str] = ""
    needs_total: ClassVar[bool] = False
    # family fields in spec order: (field, kind, print_always); kinds drive formatting and parsing
    _family: ClassVar[tuple[tuple[str, str, bool], ...]] = ()

    peak: float
    warmup: int = 0
    total: int | None = None
    until: int | None = None
    start: float = 0.0
    warmup_shape: str = "linear"

    def __post_init__(self) -> None:
        for f in fields(self):
            kind = _KIND_OF.get(f.name)
            if kind is not None and getattr(self, f.name) is not None:
                object.__setattr__(self, f.name, _coerce(getattr(self, f.name), kind, f.name, self.name))
        object.__setattr__(self, "warmup_shape", _shape_name(self.warmup_shape, WARMUP_SHAPES, "warmup shape"))
        self._validate()

    # ---- validation -------------------------------------------------------------------------
    def _validate(self) -> None:
        n = self.name
        if not self.peak > 0:
            raise InputError(f"{n}: peak LR must be positive, got {format_number(self.peak)}")
        if self.warmup < 0:
            raise InputError(f"{n}: warmup must be >= 0 steps, got {self.warmup}")
        if not 0 <= self.start <= self.peak:
            raise InputError(f"{n}: warmup start LR must be in [0, peak], got {format_number(self.start)}")
        for key in ("total", "until"):
            v = getattr(self, key)
            if v is not None and v < 1:
                raise InputError(f"{n}: {key} must be a positive step count, got {v}")
        if self.needs_total and self.total is None:
            raise InputError(f"{n}: needs total=<planned last step>")
        end = self.end
        if self.needs_total and end is not None and end <= self.warmup:
            raise InputError(f"{n}: the decay end ({end}) must come after warmup ({self.warmup})")
        final = getattr(self, "final", None)
        if final is not None and not 0 <= final <= self.peak:
            raise InputError(f"{n}: final LR must be in [0, peak={format_number(self.peak)}], "
                             f"got {format_number(final)}")

    # ---- evaluation -------------------------------------------------------------------------
    @property
    def end(self) -> int | None:
        """Step where the LR shape finishes and the LR starts holding (until, else total)."""
        return self.until if self.until is not None else self.total

    def _progress(self, s: np.ndarray) -> np.ndarray:
        """HF progress (step - warmup) / max(1, end - warmup), clipped to [0, 1]."""
        return np.clip((s - self.warmup) / max(1, self.end - self.warmup), 0.0, 1.0)

    def _main(self, s: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def lr(self, steps: np.ndarray | Sequence[int] | int) -> np.ndarray:
        """LR used at each step (float64, same shape as `steps`)."""
        s = np.maximum(np.asarray(steps, dtype=np.float64), 0.0)
        if self.end is not None:
            s = np.minimum(s, float(self.end))
        out = np.broadcast_to(np.asarray(self._main(s), dtype=np.float64), s.shape)
        if self.warmup > 0:
            w = self.start + (self.peak - self.start) * _warmup_curve(s / self.warmup, self.warmup_shape)
            out = np.where(s < self.warmup, w, out)
        return np.array(out, dtype=np.float64)

    # ---- text -------------------------------------------------------------------------------
    def spec(self) -> str:
        """One-line text that `parse` reads back to this schedule: steps and names exactly, LRs and
        other numbers to `SPEC_DIGITS` significant digits, a decay fraction to the same window."""
        parts = [f"peak={spec_number(self.peak)}", f"warmup={self.warmup}"]
        if self.total is not None:
            parts.append(f"total={self.total}")
        for key, kind, always in self._family:
            v = getattr(self, key)
            if always or v != _DEFAULTS[self.name].get(key):
                text = _decay_number(v, self.end) if key == "decay" else _format_value(v, kind)
                parts.append(f"{key}={text}")
        if self.until is not None:
            parts.append(f"until={self.until}")
        if self.start != 0:
            parts.append(f"start={spec_number(self.start)}")
        if self.warmup_shape != "linear":
            parts.append(f"warmup_shape={self.warmup_shape}")
        return f"{self.name}({', '.join(parts)})"

    def __str__(self) -> str:
        return self.spec()


@dataclass(frozen=True, kw_only=True)
class Constant(Schedule):
    """Constant LR after warmup (HF constant / constant_with_warmup)."""

    name: ClassVar[str] = "constant"

    def _main(self, s: np.ndarray) -> np.ndarray:
        return np.full(s.shape, self.peak)


@dataclass(frozen=True, kw_only=True)
class Linear(Schedule):
    """Linear decay from peak to final over (warmup, end] (HF linear when final = 0)."""

    name: ClassVar[str] = "linear"
    needs_total: ClassVar[bool] = True
    _family: ClassVar = (("final", "float", True),)
    final: float = 0.0

    def _main(self, s: np.ndarray) -> np.ndarray:
        return self.final + (self.peak - self.final) * (1.0 - self._progress(s))


@dataclass(frozen=True, kw_only=True)
class Cosine(Schedule):
    """Cosine from peak to final (HF cosine / cosine_with_min_lr; nanoGPT); `cycles` 0.5 = half wave."""

    name: ClassVar[str] = "cosine"
    needs_total: ClassVar[bool] = True
    _family: ClassVar = (("final", "float", True), ("cycles", "float", False))
    final: float = 0.0
    cycles: float = 0.5

    def _main(self, s: np.ndarray) -> np.ndarray:
        f = 0.5 * (1.0 + np.cos(np.pi * self.cycles * 2.0 * self._progress(s)))
        return self.final + (self.peak - self.final) * f


@dataclass(frozen=True, kw_only=True)
class CosineRestarts(Schedule):
    """Cosine with `cycles` hard restarts to peak, reaching final at the end (HF cosine_with_restarts)."""

    name: ClassVar[str] = "cosine_restarts"
    needs_total: ClassVar[bool] = True
    _family: ClassVar = (("cycles", "float", True), ("final", "float", False))
    cycles: float = 1.0
    final: float = 0.0

    def _validate(self) -> None:
        super()._validate()
        if not self.cycles > 0:
            raise InputError(f"{self.name}: cycles must be positive, got {format_number(self.cycles)}")

    def _main(self, s: np.ndarray) -> np.ndarray:
        p = self._progress(s)
        f = np.where(p >= 1.0, 0.0, 0.5 * (1.0 + np.cos(np.pi * np.mod(self.cycles * p, 1.0))))
        return self.final + (self.peak - self.final) * f


@dataclass(frozen=True, kw_only=True)
class Poly(Schedule):
    """Polynomial decay (peak - final) * (1 - p)^power + final (HF polynomial: final = lr_end)."""

    name: ClassVar[str] = "poly"
    needs_total: ClassVar[bool] = True
    _family: ClassVar = (("power", "float", True), ("final", "float", True))
    power: float = 1.0
    final: float = 0.0

    def _validate(self) -> None:
        super()._validate()
        if not self.power > 0:
            raise InputError(f"{self.name}: power must be positive, got {format_number(self.power)}")

    def _main(self, s: np.ndarray) -> np.ndarray:
        return self.final + (self.peak - self.final) * (1.0 - self._progress(s)) ** self.power


def _decay_window(decay: float, end: int | None) -> tuple[float, int]:
    """(first step D, length N) of a cooldown spanning the last `decay` fraction of `end` steps."""
    if end is None:
        return math.inf, 0
    n = int(math.floor(decay * end + 0.5))
    return float(end - n), n


@dataclass(frozen=True, kw_only=True)
class WSD(Schedule):
    """Warmup-stable-decay: peak, then linear / 1-sqrt / cosine / exp to final over the last steps.

    `decay` is the fraction of all steps (of `until`, else `total`) spent decaying: the window is
    the last round(decay * end) steps, as HF's num_decay_steps. exp is Luo et al.'s geometric decay
    peak^((T-s)/(T-D)) * final^((s-D)/(T-D)).
    """

    name: ClassVar[str] = "wsd"
    needs_total: ClassVar[bool] = True
    _family: ClassVar = (("decay", "float", True), ("shape", "shape", True), ("final", "float", True))
    decay: float = 0.2
    shape: str = "linear"
    final: float = 0.0

    def _validate(self) -> None:
        object.__setattr__(self, "shape", _shape_name(self.shape, DECAY_SHAPES, "decay shape"))
        super()._validate()
        if not 0 <= self.decay <= 1:
            raise InputError(f"wsd: decay is the fraction of steps spent decaying, in [0, 1]; "
                             f"got {format_number(self.decay)}")
        if self.shape == "exp" and not self.final > 0:
            raise InputError("wsd: exp decay needs final > 0 (the LR is geometric between peak and final)")

    def _main(self, s: np.ndarray) -> np.ndarray:
        d, n = _decay_window(self.decay, self.end)
        q = np.clip((s - d) / max(1, n), 0.0, 1.0)
        return _decay_curve(self.peak, self.final, q, self.shape)


@dataclass(frozen=True, kw_only=True)
class Power(Schedule):
    """Power scheduler (Shen et al. 2024), per step: min(peak, a * step^b), optional WSD-style decay tail.

    Shen et al. write the power law in tokens with a batch-size factor; fold both into `a` here
    (a_step = beta * a_tokens * tokens_per_step^b).
    """

    name: ClassVar[str] = "power"
    _family: ClassVar = (("a", "float", True), ("b", "float", True), ("decay", "float", True),
                         ("shape", "shape", True), ("final", "float", True))
    a: float
    b: float
    decay: float = 0.0
    shape: str = "exp"
    final: float = 0.0

    def _validate(self) -> None:
        object.__setattr__(self, "shape", _shape_name(self.shape, DECAY_SHAPES, "decay shape"))
        super()._validate()
        if not self.a > 0 or not self.b <= 0:
            raise InputError(f"power: needs a > 0 and b <= 0, got a={format_number(self.a)}, "
                             f"b={format_number(self.b)}")
        if not 0 <= self.decay <= 1:
            raise InputError(f"power: decay is the fraction of steps spent decaying, in [0, 1]; "
                             f"got {format_number(self.decay)}")
        if self.decay > 0 and self.end is None:
            raise InputError("power: a decay phase needs total=<planned last step>")
        if self.decay > 0 and self.shape == "exp" and not self.final > 0:
            raise InputError("power: exp decay needs final > 0 (the LR is geometric to final)")

    def _law(self, s: np.ndarray | float) -> np.ndarray:
        return np.minimum(self.peak, self.a * np.power(np.maximum(s, 1.0), self.b))

    def _main(self, s: np.ndarray) -> np.ndarray:
        base = self._law(s)
        if self.decay == 0:
            return base
        d, n = _decay_window(self.decay, self.end)
        v0 = float(self._law(d))
        final = min(self.final, v0)  # the tail cannot rise
        q = np.clip((s - d) / max(1, n), 0.0, 1.0)
        return np.where(s < d, base, _decay_curve(v0, final, q, self.shape))


@dataclass(frozen=True, kw_only=True)
class Step(Schedule):
    """Multiply by `gamma` every `every` steps (absolute steps, as torch StepLR counts them)."""

    name: ClassVar[str] = "step"
    _family: ClassVar = (("gamma", "float", True), ("every", "int", True))
    gamma: float = 0.1
    every: int

    def _validate(self) -> None:
        super()._validate()
        if not self.gamma > 0 or self.every < 1:
            raise InputError(f"step: needs gamma > 0 and every >= 1, got gamma={format_number(self.gamma)}, "
                             f"every={self.every}")

    def _main(self, s: np.ndarray) -> np.ndarray:
        return self.peak * np.power(self.gamma, np.floor(s / self.every))


@dataclass(frozen=True, kw_only=True)
class MultiStep(Schedule):
    """Multiply by `gamma` at each milestone step (absolute; the LR at a milestone is already reduced)."""

    name: ClassVar[str] = "multistep"
    _family: ClassVar = (("gamma", "float", True), ("milestones", "ints", True))
    gamma: float = 0.1
    milestones: tuple[int, ...]

    def _validate(self) -> None:
        super()._validate()
        m = self.milestones
        if not self.gamma > 0:
            raise InputError(f"multistep: gamma must be positive, got {format_number(self.gamma)}")
        if not m or any(b <= a for a, b in zip(m, m[1:])) or m[0] < 0:
            raise InputError(f"multistep: milestones must be increasing non-negative steps like 8000;9000, "
                             f"got {';'.join(map(str, m)) or 'none'}")

    def _main(self, s: np.ndarray) -> np.ndarray:
        k = np.searchsorted(np.asarray(self.milestones, dtype=np.float64), s, side="right")
        return self.peak * np.power(self.gamma, k)


@dataclass(frozen=True, kw_only=True)
class InvSqrt(Schedule):
    """Inverse square root after warmup: peak / sqrt((step - warmup + timescale) / timescale) (HF)."""

    name: ClassVar[str] = "invsqrt"
    _family: ClassVar = (("timescale", "int", True),)
    timescale: int | None = None  # None -> warmup, or 10000 without warmup (HF default)

    def _validate(self) -> None:
        if self.timescale is None:
            object.__setattr__(self, "timescale", self.warmup or 10_000)
        super()._validate()
        if self.timescale < 1:
            raise InputError(f"invsqrt: timescale must be >= 1 step, got {self.timescale}")

    def _main(self, s: np.ndarray) -> np.ndarray:
        s = np.maximum(s, self.warmup)  # warmup steps are overwritten; keep the root defined there
        return self.peak / np.sqrt((s + self.timescale - self.warmup) / self.timescale)


@dataclass(frozen=True, kw_only=True)
class Interpolated(Schedule):
    """LR from logged or planned points: piecewise linear between them, then `then` or the last value.

    Before the first point the first value holds. `total` defaults to ``then.total`` (None when
    open-ended: logged points alone do not say when the run will stop).
    """

    name: ClassVar[str] = "points"
    points: tuple[tuple[int, float], ...]
    then: Schedule | None = None
    peak: float = field(default=0.0, init=False)
    warmup: int = field(default=0, init=False)
    until: int | None = field(default=None, init=False)
    start: float = field(default=0.0, init=False)
    warmup_shape: str = field(default="linear", init=False)

    def __post_init__(self) -> None:
        # validated as arrays: logged LR can hold many thousands of points per run
        try:
            arr = np.asarray(self.points, dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            raise InputError("points: expected (step, LR) pairs of numbers") from None
        if not len(arr):
            raise InputError("points: needs at least one (step, LR) point")
        xs, ys = arr[:, 0], arr[:, 1]
        if not np.all(np.isfinite(xs)) or not np.all(xs == np.round(xs)):
            raise InputError("points: steps must be whole optimizer steps")
        if np.any(np.diff(xs) <= 0):
            raise InputError("points: steps must be strictly increasing")
        bad = ~(np.isfinite(ys) & (ys >= 0))
        if bad.any():
            raise InputError(f"points: {int(bad.sum())} LR value(s) negative or not finite, "
                             f"e.g. {ys[bad][0]!r}")
        pts = tuple(zip(xs.astype(np.int64).tolist(), ys.tolist()))
        if self.then is not None and not isinstance(self.then, Schedule):
            raise InputError("points: then= must be a schedule")
        object.__setattr__(self, "points", pts)
        if self.total is None and self.then is not None:
            object.__setattr__(self, "total", self.then.total)
        if self.total is not None:
            object.__setattr__(self, "total", _coerce(self.total, "int", "total", "points"))
        top = float(ys.max())
        object.__setattr__(self, "peak", max(top, self.then.peak) if self.then is not None else top)
        object.__setattr__(self, "_xs", xs.copy())
        object.__setattr__(self, "_ys", ys.copy())

    @property
    def end(self) -> int | None:
        return None

    def lr(self, steps: np.ndarray | Sequence[int] | int) -> np.ndarray:
        """LR at each step: interpolated inside the points, `then` (or the last value) after them."""
        s = np.asarray(steps, dtype=np.float64)
        out = np.interp(s, self._xs, self._ys)  # type: ignore[attr-defined]
        if self.then is not None:
            out = np.where(s > self._xs[-1], self.then.lr(s), out)  # type: ignore[attr-defined]
        return np.array(out, dtype=np.float64)

    def spec(self) -> str:
        at = ";".join(f"{a}:{spec_number(b)}" for a, b in self.points)
        parts = [f"at={at}"]
        if self.then is not None:
            parts.append(f"then={self.then.spec()}")
        if self.total is not None and (self.then is None or self.total != self.then.total):
            parts.append(f"total={self.total}")
        return f"points({', '.join(parts)})"


FAMILIES: dict[str, type[Schedule]] = {c.name: c for c in (
    Constant, Linear, Cosine, CosineRestarts, Poly, WSD, Step, MultiStep, InvSqrt, Power, Interpolated)}

_NAME_ALIASES = {
    "constant_with_warmup": "constant", "const": "constant", "cos": "cosine",
    "cosine_with_min_lr": "cosine", "cosine_with_restarts": "cosine_restarts", "polynomial": "poly",
    "warmup_stable_decay": "wsd", "inverse_sqrt": "invsqrt", "inv_sqrt": "invsqrt", "rsqrt": "invsqrt",
    "steplr": "step", "multisteplr": "multistep", "multi_step": "multistep", "interp": "points",
}
_KEY_ALIASES = {"lr": "peak", "max_lr": "peak", "min_lr": "final", "warmup_steps": "warmup",
                "total_steps": "total", "steps": "total", "gamma_every": "every"}

_KIND_OF = {"peak": "float", "warmup": "int", "total": "int", "until": "int", "start": "float",
            "warmup_shape": "wshape"}
for _cls in FAMILIES.values():
    for _k, _kind, _ in _cls._family:
        _KIND_OF.setdefault(_k, _kind)

_DEFAULTS: dict[str, dict[str, Any]] = {
    n: {f.name: f.default for f in fields(c) if f.default is not MISSING}
    for n, c in FAMILIES.items()
}


def _coerce(v: Any, kind: str, key: str, family: str) -> Any:
    """A spec/config value as the field's type; InputError naming the field when it is not one."""
    try:
        if kind == "float":
            x = float(v)
            if not math.isfinite(x):
                raise ValueError
            return x
        if kind == "int":
            if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
                return int(v)
            if isinstance(v, str):
                t = v.strip().replace("_", "")
                if re.fullmatch(r"[+-]?\d+", t):
                    return int(t)
                v = float(t)
            x = float(v)
            if not x.is_integer():
                raise ValueError
            return int(x)
        if kind == "ints":
            items = v.split(";") if isinstance(v, str) else list(v)
            return tuple(_coerce(i, "int", key, family) for i in items if str(i).strip() != "")
        if kind == "shape":
            return _shape_name(v, DECAY_SHAPES, "decay shape")
        if kind == "wshape":
            return _shape_name(v, WARMUP_SHAPES, "warmup shape")
    except InputError:
        raise
    except (TypeError, ValueError):
        want = {"float": "a finite number", "int": "a whole number of steps",
                "ints": "steps separated by ';'"}.get(kind, kind)
        raise InputError(f"{family}: {key} must be {want}, got {v!r}") from None
    return v


def _format_value(v: Any, kind: str) -> str:
    if kind == "ints":
        return ";".join(str(int(i)) for i in v)
    if kind in ("shape", "wshape"):
        return str(v)
    if kind == "int":
        return str(int(v))
    return spec_number(v)


# --------------------------------------------------------------------------------------------------
# Parsing

_EXAMPLE = "e.g. 'cosine(peak=3e-4, warmup=100, total=10000, final=3e-5)'"


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside parentheses."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced ')'")
        if ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise ValueError("unbalanced '('")
    out.append("".join(cur))
    return out


def _parse(text: str) -> Schedule:
    m = re.fullmatch(r"\s*([A-Za-z_][\w-]*)\s*\((.*)\)\s*", text, flags=re.S)
    if not m:
        raise ValueError(f"expected name(key=value, ...), {_EXAMPLE}")
    raw_name = m.group(1).lower().replace("-", "_")
    name = _NAME_ALIASES.get(raw_name, raw_name)
    cls = FAMILIES.get(name)
    if cls is None:
        raise ValueError(f"unknown schedule {m.group(1)!r}; known: {', '.join(FAMILIES)}")
    body = m.group(2).strip()
    kwargs: dict[str, str] = {}
    for item in (_split_top(body, ",") if body else []):
        if "=" not in item:
            raise ValueError(f"{item.strip()!r} is not key=value")
        k, v = item.split("=", 1)
        k = k.strip().lower()
        k = _KEY_ALIASES.get(k, k)
        if k in kwargs:
            raise ValueError(f"{k} given twice")
        kwargs[k] = v.strip()
    if cls is Interpolated:
        return _parse_points(kwargs)
    allowed = {"peak", "warmup", "total", "until", "start", "warmup_shape"} | {k for k, _, _ in cls._family}
    if issubclass(cls, (WSD, Power)):
        allowed.add("decay_steps")
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r} for {name}; expected {', '.join(sorted(allowed))}")
    if "peak" not in kwargs:
        raise ValueError(f"{name} needs peak=<LR>")
    if "decay_steps" in kwargs:  # convenience: absolute cooldown length instead of a fraction
        if "decay" in kwargs:
            raise ValueError("give decay (fraction) or decay_steps, not both")
        end = kwargs.get("until") or kwargs.get("total")
        if end is None:
            raise ValueError("decay_steps needs total")
        kwargs["decay"] = repr(_coerce(kwargs.pop("decay_steps"), "int", "decay_steps", name)
                               / _coerce(end, "int", "total", name))
    values: dict[str, Any] = {}
    for k, v in kwargs.items():
        kind = _KIND_OF.get(k, "float")
        if v.lower() == "none" and k in ("total", "until", "timescale"):
            continue
        values[k] = _coerce(v, kind, k, name)
    if cls is Step and "every" not in values:
        raise ValueError("step needs every=<steps between drops>")
    if cls is MultiStep and "milestones" not in values:
        raise ValueError("multistep needs milestones=<step;step;...>")
    if cls is Power and ("a" not in values or "b" not in values):
        raise ValueError("power needs a=<coefficient> and b=<exponent <= 0>")
    return cls(**values)


def _parse_points(kwargs: dict[str, str]) -> Interpolated:
    unknown = sorted(set(kwargs) - {"at", "then", "total"})
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r} for points; expected at, then, total")
    if "at" not in kwargs:
        raise ValueError("points needs at=<step>:<LR>;<step>:<LR>;...")
    pts = []
    for item in kwargs["at"].split(";"):
        if not item.strip():
            continue
        if ":" not in item:
            raise ValueError(f"point {item.strip()!r} is not <step>:<LR>")
        a, b = item.split(":", 1)
        pts.append((_coerce(a, "int", "step", "points"), _coerce(b, "float", "LR", "points")))
    then = _parse(kwargs["then"]) if "then" in kwargs else None
    total = _coerce(kwargs["total"], "int", "total", "points") if "total" in kwargs else None
    return Interpolated(points=tuple(pts), then=then, total=total)


def parse(spec: str) -> Schedule:
    """Read a one-line schedule spec such as ``cosine(peak=3e-4, warmup=100, total=10000)``."""
    if isinstance(spec, Schedule):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"bad schedule spec {spec!r}: empty; {_EXAMPLE}")
    one_line = " ".join(spec.split())
    try:
        return _parse(one_line)
    except InputError as e:
        raise InputError(f"bad schedule spec {one_line!r}: {e}") from None
    except ValueError as e:
        raise InputError(f"bad schedule spec {one_line!r}: {e}") from None


def from_points(steps: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray,
                then: Schedule | None = None, total: int | None = None) -> Interpolated:
    """Schedule from logged/planned (step, LR) points; duplicates keep the last logged value."""
    s = np.asarray(steps)
    v = np.asarray(values, dtype=np.float64)
    if s.shape != v.shape or s.ndim != 1:
        raise InputError(f"LR points: {s.size} steps but {v.size} values")
    if s.size and not np.all(np.isfinite(s.astype(np.float64))):
        raise InputError("LR points: steps must be finite")
    si = np.asarray(s, dtype=np.float64)
    if s.size and not np.all(si == np.round(si)):
        raise InputError("LR points: steps must be whole optimizer steps")
    si = si.astype(np.int64)
    # stable sort, then keep the last occurrence of each step (trackers re-log after resumes)
    order = np.argsort(si, kind="stable")
    si, v = si[order], v[order]
    keep = np.ones(si.size, dtype=bool)
    keep[:-1] = si[1:] != si[:-1]
    return Interpolated(points=np.column_stack([si[keep], v[keep]]), then=then, total=total)


# --------------------------------------------------------------------------------------------------
# Building from tracker configs

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


def _num(cfg: Mapping[str, Any], key: str, kind: str = "float") -> Any:
    v = _get(cfg, key)
    if v is None:
        return None
    if isinstance(v, str):
        v = v.strip()
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise InputError(f"config {key}={v!r} is not a number") from None
    if not math.isfinite(x):
        raise InputError(f"config {key}={v!r} is not a finite number")
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
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise InputError(f"config lr_scheduler_kwargs {key}={v!r} is not a number") from None
        if not math.isfinite(x):
            raise InputError(f"config lr_scheduler_kwargs {key}={v!r} is not a finite number")
        return x

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
                         "give the schedule as a spec in forecast.schedule")
    end = warmup + n_stable + n_decay
    ratio = kwf("min_lr_ratio", 0.0)
    if not 0 <= ratio <= 1:
        raise InputError(f"config min_lr_ratio={format_number(ratio)} must be in [0, 1]")
    final = ratio * peak
    shape = _shape_name(kw.get("decay_type", "cosine"), ("linear", "sqrt", "cosine"), "decay_type")
    wshape = _shape_name(kw.get("warmup_type", "linear"), WARMUP_SHAPES, "warmup_type")
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
    nested = _unwrap(config.get("forecast"))
    spec = _get(config, "forecast.schedule", "forecast/schedule")
    if spec is None and isinstance(nested, Mapping):
        spec = _get(nested, "schedule")
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
