"""The backbone protocol and the registry of backbones by name.

A backbone is any object with these methods (see docs/backbones.md):

- ``policy(obs, state, mode) -> (action, state)``: ``obs`` is a dict of (N, ...) arrays with the
  observation keys plus ``is_first``; ``state`` starts as ``None``; ``mode`` is 'train' or 'eval'.
- ``train(batch, state) -> (state, metrics)``: ``batch`` is a dict of (B, T, ...) arrays with the
  observation keys plus ``action``, ``reward``, ``is_first``, ``is_last``, ``is_terminal``.
- optionally ``replay_context`` (int K) and ``replay_latents`` (dict of per-step fill arrays): the
  replay then stores those latents with every step, batches hold K context steps before the
  trained window plus the stored latents, and ``train`` may return ``({"replay": latents}, ...)``
  whose latents the loop writes back at the sampled steps (DreamerV3's replay context).
- ``report(batch) -> dict``: numbers and videos ((T, H, W, 3) uint8 arrays) to log.
- ``save(path)`` / ``load(path)``: the full training state in one file; loading must never run code
  from it (the built-in backbones write plain arrays and JSON with :mod:`.checkpoint`).
- optionally ``eval_policy``: a string saying how 'eval' mode acts (shown by ``cardreamer eval``).

Register a factory ``factory(obs_space, act_space, config) -> backbone`` with
``register_backbone(name, factory)`` (or as a decorator) and train it by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from . import checkpoint

RANDOM_FORMAT = "cardreamer-random-1"


@runtime_checkable
class Backbone(Protocol):
    def policy(self, obs: dict[str, np.ndarray], state: Any, mode: str) -> tuple[np.ndarray, Any]: ...

    def train(self, batch: dict[str, np.ndarray], state: Any) -> tuple[Any, dict[str, float]]: ...

    def report(self, batch: dict[str, np.ndarray]) -> dict[str, Any]: ...

    def save(self, path: str) -> None: ...

    def load(self, path: str) -> None: ...


Factory = Callable[[gym.spaces.Dict, gym.Space, Any], Backbone]
_REGISTRY: dict[str, Factory] = {}


def register_backbone(name: str, factory: Factory | None = None):
    """Register ``factory`` under ``name``; usable as ``@register_backbone("name")`` too."""

    def add(fn: Factory) -> Factory:
        if not callable(fn):
            raise TypeError(f"backbone {name!r}: factory must be callable, got {fn!r}")
        _REGISTRY[name] = fn
        return fn

    return add(factory) if factory is not None else add


def available_backbones() -> list[str]:
    return sorted(_REGISTRY)


def make_backbone(name: str, obs_space: gym.spaces.Dict, act_space: gym.Space, config: Any) -> Backbone:
    """Build the backbone registered as ``name``."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown backbone {name!r}; registered: {', '.join(available_backbones())}")
    backbone = _REGISTRY[name](obs_space, act_space, config)
    missing = [m for m in ("policy", "train", "report", "save", "load") if not callable(getattr(backbone, m, None))]
    if missing:
        raise TypeError(f"backbone {name!r} lacks methods {missing} of the backbone protocol")
    return backbone


class RandomBackbone:
    """Uniformly random actions; trains nothing. A baseline and a smoke test for the loop."""

    def __init__(self, obs_space: gym.spaces.Dict, act_space: gym.Space, config: Any):
        self.act_space = act_space
        self.rng = np.random.default_rng(getattr(config, "seed", 0))
        self.updates = 0

    def policy(self, obs: dict, state: Any = None, mode: str = "train") -> tuple[np.ndarray, Any]:
        n = len(obs["is_first"])
        if isinstance(self.act_space, gym.spaces.Discrete):
            action = self.act_space.start + self.rng.integers(self.act_space.n, size=n)
        else:
            low, high = self.act_space.low, self.act_space.high
            action = self.rng.uniform(low, high, size=(n, *self.act_space.shape)).astype(self.act_space.dtype)
        return action, state

    def train(self, batch: dict, state: Any = None) -> tuple[Any, dict]:
        self.updates += 1
        return state, {"updates": float(self.updates)}

    def report(self, batch: dict) -> dict:
        return {}

    def save(self, path: str) -> None:
        state = {"format": RANDOM_FORMAT, "rng": self.rng.bit_generator.state, "updates": self.updates}
        checkpoint.write_arrays(path, {}, state)

    def load(self, path: str) -> None:
        _, state = checkpoint.read_arrays(path)
        if state.get("format") != RANDOM_FORMAT:
            raise checkpoint.CheckpointError(f"{path}: format {state.get('format')!r}, expected {RANDOM_FORMAT!r}")
        try:
            self.rng.bit_generator.state = state["rng"]
            self.updates = int(state["updates"])
        except (KeyError, TypeError, ValueError) as error:
            raise checkpoint.CheckpointError(f"{path}: not a state of the random backbone ({error})") from None


def _make_dreamerv3(obs_space: gym.spaces.Dict, act_space: gym.Space, config: Any) -> Backbone:
    from .agent import DreamerV3  # imported lazily: JAX start-up is not needed for other backbones

    return DreamerV3(obs_space, act_space, config)


register_backbone("dreamerv3", _make_dreamerv3)
register_backbone("random", RandomBackbone)
