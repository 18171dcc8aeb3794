"""Message observation: what the nearest vehicles say about themselves (V2V intention sharing)."""
from __future__ import annotations

import gymnasium
import numpy as np
from pydantic import Field

from cardreamer.geometry import to_ego_frame
from cardreamer.observer.handler import Handler, HandlerConfig, register_handler
from cardreamer.observer.intentions import MANOEUVRES, classify_manoeuvre, route_ahead
from cardreamer.world.api import World

SLOT_FIELDS = ("present", "x", "y", "cos_heading", "sin_heading", "speed") + tuple(f"is_{m}" for m in MANOEUVRES)


class MessageConfig(HandlerConfig):
    neighbors: int = Field(6, ge=1, description="message slots: the K nearest vehicles")
    message_range: float = Field(50.0, gt=0, description="metres; farther vehicles are not heard")
    intent_horizon: float = Field(30.0, gt=0, description="metres of route that decide the manoeuvre")


@register_handler("message")
class MessageHandler(Handler):
    """float32 vector of ``neighbors`` slots of ``SLOT_FIELDS`` (10 values each), nearest first.

    Per slot: present (1, or 0 for an empty slot, all zeros), position (x forward, y right, m) and
    heading (cos, sin) relative to the ego, speed (m/s), and the one-hot intended manoeuvre
    (straight, left, right, lane_change) read from the vehicle's planned route.
    """

    Config = MessageConfig

    def observation_space(self) -> dict[str, gymnasium.spaces.Space]:
        size = self.config.neighbors * len(SLOT_FIELDS)
        return {self.name: gymnasium.spaces.Box(-np.inf, np.inf, (size,), np.float32)}

    def step(self, world: World, ego_id: int) -> tuple[dict[str, np.ndarray], dict]:
        c = self.config
        v = world.vehicles()
        ego = v.row(ego_id)
        distance = np.hypot(*(v.xy - v.xy[ego]).T)
        distance[ego] = np.inf
        order = np.argsort(distance, kind="stable")[:c.neighbors]
        order = order[distance[order] <= c.message_range]
        slots = np.zeros((c.neighbors, len(SLOT_FIELDS)), dtype=np.float32)
        if len(order):
            rel_heading = v.yaw[order] - v.yaw[ego]
            slots[:len(order), 0] = 1.0
            slots[:len(order), 1:3] = to_ego_frame(v.xy[order], v.xy[ego], float(v.yaw[ego]))
            slots[:len(order), 3] = np.cos(rel_heading)
            slots[:len(order), 4] = np.sin(rel_heading)
            slots[:len(order), 5] = v.speed[order]
            for slot, row in enumerate(order):
                window = route_ahead(world, int(v.ids[row]), c.intent_horizon)
                if window is not None:
                    slots[slot, 6 + classify_manoeuvre(world.road_map, *window)] = 1.0
        return {self.name: slots.reshape(-1)}, {f"{self.name}_ids": v.ids[order]}
