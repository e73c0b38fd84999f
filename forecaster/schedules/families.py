"""The schedule families: a `Schedule` base (warmup, evaluation, spec text) and one class per LR shape."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar

import numpy as np

from forecaster.errors import InputError
from forecaster.schedules.curves import decay_curve, decay_window, warmup_curve
from forecaster.schedules.values import (
    DECAY_SHAPES, WARMUP_SHAPES, coerce_value, decay_number, format_number, format_value, shape_name,
    spec_number,
)

# kinds of the fields every family has; a family's own come from its `_family`
BASE_KINDS = {"peak": "float", "warmup": "int", "total": "int", "until": "int", "start": "float",
              "warmup_shape": "wshape"}


@functools.cache
def field_kinds(cls: type[Schedule]) -> dict[str, str]:
    """Kind of each spec field of a family ("float", "int", "ints", "shape", "wshape")."""
    return {**BASE_KINDS, **{k: kind for k, kind, _ in cls._family}}


@functools.cache
def field_defaults(cls: type[Schedule]) -> dict[str, Any]:
    """The default of each field of a family that has one (a spec leaves those out)."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


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
        kinds = field_kinds(type(self))
        for f in fields(self):
            kind = kinds.get(f.name)
            if kind is not None and getattr(self, f.name) is not None:
                object.__setattr__(self, f.name, coerce_value(getattr(self, f.name), kind, f.name, self.name))
        object.__setattr__(self, "warmup_shape", shape_name(self.warmup_shape, WARMUP_SHAPES, "warmup shape"))
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
            w = self.start + (self.peak - self.start) * warmup_curve(s / self.warmup, self.warmup_shape)
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
            if always or v != field_defaults(type(self)).get(key):
                text = decay_number(v, self.end) if key == "decay" else format_value(v, kind)
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
        object.__setattr__(self, "shape", shape_name(self.shape, DECAY_SHAPES, "decay shape"))
        super()._validate()
        if not 0 <= self.decay <= 1:
            raise InputError(f"wsd: decay is the fraction of steps spent decaying, in [0, 1]; "
                             f"got {format_number(self.decay)}")
        if self.shape == "exp" and not self.final > 0:
            raise InputError("wsd: exp decay needs final > 0 (the LR is geometric between peak and final)")

    def _main(self, s: np.ndarray) -> np.ndarray:
        d, n = decay_window(self.decay, self.end)
        q = np.clip((s - d) / max(1, n), 0.0, 1.0)
        return decay_curve(self.peak, self.final, q, self.shape)


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
        object.__setattr__(self, "shape", shape_name(self.shape, DECAY_SHAPES, "decay shape"))
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
        d, n = decay_window(self.decay, self.end)
        v0 = float(self._law(d))
        final = min(self.final, v0)  # the tail cannot rise
        q = np.clip((s - d) / max(1, n), 0.0, 1.0)
        return np.where(s < d, base, decay_curve(v0, final, q, self.shape))


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
