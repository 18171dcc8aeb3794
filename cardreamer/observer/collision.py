"""Collision observation: whether the ego collided during the last tick, and how hard."""
from __future__ import annotations

import gymnasium
import numpy as np

from cardreamer.observer.handler import Handler, HandlerConfig, register_handler
from cardreamer.world.api import World


class CollisionConfig(HandlerConfig):
    pass


@register_handler("collision")
class CollisionHandler(Handler):
    """float32 [collided (0 or 1), intensity]: intensity is the largest relative speed (m/s) of
    the last tick's collisions. Info ``<name>_ids`` lists the other actors (-1: static geometry)."""

    Config = CollisionConfig

    def observation_space(self) -> dict[str, gymnasium.spaces.Space]:
        return {self.name: gymnasium.spaces.Box(0.0, np.inf, (2,), np.float32)}

    def step(self, world: World, ego_id: int) -> tuple[dict[str, np.ndarray], dict]:
        events = world.collisions(ego_id)
        intensity = max((abs(e.relative_speed) for e in events), default=0.0)
        obs = np.array([1.0 if events else 0.0, intensity], dtype=np.float32)
        return {self.name: obs}, {f"{self.name}_ids": [e.other_id for e in events]}
