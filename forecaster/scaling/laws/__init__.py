"""Cross-run scaling laws behind one interface (`ScalingLaw`, an abstract base); each law is one module.

Every module of this package is imported here (pkgutil), and a law registers itself with
``@register``: a new law is one new file, nothing else edited. Laws from other distributions come
in through the entry-point group ``forecaster.scaling_laws``: an entry names a module whose laws
register themselves on import, or a `ScalingLaw` subclass, e.g. in the plugin's pyproject.toml::

    [project.entry-points."forecaster.scaling_laws"]
    kaplan = "my_laws.kaplan:Kaplan"

`discover()` runs once on import; call it again to pick up laws installed since.
"""

from __future__ import annotations

from forecaster.scaling.laws.base import (
    OBJECTIVES, REGISTRY, FitData, LossLaw, ScalingLaw, available, get, make_data, register,
)

discover = REGISTRY.discover
discover()

__all__ = ["OBJECTIVES", "FitData", "LossLaw", "ScalingLaw", "available", "discover", "get", "make_data",
           "register"]
