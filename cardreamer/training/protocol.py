"""The backbone protocol and the registry of backbones by name.

A backbone is any object with these methods (see docs/backbones.md):

- ``policy(obs, state, mode) -> (action, state)``: ``obs`` is a dict of (N, ...) arrays with the
  observation keys plus ``is_first``; ``state`` starts as ``None``; ``mode`` is 'train' or 'eval'.
- ``train(batch, state) -> (state, metrics)``: ``batch`` is a dict of (B, T, ...) arrays with the
  observation keys plus ``action``, ``reward``, ``is_first``, ``is_last``, ``is_terminal``.
- ``report(batch) -> dict``: numbers and videos ((T, H, W, 3) uint8 arrays) to log.
- ``save(path)`` / ``load(path)``: the full training state in one file; loading must never run code
  from it (the built-in backbones write plain arrays and JSON with :mod:`.checkpoint`).

and optionally these attributes:

- ``batch_size`` and ``batch_length`` (ints): the shape (B, T) of the batches ``train`` takes
  (default :data:`DEFAULT_BATCH`).
- ``replay_context`` (int K) and ``replay_latents`` (dict of per-step fill arrays): the replay then
  stores those latents with every step, batches hold K context steps before the trained window plus
  the stored latents, and ``train`` may return ``({"replay": latents}, ...)`` whose latents the loop
  writes back at the sampled steps (DreamerV3's replay context).
- ``eval_policy``: a string saying how 'eval' mode acts (shown by ``cardreamer eval``).

A backbone is registered as a :class:`BackboneSpec`: a factory
``factory(obs_space, act_space, config) -> backbone`` (``config`` is the run's
:class:`~cardreamer.training.config.TrainingConfig`, whose ``model`` is the backbone's own config),
and optionally the pydantic model of its config (the run's ``model.*`` keys) and its size presets.
``register_backbone(name, factory, config=..., presets=...)`` does this (or use it as a decorator);
plugins (``--import MODULE``, entry points) register theirs on import. The built-in backbones are
found by module name on first lookup, so this package imports none of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
from pydantic import BaseModel

from cardreamer.registry import Registry, RegistryError, _qualified

DEFAULT_BATCH = (16, 64)
"""(batch_size, batch_length) of the batches of a backbone that does not say."""
BUILTIN_BACKBONES = {"dreamerv3": "dreamerv3_backbone", "random": "cardreamer.training.random_backbone"}
"""Built-in backbone name -> the module that registers it when imported."""
METHODS = ("policy", "train", "report", "save", "load")


@runtime_checkable
class Backbone(Protocol):
    def policy(self, obs: dict[str, np.ndarray], state: Any, mode: str) -> tuple[np.ndarray, Any]: ...

    def train(self, batch: dict[str, np.ndarray], state: Any) -> tuple[Any, dict[str, float]]: ...

    def report(self, batch: dict[str, np.ndarray]) -> dict[str, Any]: ...

    def save(self, path: str) -> None: ...

    def load(self, path: str) -> None: ...


Factory = Callable[[gym.spaces.Dict, gym.Space, Any], Backbone]


@dataclass(frozen=True)
class Preset:
    """A size preset: values of the backbone's config (``model``) and the training settings it
    needs (``settings``, dotted keys such as ``env.image_size``), which ``train`` states and records."""

    model: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: how to build it, its config model and its presets."""

    name: str
    factory: Factory
    config: type[BaseModel] | None = None  # the run's ``model.*`` keys; None: the backbone has none
    presets: Mapping[str, Preset] = field(default_factory=dict)
    default_preset: str | None = None  # used when no size is named in Python
    command_preset: str | None = None  # used by `cardreamer train` without --size (a laptop-sized one)


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def register_backbone(name: str, factory: Factory | None = None, *, config: type[BaseModel] | None = None,
                      presets: Mapping[str, Preset] | None = None, default_preset: str | None = None,
                      command_preset: str | None = None):
    """Register ``factory`` under ``name``; usable as ``@register_backbone("name", config=...)`` too."""

    def add(fn: Factory) -> Factory:
        if not callable(fn):
            raise TypeError(f"backbone {name!r}: factory must be callable, got {fn!r}")
        for preset in (default_preset, command_preset):
            if preset is not None and preset not in (presets or {}):
                raise ValueError(f"backbone {name!r}: preset {preset!r} is not among its presets {sorted(presets or {})}")
        known = BACKBONES.get(name)  # the registry tells specs apart by their type: compare the factories
        if known is not None and known.factory is not fn and _qualified(known.factory) != _qualified(fn):
            raise RegistryError(f"backbone {name!r} is already registered by {_qualified(known.factory)}; "
                                f"{_qualified(fn)} needs another name")
        BACKBONES.register(name, BackboneSpec(name, fn, config, dict(presets or {}), default_preset, command_preset))
        return fn

    return add(factory) if factory is not None else add


def backbone_spec(name: str) -> BackboneSpec:
    """The spec registered as ``name``, importing a built-in backbone's module on first lookup.
    An unknown name raises ConfigError with the nearest registered names."""
    if name in BUILTIN_BACKBONES:
        _import_builtin(BUILTIN_BACKBONES[name])
    elif name not in BACKBONES:
        available_backbones()  # an unknown name: the hint lists the built-in ones too
    return BACKBONES[name]


def _import_builtin(module: str) -> None:
    """Import a built-in backbone's module; one whose package is not installed is skipped."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name != module.split(".")[0]:
            raise


def available_backbones() -> list[str]:
    """Every registered backbone name, the built-in ones included."""
    for name, module in BUILTIN_BACKBONES.items():
        if name not in BACKBONES:
            _import_builtin(module)
    return BACKBONES.names()


def make_backbone(name: str, obs_space: gym.spaces.Dict, act_space: gym.Space, config: Any) -> Backbone:
    """Build the backbone registered as ``name``."""
    backbone = backbone_spec(name).factory(obs_space, act_space, config)
    missing = [m for m in METHODS if not callable(getattr(backbone, m, None))]
    if missing:
        raise TypeError(f"backbone {name!r} lacks methods {missing} of the backbone protocol")
    return backbone


def batch_shape(backbone: Backbone) -> tuple[int, int]:
    """(batch_size, batch_length) of the batches ``backbone`` trains on."""
    size = int(getattr(backbone, "batch_size", DEFAULT_BATCH[0]))
    length = int(getattr(backbone, "batch_length", DEFAULT_BATCH[1]))
    return size, length
