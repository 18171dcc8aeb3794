"""State observation: the ego's speed and pose relative to its route, and the route ahead."""
from __future__ import annotations

import gymnasium
import numpy as np
from pydantic import Field

from cardreamer.geometry import to_ego_frame
from cardreamer.observer.handler import Handler, HandlerConfig, register_handler
from cardreamer.roadmap.polyline import project_onto_polyline
from cardreamer.world.api import World


class StateConfig(HandlerConfig):
    waypoints: int = Field(10, ge=0, description="route points ahead included")
    waypoint_spacing: float = Field(2.0, gt=0, description="metres between them")


@register_handler("state")
class StateHandler(Handler):
    """float32 [speed (m/s), heading error (rad, ego yaw minus route heading, positive = turned
    right), lateral offset (m, positive = right of the route), then x, y (ego frame: forward,
    right) of the route points 1..N x spacing metres ahead]. Without a route, all but speed are 0."""

    Config = StateConfig

    def observation_space(self) -> dict[str, gymnasium.spaces.Space]:
        return {self.name: gymnasium.spaces.Box(-np.inf, np.inf, (3 + 2 * self.config.waypoints,), np.float32)}

    def step(self, world: World, ego_id: int) -> tuple[dict[str, np.ndarray], dict]:
        c = self.config
        v = world.vehicles()
        ego = v.row(ego_id)
        xy, yaw = v.xy[ego], float(v.yaw[ego])
        out = np.zeros(3 + 2 * c.waypoints, dtype=np.float32)
        out[0] = v.speed[ego]
        route = world.route_of(ego_id)
        if route is not None and len(route.points) >= 2:
            s = world.route_progress(ego_id)
            lo, hi = np.searchsorted(route.s, [s - 5.0, s + 5.0])
            lo, hi = max(min(int(lo), len(route.s) - 2), 0), max(int(hi) + 1, int(lo) + 2)
            s_near, lateral = project_onto_polyline(route.points[lo:hi], route.s[lo:hi], xy[None])
            out[1] = np.angle(np.exp(1j * (yaw - route.heading_at(s_near[0]))))
            out[2] = lateral[0]
            ahead = route.position(s_near[0] + c.waypoint_spacing * np.arange(1, c.waypoints + 1))
            out[3:] = to_ego_frame(ahead, xy, yaw).reshape(-1)
        return {self.name: out}, {}
