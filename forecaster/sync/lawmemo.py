"""The law `law="auto"` chose for each fitted group, remembered between syncs in the history cache.

Choosing fits every candidate law to the group's held-back data; the richer candidates cost most
of a pooled refit (on a 100-run group, 8 of 10 CPU seconds) and mostly lose. While a group keeps
its members and none of them has grown by more than `REFRESH` of its steps since the choice, the
remembered law is fitted directly: a law fixed in advance gives the forecast `auto` gives when it
picks that law (tests/test_law_memo.py). Past that, or with a member added or gone, it is chosen
again. A memo that cannot be read or stored only costs the full choice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from forecaster.eligibility import informative_lr
from forecaster.histories import RunForecast, RunHistory
from forecaster.trackers import fingerprint

if TYPE_CHECKING:  # pragma: no cover
    from forecaster.cache import Sample

log = logging.getLogger("forecaster.sync")

# choose again once any member's last step has grown by this share of its last step at the choice
REFRESH = 0.1
# the key suffix of a group's last fitted parameters
INIT = "|init"


def members_of(hist: Sequence[RunHistory]) -> dict[str, dict[str, list]]:
    """Per group: each member run's last fitted step, and whether the LR laws can read its LR
    (which decides the candidates it is judged among)."""
    out: dict[str, dict[str, list]] = {}
    for h in hist:
        out.setdefault(h.group, {})[h.run] = [int(h.steps[-1]) if len(h.steps) else 0, informative_lr(h)]
    return out


@dataclass
class LawMemo:
    """Remembered choices of one sync scope: loaded with the histories (`read`), stored after the fit."""

    path: Path | None  # the history cache file; None: nothing remembered
    ident: str  # the tracker's identity (the cache's)
    sample: "Sample"
    token: str  # the settings that change a fit: another token, another memo
    known: dict[str, str] = field(default_factory=dict)  # key -> JSON {"law", "members"}
    fresh: dict[str, str] = field(default_factory=dict)  # choices made in this sync, to store

    def _key(self, metric: str, group: str) -> str:
        return f"{self.prefix()}{metric}|{group}"

    def prefix(self) -> str:
        """What every key of this memo starts with (its settings)."""
        return f"{fingerprint(self.token)}|"

    def reuse(self, metric: str, group: str, members: dict[str, list]) -> str | None:
        """The remembered law of `group` when its members are the same and have grown little."""
        try:
            memo = json.loads(self.known[self._key(metric, group)])
            then: dict[str, list] = memo["members"]
            law = str(memo["law"])
            if set(then) != set(members):
                return None
            for run, (last, lr) in members.items():
                was, had = then[run]
                if lr != had or not was <= last <= was + REFRESH * max(was, 1):
                    return None
        except (KeyError, ValueError, TypeError):
            return None
        return law

    def record(self, metric: str, hist: Sequence[RunHistory], fcs: Sequence[RunForecast],
               chosen: set[str]) -> None:
        """Remember the law of each group in `chosen` whose fitted runs all got one and the same law."""
        laws: dict[str, set[str | None]] = {}
        for h, fc in zip(hist, fcs):
            if h.group in chosen:
                laws.setdefault(h.group, set()).add(None if fc.skipped else fc.law)
        members = members_of(hist)
        for group, found in laws.items():
            if len(found) == 1 and None not in found:
                text = json.dumps({"law": found.pop(), "members": members[group]}, sort_keys=True)
                self.known[self._key(metric, group)] = self.fresh[self._key(metric, group)] = text

    def record_params(self, metric: str, hist: Sequence[RunHistory], fcs: Sequence[RunForecast]) -> None:
        """Remember each group's fitted parameters per run, the next fit's warm start (`starts`)."""
        found: dict[str, dict[str, dict]] = {}
        for h, fc in zip(hist, fcs):
            if not fc.skipped and fc.law and fc.params:
                found.setdefault(h.group, {}).setdefault(fc.law, {})[h.run] = fc.params
        for group, by_law in found.items():
            if len(by_law) == 1:
                ((law, params),) = by_law.items()
                key = self._key(metric, group) + INIT
                self.known[key] = self.fresh[key] = json.dumps({"law": law, "params": params}, sort_keys=True)

    def starts(self, metric: str, group: str, law: str) -> dict[str, dict[str, float]]:
        """The parameters `law` was last fitted with, per run of `group` (none when another law was)."""
        try:
            memo = json.loads(self.known[self._key(metric, group) + INIT])
            return dict(memo["params"]) if memo["law"] == law else {}
        except (KeyError, ValueError, TypeError):
            return {}

    def save(self) -> None:
        """Store this sync's choices."""
        if self.path is None or not self.fresh:
            return
        cache = self._open()
        if cache is not None:
            try:
                cache.put_laws(self.fresh)
                self.fresh = {}
            finally:
                cache.close()

    def _open(self):
        from forecaster.cache import HistoryCache

        assert self.path is not None
        cache = HistoryCache(self.path, self.ident, self.sample)
        return cache if cache.db is not None else None
