"""Task logic: what happens at reset, after each tick, and how a step is scored.

``RouteTask`` is the logic every built-in task starts from: it spawns the ego on its spawn pose
with a planned route, fills the world with background traffic and flows, tracks progress along
the route, and scores each step with the reward terms the task's YAML names. Tasks that need more
(an overtake counter, a stop-sign timer) subclass it and register under a name that their YAML
``logic:`` key selects.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cardreamer.config import BehaviorSpec, FlowSpec, PoseSpec, TaskSpec
from cardreamer.rewards import REWARD_TERMS, TERMINAL_CHECKS, TERMINAL_DEFAULTS, StepContext
from cardreamer.roadmap import MapError, RoadMap, Route, plan_route_via, random_route
from cardreamer.roadmap.polyline import project_onto_polyline
from cardreamer.world.api import Behavior, Pose, World

TASK_LOGIC: dict[str, type[RouteTask]] = {}

DESTINATION_TOLERANCE = 3.0
"""The destination counts as reached within this many metres of the route's end."""


def register_task_logic(name: str) -> Callable[[type[RouteTask]], type[RouteTask]]:
    """Register a RouteTask subclass under ``name`` (referenced by a task YAML's ``logic:``)."""
    def decorate(cls: type[RouteTask]) -> type[RouteTask]:
        TASK_LOGIC[name] = cls
        return cls
    return decorate


def to_behavior(spec: BehaviorSpec, rng: np.random.Generator, on_route_end: str = "continue") -> Behavior:
    speed = spec.desired_speed
    if isinstance(speed, tuple):
        speed = float(rng.uniform(*speed))
    return Behavior(desired_speed=float(speed), ignore_lights=spec.ignore_lights, ignore_signs=spec.ignore_signs,
                    ignore_vehicles=spec.ignore_vehicles, auto_lane_change=spec.auto_lane_change,
                    min_gap=spec.min_gap, time_headway=spec.time_headway, politeness=spec.politeness,
                    on_route_end=on_route_end)


def sample(value: float | tuple[float, float] | None, rng: np.random.Generator) -> float | None:
    return float(rng.uniform(*value)) if isinstance(value, tuple) else value


