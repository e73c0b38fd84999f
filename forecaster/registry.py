"""A registry of named classes found automatically: every module of a package, then an entry-point group.

A package's own modules register their classes with `@registry.register` when imported, and
`discover()` imports all of them (pkgutil), so adding one is adding one file. Third-party
distributions add theirs under an entry-point group, each entry naming a module (whose classes
register themselves on import) or a class (registered here).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import pkgutil
from typing import Callable, Generic, Iterator, TypeVar

log = logging.getLogger("forecaster")

T = TypeVar("T")


def _ident(cls: type) -> tuple[str, str]:
    return cls.__module__, cls.__qualname__


class Registry(Generic[T]):
    """Instances of the registered subclasses of `base`, by their class attribute `name`."""

    def __init__(self, kind: str, base: type[T], package: str, group: str) -> None:
        self.kind = kind
        self.base = base
        self.package = package
        self.group = group
        self._items: dict[str, T] = {}
        self._loaded: set[str] = set()  # entry points already loaded (by "name = value")

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: make `cls` available by its `name` (its abstract methods must be defined)."""
        name = cls.name  # type: ignore[attr-defined]
        held = self._items.get(name)
        # the same class again (a module imported twice) replaces itself; another one may not take the name
        if held is not None and _ident(type(held)) != _ident(cls):
            raise ValueError(f"{self.kind} {name!r} is already registered by {type(held).__module__}")
        self._items[name] = cls()
        return cls

    def discover(self) -> None:
        """Import every module of the package and load every entry point of the group not yet loaded."""
        pkg = importlib.import_module(self.package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{self.package}.{mod.name}")
        for ep in importlib.metadata.entry_points(group=self.group):
            key = f"{ep.name} = {ep.value}"
            if key in self._loaded:
                continue
            self._loaded.add(key)
            try:
                obj = ep.load()
            except Exception as e:  # noqa: BLE001 - a broken plugin must not take the built-in ones down
                log.warning("%s plugin %s (%s) failed to load: %s", self.kind, ep.name, ep.value, e)
                continue
            if isinstance(obj, type) and issubclass(obj, self.base) and obj not in {type(v) for v in self}:
                try:
                    self.register(obj)
                except (TypeError, ValueError) as e:  # abstract, or a name already taken
                    log.warning("%s plugin %s (%s) not registered: %s", self.kind, ep.name, ep.value, e)

    def get(self, name: str) -> T:
        """The registered instance called `name` (KeyError lists the known ones)."""
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items.values()))

    def names(self, where: Callable[[T], bool] | None = None, key: Callable[[T], object] | None = None
              ) -> list[str]:
        """Names of the registered instances that satisfy `where`, ordered by `key` (default: name)."""
        chosen = [v for v in self._items.values() if where is None or where(v)]
        chosen.sort(key=key or (lambda v: v.name))  # type: ignore[attr-defined]
        return [v.name for v in chosen]  # type: ignore[attr-defined]
