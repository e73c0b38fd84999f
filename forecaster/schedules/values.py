"""Values in a schedule spec: numbers as a spec writes them, shape names, and text read as a field's kind."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

import numpy as np

from forecaster.errors import InputError
from forecaster.schedules.curves import decay_window

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


def decay_number(decay: float, end: int | None) -> str:
    """`decay` in as few digits as keep its cooldown window the same whole number of steps."""
    for digits in range(SPEC_DIGITS, 18):
        text = format_number(float(format(decay, f".{digits}g")))
        if end is None or decay_window(float(text), end) == decay_window(decay, end):
            return text if len(text) < len(format_number(decay)) else format_number(decay)
    return format_number(decay)  # pragma: no cover - 17 digits are exact


def shape_name(v: Any, allowed: tuple[str, ...], what: str) -> str:
    s = str(v).strip().lower()
    s = _SHAPE_ALIASES.get(s, s)
    if s not in allowed:
        raise InputError(f"unknown {what} {v!r}; expected one of {', '.join(allowed)} (1-sqrt = sqrt)")
    return s



def coerce_value(v: Any, kind: str, key: str, family: str) -> Any:
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
            return tuple(coerce_value(i, "int", key, family) for i in items if str(i).strip() != "")
        if kind == "shape":
            return shape_name(v, DECAY_SHAPES, "decay shape")
        if kind == "wshape":
            return shape_name(v, WARMUP_SHAPES, "warmup shape")
    except InputError:
        raise
    except (TypeError, ValueError):
        want = {"float": "a finite number", "int": "a whole number of steps",
                "ints": "steps separated by ';'"}.get(kind, kind)
        raise InputError(f"{family}: {key} must be {want}, got {v!r}") from None
    return v


def format_value(v: Any, kind: str) -> str:
    if kind == "ints":
        return ";".join(str(int(i)) for i in v)
    if kind in ("shape", "wshape"):
        return str(v)
    if kind == "int":
        return str(int(v))
    return spec_number(v)

