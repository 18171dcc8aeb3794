"""The observation-handler protocol, its config base class, and the registry of handler types.

A handler turns the world into observations for one ego vehicle. It is built from a config (a
pydantic model with ``extra='forbid'``, so a mistyped key is an error), declares its spaces, is
reset with the world and ego, and returns ``(obs, info)`` every step. Handler types are
registered by name, so a user adds one without touching the core::

    @register_handler("my_speed")
    class MySpeed(Handler):
        class Config(HandlerConfig):
            scale: float = 1.0
        def observation_space(self): ...
        def step(self, world, ego_id): ...
"""
from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from cardreamer.config_loading import ConfigError
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


_REGISTRY: dict[str, type[Handler]] = {}


def register_handler(name: str):
    """Class decorator that registers a Handler subclass under ``name``."""

    def decorate(cls: type[Handler]) -> type[Handler]:
        if not (isinstance(cls, type) and issubclass(cls, Handler)):
            raise TypeError(f"register_handler({name!r}) needs a Handler subclass, got {cls!r}")
        known = _REGISTRY.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise ValueError(f"handler name {name!r} is already registered for {known.__module__}.{known.__qualname__}")
        _REGISTRY[name] = cls
        return cls

    return decorate


def get_handler(name: str) -> type[Handler]:
    """The handler class registered under ``name``."""
    if name not in _REGISTRY:
        raise ObservationConfigError(f"unknown handler {name!r}{did_you_mean(name, _REGISTRY)}; "
                                     f"registered handlers: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def registered_handlers() -> list[str]:
    return sorted(_REGISTRY)


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


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=2)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _explain(name: str, config_cls: type[HandlerConfig], exc: ValidationError) -> str:
    valid = list(config_cls.model_fields)
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key {key!r}{did_you_mean(err['loc'][0], valid)}; valid keys: {', '.join(valid)}")
        else:
            lines.append(f"{key} = {err.get('input')!r}: {err['msg']}")
    return f"observation {name!r} ({config_cls.__qualname__}): " + "; ".join(lines)
