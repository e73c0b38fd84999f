"""The short stable hash that names what a forecast was made from (``forecast.input``)."""

from __future__ import annotations

import hashlib
from typing import Any


def fingerprint(*parts: Any) -> str:
    """Short stable hash of the parts' text (what a forecast was made from)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\x1f")
    return h.hexdigest()[:16]
