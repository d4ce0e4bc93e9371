"""Name -> object registries for models and data sources. Other packages add to them through
package entry points (group ``cnnlab.models`` or ``cnnlab.sources``, each naming a module that
registers its entries when imported), so every command finds them."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Generic, TypeVar

from .errors import CnnlabError, callers_stacklevel

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, entry_points: str | None = None):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._entry_points = entry_points

    def _load_plugins(self) -> None:
        """Import the modules other packages name under this registry's entry-point group
        (once); one that fails to load is reported and left out, never fatal."""
        group, self._entry_points = self._entry_points, None
        if group is None:
            return
        for point in metadata.entry_points(group=group):
            try:
                point.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop cnnlab
                warnings.warn(f"{group} plugin {point.name} ({point.value}) failed to load: {exc}",
                              stacklevel=callers_stacklevel())

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(entry: T) -> T:
            return self.add(name, entry)

        return decorate

    def get(self, name: str) -> T:
        self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise CnnlabError(
                f"unknown {self.kind} '{name}'{hint}; choose from: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._entries)
