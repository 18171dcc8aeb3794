"""Mapping agent actions to CARLA-style vehicle controls.

Discrete actions index a grid of (acceleration, steer) pairs, CarDreamer's default being 3
accelerations × 5 steering values; continuous actions are ``[acceleration, steer]`` boxes.
A positive acceleration becomes throttle (acc / 3), a negative one brake (-acc / 8).
"""
from __future__ import annotations

import carla
import numpy as np
from gymnasium import spaces

from cardreamer.config import ActionConfig

THROTTLE_PER_ACC = 1.0 / 3.0
BRAKE_PER_DECEL = 1.0 / 8.0


class ActionMapper:
    """The env's action space and its translation into ``carla.VehicleControl``."""

    def __init__(self, config: ActionConfig):
        self.config = config
        if config.discrete:
            acc, steer = np.meshgrid(config.discrete_acc, config.discrete_steer, indexing="ij")
            self.grid = np.stack([acc.ravel(), steer.ravel()], axis=1)
            self.space: spaces.Space = spaces.Discrete(len(self.grid))
        else:
            low = np.array([config.acc_range[0], config.steer_range[0]], dtype=np.float32)
            high = np.array([config.acc_range[1], config.steer_range[1]], dtype=np.float32)
            self.space = spaces.Box(low, high, dtype=np.float32)

    def acc_steer(self, action) -> tuple[float, float]:
        if self.config.discrete:
            acc, steer = self.grid[int(action)]
        else:
            acc, steer = np.clip(np.asarray(action, dtype=np.float64), self.space.low, self.space.high)
        return float(acc), float(steer)

    def to_control(self, action) -> carla.VehicleControl:
        acc, steer = self.acc_steer(action)
        throttle = float(np.clip(acc * THROTTLE_PER_ACC, 0.0, 1.0)) if acc > 0 else 0.0
        brake = float(np.clip(-acc * BRAKE_PER_DECEL, 0.0, 1.0)) if acc < 0 else 0.0
        return carla.VehicleControl(throttle=throttle, steer=float(np.clip(steer, -1, 1)), brake=brake)

    def nearest(self, acc: float, steer: float):
        """The action closest to a desired (acceleration, steer), e.g. for a scripted expert."""
        if not self.config.discrete:
            return np.clip(np.array([acc, steer], dtype=np.float32), self.space.low, self.space.high)
        acc_values = np.asarray(self.config.discrete_acc)
        steer_values = np.asarray(self.config.discrete_steer)
        ia = int(np.argmin(np.abs(acc_values - acc)))
        js = int(np.argmin(np.abs(steer_values - steer)))
        return ia * len(steer_values) + js
