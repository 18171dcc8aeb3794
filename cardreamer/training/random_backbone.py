"""The ``random`` backbone: uniformly random actions, trains nothing. A baseline and a smoke test
for the loop; it has no config of its own (a run's config.yaml holds no ``model.*`` keys)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from . import checkpoint
from .protocol import register_backbone

RANDOM_FORMAT = "cardreamer-random-1"


@register_backbone("random")
class RandomBackbone:
    """Uniformly random actions; ``train`` only counts updates."""

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
