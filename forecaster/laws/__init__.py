"""Loss-curve laws behind one interface; each law is one module that registers itself."""

from __future__ import annotations

from forecaster.laws.base import Law, automatic, available, get, register

# importing a law's module registers it
from forecaster.laws import momentum, momentum_size, multipower, pow3, exponential, logpower  # noqa: E402,F401

__all__ = ["Law", "automatic", "available", "get", "register"]