@register_task_logic("route")
class RouteTask:
    """Drive the planned route to its end, in traffic, scored by the task's reward terms."""

    def __init__(self, spec: TaskSpec, road_map: RoadMap):
        self.spec = spec
        self.road_map = road_map
        self.terminal_cfg = {**TERMINAL_DEFAULTS, **spec.terminal}
        self.ego_id = -1
        self.route: Route | None = None

    # ------------------------------------------------------------------ reset
    def reset(self, world: World, rng: np.random.Generator) -> int:
        """Set up one episode; returns the ego's actor id."""
        self.rng = rng
        lights = self.spec.lights
        world.set_traffic_light_timing(sample(lights.green, rng), lights.yellow, sample(lights.red, rng))
        pose, lane, s = self._ego_pose(rng)
        self.route = self._ego_route(pose, lane, s, rng)
        self.ego_id = world.spawn_vehicle(pose, role="ego", route=self.route, speed=self.spec.ego.speed)
        traffic = self.spec.traffic
        if traffic.background and traffic.near_ego:
            self._spawn_near_ego(world, pose, rng)
        elif traffic.background:
            world.spawn_traffic(traffic.background, to_behavior(traffic.behavior, rng),
                                exclude_near=np.array([pose.x, pose.y]), exclude_radius=traffic.exclude_radius)
        self.flows = [_FlowState(flow, self._flow_route(flow, rng)) for flow in traffic.flows]
        self.route_s = 0.0
        self.step_count = 0
        self.stalled_for = 0.0
        self.speeds: list[float] = []
        return self.ego_id

    def _spawn_near_ego(self, world: World, pose: Pose, rng: np.random.Generator) -> None:
        """Background vehicles at random spawn points between ``exclude_radius`` and ``near_ego`` metres
        from the ego (for large maps such as CARLA towns, where traffic spread over the whole map
        would rarely meet the ego)."""
        traffic = self.spec.traffic
        points = self.road_map.spawn_points()
        distance = np.linalg.norm(points.xy - np.array([pose.x, pose.y]), axis=1)
        candidates = np.flatnonzero((distance > traffic.exclude_radius) & (distance < traffic.near_ego))
        placed = 0
        for k in rng.permutation(candidates).tolist():
            if placed >= traffic.background:
                break
            x, y = points.xy[k]
            route = random_route(self.road_map, rng, int(points.lane[k]), float(points.s[k]), 400.0)
            actor = world.try_spawn_vehicle(Pose(float(x), float(y), float(points.yaw[k])), route=route,
                                            behavior=to_behavior(traffic.behavior, rng))
            placed += actor is not None

    def _ego_pose(self, rng: np.random.Generator) -> tuple[Pose, int, float]:
        spawn = self.spec.ego.spawn
        if spawn == "random":
            points = self.road_map.spawn_points()
            i = int(rng.integers(len(points.xy)))
            x, y = points.xy[i]
            return Pose(float(x), float(y), float(points.yaw[i])), int(points.lane[i]), float(points.s[i])
        if isinstance(spawn, list):
            spawn = spawn[int(rng.integers(len(spawn)))]
        return self.pose_on_lane(spawn)

    def pose_on_lane(self, spec: PoseSpec) -> tuple[Pose, int, float]:
        lane, s, _ = self.road_map.locate(np.array([spec.x, spec.y]))
        yaw = np.radians(spec.yaw) if spec.yaw is not None else float(self.road_map.lanes[lane].heading_at(s))
        return Pose(spec.x, spec.y, float(yaw)), lane, s

    def _ego_route(self, pose: Pose, lane: int, s: float, rng: np.random.Generator) -> Route:
        route = self.spec.ego.route
        if route == "random":
            return random_route(self.road_map, rng, lane, s, self.spec.ego.route_length)
        return plan_route_via(self.road_map, [(pose.x, pose.y), *route])

    def _flow_route(self, flow: FlowSpec, rng: np.random.Generator) -> Route | None:
        if flow.route == "random":
            return None
        return plan_route_via(self.road_map, [(flow.spawn.x, flow.spawn.y), *flow.route])

    # ------------------------------------------------------------------ step
    def after_tick(self, world: World) -> None:
        """Spawn flow vehicles whose entry gap has opened."""
        if not self.flows:
            return
        vehicles = world.vehicles()
        for flow in self.flows:
            flow.spawn_if_free(world, vehicles, self)

    def evaluate(self, world: World) -> tuple[float, dict[str, float], str | None, StepContext]:
        """Reward, per-term rewards, terminal reason (None if the episode goes on), and the context."""
        ctx = self.context(world)
        terms = {name: REWARD_TERMS[name](ctx) * scale for name, scale in self.spec.rewards.items()}
        reason = None
        for check in TERMINAL_CHECKS:
            reason = check(ctx, self.terminal_cfg)
            if reason:
                break
        return float(sum(terms.values())), terms, reason, ctx

    def context(self, world: World) -> StepContext:
        v = world.vehicles()
        i = v.row(self.ego_id)
        xy, yaw, speed = v.xy[i], float(v.yaw[i]), float(v.speed[i])
        route = self.route
        lo, hi = np.searchsorted(route.s, [self.route_s - 5.0, self.route_s + 20.0])
        hi = max(hi, lo + 2)
        s_local, lateral = project_onto_polyline(route.points[lo:hi], route.s[lo:hi], xy[None])
        s_prev, self.route_s = self.route_s, max(self.route_s, float(s_local[0]))
        heading_error = float(np.angle(np.exp(1j * (yaw - route.heading_at(self.route_s)))))
        collisions = world.collisions(self.ego_id)
        self.step_count += 1
        self.stalled_for = self.stalled_for + world.dt if abs(speed) < 0.1 else 0.0
        self.speeds.append(speed)
        off_road = bool(getattr(world, "is_off_road", lambda _id: False)(self.ego_id))
        ctx = StepContext(
            world=world, ego_id=self.ego_id, route=route, desired_speed=self.spec.desired_speed, dt=world.dt,
            step=self.step_count, speed=speed, velocity=v.velocity[i].copy(), route_s=self.route_s,
            route_s_prev=s_prev, lateral_offset=float(lateral[0]), heading_error=heading_error,
            collided=bool(collisions), collision_speed=max((c.relative_speed for c in collisions), default=0.0),
            lane_invasions=len(world.lane_invasions(self.ego_id)), off_road=off_road,
            reached_destination=self.route_s >= route.length - DESTINATION_TOLERANCE,
            params=self.spec.params, extra={"stalled_for": self.stalled_for})
        self.add_task_facts(ctx)
        return ctx

    def add_task_facts(self, ctx: StepContext) -> None:
        """Hook for subclasses: add task-specific facts to ``ctx.extra`` before scoring."""

    def episode_metrics(self, reason: str | None) -> dict[str, Any]:
        """Metrics reported in ``info`` when the episode ends."""
        return {
            "success": reason == "destination",
            "collision": reason == "collision",
            "route_completion": float(min(self.route_s / max(self.route.length - DESTINATION_TOLERANCE, 1e-6), 1.0)),
            "mean_speed": float(np.mean(self.speeds)) if self.speeds else 0.0,
            "episode_length": self.step_count,
        }


