"""One registry type for every kind of extension: reward terms, terminal checks, task parts,
observation handlers, backbones.

A ``Registry`` maps names to objects of one kind. Names are registered once (a second, different
object under a taken name is refused, so two plugins cannot silently shadow each other); looking
up an unknown name raises :class:`~cardreamer.config_loading.ConfigError` with the nearest names,
so a typo in a task file or on the command line ends in one clear line.

    REWARD_TERMS: Registry[RewardTerm] = Registry("reward term")

    @REWARD_TERMS.register("speed")
    def speed(ctx): ...

    REWARD_TERMS["sped"]  # ConfigError: unknown reward term 'sped' (did you mean 'speed'?)
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from cardreamer.config_loading import ConfigError, nearest_hint

T = TypeVar("T")


class RegistryError(ValueError):
    """A name is registered twice for different objects."""


def _qualified(obj: object) -> str:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{name}"


class Registry(Generic[T]):
    """Named objects of one kind (``kind`` is what error messages call them, e.g. ``"backbone"``)."""

    def __init__(self, kind: str, plural: str | None = None):
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._items: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, item: T) -> T: ...

    def register(self, name: str, item: T | None = None):
        """Register ``item`` under ``name``; without ``item``, a decorator that does so.

        Registering the same object again (a module imported twice) is allowed; a different object
        under a taken name raises :class:`RegistryError` naming both.
        """
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def add(obj: T) -> T:
            known = self._items.get(name)
            if known is not None and known is not obj and _qualified(known) != _qualified(obj):
                raise RegistryError(f"{self.kind} {name!r} is already registered by {_qualified(known)}; "
                                    f"{_qualified(obj)} needs another name")
            self._items[name] = obj
            return obj

        return add(item) if item is not None else add

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise ConfigError(f"unknown {self.kind} {str(name)!r}{nearest_hint(str(name), self.names(), self.plural)}"
                              ) from None

    def get(self, name: str, default: T | None = None) -> T | None:
        return self._items.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._items[name]) for name in self.names()]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
