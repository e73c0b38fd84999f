"""JSON as strict parsers read it: NaN/inf as null, numpy scalars as Python ones; written to a file or stdout."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(obj: Any) -> Any:
    """The same structure as strict JSON can hold it: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_json(obj: Any, path: str | Path | None) -> None:
    """Write JSON to `path` ('-' or None: stdout)."""
    text = json.dumps(obj, indent=2, allow_nan=False)
    if path in (None, "-"):
        sys.stdout.write(text + "\n")
    else:
        Path(path).write_text(text + "\n")
