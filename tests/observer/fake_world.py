"""A static test double of the World API on a real RoadMap: hand-placed vehicles, routes, lights.

Vehicles stay where they are put unless a test moves them (``move``); ``route_progress`` is the
projection of a vehicle's position onto its route, as the real backends report it.
"""
from __future__ import annotations

import carla
import numpy as np

from cardreamer.roadmap import MapError, RoadMap, Route, random_route
from cardreamer.world.api import (
    Behavior,
    CollisionEvent,
    LaneInvasionEvent,
    Pose,
    TrafficLightStates,
    VehicleArrays,
    World,
)


class StaticWorld(World):
    def __init__(self, road_map: RoadMap, dt: float = 0.1):
        self.road_map = road_map
        self.dt = dt
        self.frame = 0
        self.reset(0)

    # ------------------------------------------------------------------ World API
    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self._ids: list[int] = []
        self._pose: dict[int, Pose] = {}
        self._speed: dict[int, float] = {}
        self._extent: dict[int, tuple[float, float]] = {}
        self._role: dict[int, str] = {}
        self._routes: dict[int, Route | None] = {}
        self._progress: dict[int, float] = {}  # projection onto the route, cached until the vehicle moves
        self._next_id = 100
        self._snapshot: VehicleArrays | None = None
        lights = [i for i, s in enumerate(self.road_map.signals) if s.kind == "traffic_light"]
        self.light_signals = np.array(lights, dtype=int)
        self.light_states = np.full(len(lights), TrafficLightStates.GREEN)
        self.collision_events: dict[int, list[CollisionEvent]] = {}
        self.controls: dict[int, carla.VehicleControl] = {}

    def spawn_vehicle(self, pose: Pose, *, role: str = "background", route: Route | None = None,
                      behavior: Behavior | None = None, speed: float = 0.0,
                      extent: tuple[float, float] = (2.4, 1.05)) -> int:
        actor_id = self._next_id
        self._next_id += 1
        self._ids.append(actor_id)
        self._pose[actor_id] = pose
        self._speed[actor_id] = speed
        self._extent[actor_id] = extent
        self._role[actor_id] = role
        self._routes[actor_id] = route
        self._progress.pop(actor_id, None)
        self._snapshot = None
        return actor_id

    def spawn_traffic(self, count: int, behavior: Behavior | None = None,
                      exclude_near: np.ndarray | None = None, exclude_radius: float = 0.0) -> list[int]:
        points = self.road_map.spawn_points(spacing=8.0)
        keep = np.ones(len(points.xy), dtype=bool)
        if exclude_near is not None:
            keep = np.hypot(*(points.xy - exclude_near).T) > exclude_radius
        chosen = self.rng.permutation(np.flatnonzero(keep))[:count]
        return [self.spawn_on_lane(int(points.lane[i]), float(points.s[i]), speed=8.0) for i in chosen]

    def destroy(self, actor_id: int) -> None:
        self._ids.remove(actor_id)
        self._snapshot = None

    def apply_control(self, actor_id: int, control: carla.VehicleControl) -> None:
        self.controls[actor_id] = control

    def tick(self) -> int:
        self.frame += 1
        return self.frame

    def vehicles(self) -> VehicleArrays:
        if self._snapshot is None:
            ids = np.array(self._ids, dtype=np.int64)
            poses = [self._pose[i] for i in self._ids]
            yaw = np.array([p.yaw for p in poses])
            speed = np.array([self._speed[i] for i in self._ids])
            self._snapshot = VehicleArrays(
                ids=ids, xy=np.array([[p.x, p.y] for p in poses]).reshape(-1, 2), yaw=yaw, speed=speed,
                velocity=np.stack([np.cos(yaw), np.sin(yaw)], -1) * speed[:, None],
                acceleration=np.zeros((len(ids), 2)),
                extent=np.array([self._extent[i] for i in self._ids]).reshape(-1, 2),
                is_ego=np.array([self._role[i] == "ego" for i in self._ids], dtype=bool))
        return self._snapshot

    def route_of(self, actor_id: int) -> Route | None:
        return self._routes[actor_id]

    def route_progress(self, actor_id: int) -> float:
        if actor_id not in self._progress:
            route, pose = self._routes[actor_id], self._pose[actor_id]
            self._progress[actor_id] = 0.0 if route is None else float(route.project(np.array([[pose.x, pose.y]]))[0][0])
        return self._progress[actor_id]

    def traffic_lights(self) -> TrafficLightStates:
        return TrafficLightStates(self.light_signals, self.light_states, np.zeros(len(self.light_signals)))

    def set_traffic_light_timing(self, green: float, yellow: float, red: float | None = None,
                                 junction_id: int | None = None) -> None:
        self.timing = (green, yellow, red, junction_id)

    def collisions(self, actor_id: int) -> list[CollisionEvent]:
        return self.collision_events.get(actor_id, [])

    def lane_invasions(self, actor_id: int) -> list[LaneInvasionEvent]:
        return []

    def is_off_road(self, actor_id: int) -> bool:
        pose = self._pose[actor_id]
        try:
            self.road_map.locate(np.array([pose.x, pose.y]), max_distance=0.0)
        except MapError:
            return True
        return False

    def close(self) -> None:
        self._ids.clear()

    # ------------------------------------------------------------------ test helpers
    def spawn_on_lane(self, lane_index: int, s: float, lateral: float = 0.0, role: str = "background",
                      route_length: float = 80.0, speed: float = 0.0, route: Route | None = None) -> int:
        """A vehicle on a lane at arc length ``s``, heading along it, with a route ahead of it."""
        lane = self.road_map.lanes[lane_index]
        x, y = lane.position(s, lateral)
        if route is None:
            route = random_route(self.road_map, self.rng, lane_index, s, route_length)
        return self.spawn_vehicle(Pose(float(x), float(y), float(lane.heading_at(s))), role=role, route=route,
                                  speed=speed)

    def move(self, actor_id: int, pose: Pose) -> None:
        self._pose[actor_id] = pose
        self._progress.pop(actor_id, None)
        self._snapshot = None

    def set_light_state(self, signal_index: int, state: int) -> None:
        self.light_states[np.flatnonzero(self.light_signals == signal_index)] = state
