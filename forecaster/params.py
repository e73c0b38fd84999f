"""Estimator settings as scikit-learn keeps them: every constructor argument is a setting, read back
by `get_params`, changed by `set_params`, copied unfitted by `clone`."""

from __future__ import annotations

import copy
import inspect
from typing import Any, TypeVar

from forecaster.errors import InputError

E = TypeVar("E", bound="Params")


class Params:
    """Base of an estimator whose settings are exactly its constructor's keyword arguments, each
    stored under its own name (the scikit-learn convention): nothing else needs to list them."""

    @classmethod
    def param_names(cls) -> list[str]:
        """The settings' names, in the constructor's order."""
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Every setting by name (`deep` is accepted for scikit-learn's tools; nothing nests)."""
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self: E, **params: Any) -> E:
        """Change settings by name; an unknown name is an `InputError`. Returns the estimator."""
        known = self.param_names()
        for name, value in params.items():
            if name not in known:
                raise InputError(f"{type(self).__name__} has no setting {name!r}; settings: {', '.join(known)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if v != sig.parameters[k].default]
        return f"{type(self).__name__}({', '.join(changed)})"


def clone(estimator: E, **params: Any) -> E:
    """A new, unfitted estimator with the same settings as `estimator` (deep-copied), `params` changed."""
    settings = {k: copy.deepcopy(v) for k, v in estimator.get_params().items()}
    return type(estimator)(**settings).set_params(**params)
