"""Loss-curve laws behind one interface (`Law`, an abstract base); each law is one module.

Every module of this package is imported here (pkgutil), and a law registers itself with
``@register``: a new law is one new file, nothing else edited. Laws from other distributions
come in through the entry-point group ``forecaster.laws``: an entry names a module whose laws
register themselves on import, or a `Law` subclass, e.g. in the plugin's pyproject.toml::

    [project.entry-points."forecaster.laws"]
    gompertz = "my_laws.gompertz:Gompertz"

`discover()` runs once on import; call it again to pick up laws installed since.
"""

from __future__ import annotations

from forecaster.laws.base import REGISTRY, Law, automatic, available, get, register

discover = REGISTRY.discover
discover()

__all__ = ["Law", "automatic", "available", "discover", "get", "register"]
