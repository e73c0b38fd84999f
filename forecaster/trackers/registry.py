"""How adapters are found: classes registered under the ``forecaster.trackers`` entry-point group.

A new tracker is one installed package that registers its `Tracker` subclass there; nothing in
forecaster names it.
"""

from __future__ import annotations

import importlib.metadata

from forecaster import DISTRIBUTION
from forecaster.errors import InputError
from forecaster.trackers.base import Tracker

ENTRY_POINT_GROUP = "forecaster.trackers"


def available() -> dict[str, importlib.metadata.EntryPoint]:
    """Installed adapters by name (entry points of the ``forecaster.trackers`` group)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _extras() -> set[str]:
    """The extras this package declares (mlflow, wandb, ...), from its installed metadata."""
    try:
        return set(importlib.metadata.metadata(DISTRIBUTION).get_all("Provides-Extra") or ()) - {"dev"}
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return set()


def load(name: str) -> type[Tracker]:
    """The adapter class registered as `name`; InputError naming what is installed otherwise."""
    eps = available()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        if name in _extras():
            hint = f"pip install '{DISTRIBUTION}[{name}]'"
        else:  # no extra of that name: pointing at one would send the user to a pip error
            hint = (f"an adapter for it would come from a package registering a {ENTRY_POINT_GROUP!r} "
                    "entry point")
        raise InputError(f"unknown tracker {name!r} (installed: {known}); {hint}")
    try:
        cls = eps[name].load()
    except ImportError as e:
        raise InputError(f"tracker {name!r} needs a package that is not installed ({e.name or e}); "
                         f"pip install '{DISTRIBUTION}[{name}]'") from None
    if not (isinstance(cls, type) and issubclass(cls, Tracker)):
        raise InputError(f"entry point {name!r} does not name a forecaster.trackers.Tracker subclass")
    return cls
