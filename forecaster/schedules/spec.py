"""The one-line spec text of a schedule read back: `parse` and the family names and key aliases it accepts."""

from __future__ import annotations

import re
from typing import Any

from forecaster.errors import InputError
from forecaster.schedules.families import (
    WSD, Constant, Cosine, CosineRestarts, InvSqrt, Linear, MultiStep, Poly, Power, Schedule, Step,
    field_kinds,
)
from forecaster.schedules.points import Interpolated
from forecaster.schedules.values import coerce_value

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
    allowed = set(field_kinds(cls))  # the fields every family has and the family's own
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
        kwargs["decay"] = repr(coerce_value(kwargs.pop("decay_steps"), "int", "decay_steps", name)
                               / coerce_value(end, "int", "total", name))
    values: dict[str, Any] = {}
    for k, v in kwargs.items():
        kind = field_kinds(cls).get(k, "float")
        if v.lower() == "none" and k in ("total", "until", "timescale"):
            continue
        values[k] = coerce_value(v, kind, k, name)
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
        pts.append((coerce_value(a, "int", "step", "points"), coerce_value(b, "float", "LR", "points")))
    then = _parse(kwargs["then"]) if "then" in kwargs else None
    total = coerce_value(kwargs["total"], "int", "total", "points") if "total" in kwargs else None
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
