"""The observation-handler protocol, its config base class, and the registry of handler types.

A handler turns the world into observations for one ego vehicle. It is built from a config (a
pydantic model with ``extra='forbid'``, so a mistyped key is an error), declares its spaces, is
reset with the world and ego, and returns ``(obs, info)`` every step. Handler types are
registered by name in ``HANDLERS`` (a ``cardreamer.registry.Registry``), so a user, or a plugin,
adds one without touching the core::

    @register_handler("my_speed")
    class MySpeed(Handler):
        class Config(HandlerConfig):
            scale: float = 1.0
        def observation_space(self): ...
        def step(self, world, ego_id): ...
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import gymnasium
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from cardreamer.config_loading import ConfigError, nearest_hint
from cardreamer.registry import Registry
from cardreamer.world.api import World


class ObservationConfigError(ConfigError):
    """An observation config is invalid; the message names the entry, the key and the valid choices."""


class HandlerConfig(BaseModel):
    """Base of every handler's config. ``handler`` names the registered handler type; unknown keys,
    NaN and infinities are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    handler: str


class Handler(ABC):
    """Produces the observations ``observation_space()`` declares, for the ego vehicle.

    ``name`` is the observation entry's name; a handler's obs keys are ``name`` itself or start
    with ``name`` (e.g. ``lidar`` and ``lidar_points``), so entries never collide.
    """

    Config: ClassVar[type[HandlerConfig]] = HandlerConfig

    def __init__(self, name: str, config: HandlerConfig):
        self.name = name
        self.config = config

    @abstractmethod
    def observation_space(self) -> dict[str, gymnasium.spaces.Space]:
        """Spaces of the observations this handler returns, by obs key."""

    def reset(self, world: World, ego_id: int) -> None:
        """Prepare for a new episode (default: nothing to prepare)."""

    @abstractmethod
    def step(self, world: World, ego_id: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Observations (matching ``observation_space``) and info for the current world state."""


HANDLERS: Registry[type[Handler]] = Registry("handler")
"""Observation handler types by name; ``HANDLERS[name]`` raises a ConfigError with the nearest names."""


def register_handler(name: str) -> Callable[[type[Handler]], type[Handler]]:
    """Class decorator that registers a Handler subclass in ``HANDLERS`` under ``name``."""

    def decorate(cls: type[Handler]) -> type[Handler]:
        if not (isinstance(cls, type) and issubclass(cls, Handler)):
            raise TypeError(f"register_handler({name!r}) needs a Handler subclass, got {cls!r}")
        return HANDLERS.register(name, cls)

    return decorate


def get_handler(name: str) -> type[Handler]:
    """The handler class registered under ``name``."""
    return HANDLERS[name]


def registered_handlers() -> list[str]:
    return HANDLERS.names()


def build_handler(name: str, raw: Mapping[str, Any]) -> Handler:
    """Validate the config of observation entry ``name`` and build its handler.

    ``raw['handler']`` names the handler type; when it is missing, the entry name is used.
    """
    if not isinstance(raw, Mapping):
        raise ObservationConfigError(f"observation {name!r}: config must be a mapping, got {type(raw).__name__}")
    raw = dict(raw)
    raw.setdefault("handler", name)
    cls = get_handler(raw["handler"])
    try:
        config = cls.Config.model_validate(raw)
    except ValidationError as exc:
        raise ObservationConfigError(_explain(name, cls.Config, exc)) from None
    return cls(name, config)


def _explain(name: str, config_cls: type[HandlerConfig], exc: ValidationError) -> str:
    valid = list(config_cls.model_fields)
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key {key!r}{nearest_hint(str(err['loc'][0]), valid)}")
        else:
            lines.append(f"{key} = {err.get('input')!r}: {err['msg']}")
    return f"observation {name!r} ({config_cls.__qualname__}): " + "; ".join(lines)