class _FlowState:
    """One traffic flow: spawns a vehicle at its entry whenever the drawn gap is free.

    The gap is free space, bumper to bumper (not centre to centre), drawn anew for each vehicle.
    """

    def __init__(self, spec: FlowSpec, route: Route | None):
        self.spec = spec
        self.route = route
        self.spawned: list[int] = []
        self.next_gap: float | None = None

    def spawn_if_free(self, world: World, vehicles, task: RouteTask) -> None:
        spec = self.spec
        rng = task.rng
        if self.next_gap is None:
            self.next_gap = float(rng.uniform(*spec.gap))
        alive = set(vehicles.ids.tolist())
        self.spawned = [v for v in self.spawned if v in alive]
        if len(self.spawned) >= spec.max_vehicles:
            return
        if len(vehicles.ids):
            # free space: from the nearest vehicle's box to a newcomer's (taken to be as long) at the entry
            distance = np.linalg.norm(vehicles.xy - np.array([spec.spawn.x, spec.spawn.y]), axis=1)
            k = int(np.argmin(distance))
            if distance[k] - 2.0 * vehicles.extent[k, 0] < self.next_gap:
                return
        pose, lane, s = task.pose_on_lane(spec.spawn)
        route = self.route or random_route(task.road_map, rng, lane, s, 400.0)
        actor = world.try_spawn_vehicle(pose, route=route, speed=spec.speed,
                                        behavior=to_behavior(spec.behavior, rng, on_route_end="destroy"))
        if actor is not None:
            self.spawned.append(actor)
            self.next_gap = float(rng.uniform(*spec.gap))


def make_task_logic(spec: TaskSpec, road_map: RoadMap) -> RouteTask:
    if spec.logic not in TASK_LOGIC:
        from cardreamer.config_loading import ConfigError, nearest_hint
        raise ConfigError(f"task {spec.name!r}: unknown logic {spec.logic!r}{nearest_hint(spec.logic, sorted(TASK_LOGIC))}")
    return TASK_LOGIC[spec.logic](spec, road_map)


__all__ = ["TASK_LOGIC", "MapError", "RouteTask", "make_task_logic", "register_task_logic"]
