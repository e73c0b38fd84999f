"""What reading histories repaired rather than refused, counted for the warning lines on stderr."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable


@dataclass
class ReadReport:
    """What reading repaired: counts behind the warning lines printed on stderr."""

    nonfinite: dict[str, int] = field(default_factory=dict)  # column -> values dropped
    duplicates: dict[str, int] = field(default_factory=dict)  # run -> values overwritten
    unsorted: list[str] = field(default_factory=list)  # runs whose rows were not in step order
    files: int = 0
    rows: int = 0

    def warnings(self) -> list[str]:
        """One human line per kind of repair."""
        out = []
        if self.nonfinite:
            total = sum(self.nonfinite.values())
            per = ", ".join(f"{c}: {n}" for c, n in sorted(self.nonfinite.items()))
            out.append(f"dropped {total} NaN/inf value{'s' * (total != 1)} ({per})")
        if self.duplicates:
            total = sum(self.duplicates.values())
            out.append(f"{total} duplicate step value{'s' * (total != 1)} in {_names(self.duplicates)}: "
                       "kept the last of each")
        if self.unsorted:
            out.append(f"rows not in step order in {_names(self.unsorted)}: sorted by step")
        return out


def _names(runs: Iterable[str], limit: int = 5) -> str:
    runs = list(runs)
    shown = ", ".join(repr(r) for r in runs[:limit])
    more = f" and {len(runs) - limit} more" if len(runs) > limit else ""
    return f"run{'s' * (len(runs) != 1)} {shown}{more}"
