"""A scripted expert: follows the ego's route, keeps its distance, obeys lights and signs, yields.

It reads privileged state through the world API (vehicles, their routes, light states), the way
CARLA's BasicAgent does, and outputs the action nearest to its desired (acceleration, steer).
"""
from __future__ import annotations

import numpy as np

from cardreamer.env import CarDreamerEnv
from cardreamer.world.api import TrafficLightStates

WHEELBASE = 2.9
MAX_STEER = np.radians(35.0)
LOOKAHEAD_DISTANCE = 40.0
PATH_HALF_WIDTH = 1.6
STOP_MARGIN = 3.0
"""Where the ego's centre should come to rest before a stop line (m): front bumper just short of it."""
IDM_STANDSTILL = 2.5
COMFORT_LATERAL_ACC = 2.0


class ExpertPolicy:
    """Route-following controller with IDM speed control; ``act(env)`` returns an env action."""

    def __init__(self, env: CarDreamerEnv):
        self.env = env
        self._route = None

    def _prepare(self) -> None:
        """Route s of every stop line (lights and stop signs) on the current route."""
        env = self.env
        route = env.task.route
        self._route = route
        lanes_on_route = set(route.lanes.tolist())
        self._stops: list[tuple[int, str, float]] = []
        for index, signal in enumerate(env.road_map.signals):
            if signal.lane in lanes_on_route:
                xy = env.road_map.lanes[signal.lane].position(signal.stop_s)
                s, lat = route.project(xy[None])
                if abs(lat[0]) < 2.0:
                    self._stops.append((index, signal.kind, float(s[0])))
        self._stopped_at: set[int] = set()
        self._stop_timer = 0.0
        self._residual = np.zeros(2)

    def act(self, env: CarDreamerEnv | None = None):
        env = env or self.env
        if env.task.route is not self._route:
            self._prepare()
        world, task = env.world, env.task
        route = task.route
        v = world.vehicles()
        i = v.row(env.ego_id)
        xy, yaw, speed = v.xy[i], float(v.yaw[i]), float(v.speed[i])
        s = task.route_s
        steer = self._steer(route, s, xy, yaw, speed)
        target = self._target_speed(route, s, env.config.task.desired_speed)
        gap, leader_speed = self._leader_gap(v, i, route, s)
        gap = min(gap, self._stop_gap(world.traffic_lights(), s, speed, world.dt))
        acc = self._idm(speed, target, gap, leader_speed)
        return self._quantize(env, acc, steer)

    def _quantize(self, env: CarDreamerEnv, acc: float, steer: float):
        """Nearest action, carrying the rounding error over to the next step (sigma-delta), so a
        coarse discrete grid still tracks the desired acceleration and steer on average."""
        if not env.config.env.action.discrete:
            return env.actions.nearest(acc, steer)
        want = np.array([acc, steer]) + self._residual
        action = env.actions.nearest(*want)
        self._residual = np.clip(want - np.array(env.actions.acc_steer(action)), -1.0, 1.0)
        return action

    def _steer(self, route, s, xy, yaw, speed) -> float:
        lookahead = max(4.0, 0.6 * speed + 3.0)
        target = route.position(min(s + lookahead, route.length))
        dx, dy = target - xy
        local_y = -np.sin(yaw) * dx + np.cos(yaw) * dy
        dist2 = max(dx * dx + dy * dy, 1e-6)
        angle = np.arctan(2.0 * WHEELBASE * local_y / dist2)
        return float(np.clip(angle / MAX_STEER, -1.0, 1.0))

    def _target_speed(self, route, s, desired) -> float:
        ahead = np.linspace(s, min(s + 25.0, route.length), 12)
        headings = route.heading_at(ahead)
        curvature = np.abs(np.diff(headings)) / np.maximum(np.diff(ahead), 1e-3)
        kappa = float(curvature.max()) if len(curvature) else 0.0
        curve_speed = np.sqrt(COMFORT_LATERAL_ACC / max(kappa, 1e-4))
        remaining = route.length - s
        return float(min(desired, curve_speed, max(remaining, 0.0) * 0.8 + 1.0))

    def _leader_gap(self, v, i, route, s) -> tuple[float, float]:
        """Distance to the nearest vehicle occupying the route ahead, and its speed along it."""
        others = np.flatnonzero(v.ids != v.ids[i])
        if not len(others):
            return np.inf, 0.0
        near = others[np.linalg.norm(v.xy[others] - v.xy[i], axis=1) < LOOKAHEAD_DISTANCE + 5]
        if not len(near):
            return np.inf, 0.0
        lo, hi = np.searchsorted(route.s, [s, s + LOOKAHEAD_DISTANCE])
        path = route.points[lo:hi + 1]
        if len(path) < 2:
            return np.inf, 0.0
        d = np.linalg.norm(v.xy[near][:, None, :] - path[None], axis=2)
        hit = d.min(axis=1) < PATH_HALF_WIDTH + v.extent[near, 1]
        if not hit.any():
            return np.inf, 0.0
        j = np.argmin(np.where(hit, d.argmin(axis=1), 1 << 30))
        path_s = route.s[lo + d[j].argmin()] - s
        gap = path_s - v.extent[i, 0] - v.extent[near[j], 0]
        heading = route.heading_at(s + path_s)
        leader_speed = float(v.velocity[near[j]] @ np.array([np.cos(heading), np.sin(heading)]))
        return max(gap, 0.0), max(leader_speed, 0.0)

    def _stop_gap(self, lights: TrafficLightStates, s, speed, dt) -> float:
        """Distance to the stop line the ego must stop at (red/yellow light, unserved stop sign)."""
        state_of = dict(zip(lights.signals.tolist(), lights.states.tolist()))
        gap = np.inf
        for index, kind, stop_s in self._stops:
            ahead = stop_s - s
            if ahead < -1.0 or ahead > LOOKAHEAD_DISTANCE:
                continue
            if kind == "traffic_light" and state_of.get(index, TrafficLightStates.GREEN) != TrafficLightStates.GREEN:
                braking = speed * speed / (2 * 4.0)
                if ahead > braking or state_of.get(index) == TrafficLightStates.RED:
                    gap = min(gap, ahead - STOP_MARGIN + IDM_STANDSTILL)
            elif kind == "stop_sign" and index not in self._stopped_at:
                if ahead < STOP_MARGIN + 2.0 and abs(speed) < 0.3:
                    self._stop_timer += dt
                    if self._stop_timer >= 1.0:
                        self._stopped_at.add(index)
                        self._stop_timer = 0.0
                        continue
                gap = min(gap, ahead - STOP_MARGIN + IDM_STANDSTILL)
        return max(gap, 0.0) if np.isfinite(gap) else np.inf

    @staticmethod
    def _idm(speed, target, gap, leader_speed) -> float:
        a_max, b, s0, headway = 2.0, 3.0, IDM_STANDSTILL, 1.2
        free = 1.0 - (max(speed, 0.0) / max(target, 0.1)) ** 4
        if not np.isfinite(gap):
            return a_max * free
        s_star = s0 + max(0.0, speed * headway + speed * (speed - leader_speed) / (2 * np.sqrt(a_max * b)))
        return a_max * (free - (s_star / max(gap, 0.1)) ** 2)
