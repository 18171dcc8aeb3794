"""The Observer: builds the enabled observation handlers from a config and merges their output."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium
import numpy as np

from cardreamer.config_loading import nearest_hint
from cardreamer.observer.handler import Handler, ObservationConfigError, build_handler
from cardreamer.world.api import World


class Observer:
    """All enabled observations of one ego vehicle, exposed as one gymnasium Dict space.

    ``config`` maps observation entry names to handler configs, e.g.
    ``{'birdeye_wpt': {'handler': 'birdeye', 'shape': [128, 128, 3]}, 'camera': {'handler': 'camera'}}``;
    ``enabled`` lists the entries to build, in order.
    """

    def __init__(self, config: Mapping[str, Mapping[str, Any]], enabled: list[str]):
        if isinstance(enabled, str):
            raise ObservationConfigError(f"enabled observations must be a list of names, got the string {enabled!r}")
        unknown = [name for name in enabled if name not in config]
        if unknown:
            raise ObservationConfigError(
                f"enabled observation {unknown[0]!r} has no config"
                f"{nearest_hint(str(unknown[0]), list(config), 'configured observations')}")
        if len(set(enabled)) != len(enabled):
            raise ObservationConfigError(f"observation enabled twice in {list(enabled)}")
        self.handlers: list[Handler] = [build_handler(name, config[name]) for name in enabled]
        spaces: dict[str, gymnasium.spaces.Space] = {}
        for handler in self.handlers:
            for key, space in handler.observation_space().items():
                if key in spaces:
                    raise ObservationConfigError(f"observation key {key!r} of {handler.name!r} is produced twice")
                spaces[key] = space
        self.observation_space = gymnasium.spaces.Dict(spaces)

    def reset(self, world: World, ego_id: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset every handler for a new episode and return the first observations and info."""
        for handler in self.handlers:
            handler.reset(world, ego_id)
        return self.step(world, ego_id)

    def step(self, world: World, ego_id: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Observations of every enabled handler for the current world state, and merged info."""
        obs: dict[str, np.ndarray] = {}
        info: dict[str, Any] = {}
        for handler in self.handlers:
            handler_obs, handler_info = handler.step(world, ego_id)
            obs.update(handler_obs)
            info.update(handler_info)
        return obs, info
