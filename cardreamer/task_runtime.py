"""A task at run time: a list of parts that set up each episode, act after each tick, and
report facts that the task's reward terms and terminal settings score.

Every task has three core parts, configured by the task's own sections: ``lights``
(``task.lights``: traffic-light timing per episode), ``route`` (``task.ego``: the ego's spawn
and planned route, its progress and the facts of ``ROUTE_FACTS``) and ``traffic``
(``task.traffic``: background vehicles and flows). A task file adds more under ``parts:``, each
with its own params, e.g. ``parts: {lead_vehicle: {lead_distance: 20}}``.

A part is a ``TaskPart`` subclass registered in ``TASK_PARTS``:

    @TASK_PARTS.register("close_calls")
    class CloseCalls(TaskPart):
        class Params(PartParams):
            radius: float = 5.0
        provides = frozenset({"close_call"})

        def observe(self, ctx: StepContext) -> None:
            ctx.facts["close_call"] = ...
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from cardreamer.config import BehaviorSpec, FlowSpec, PoseSpec, TaskSpec
from cardreamer.registry import Registry
from cardreamer.rewards import (
    REWARD_TERMS,
    ROUTE_FACTS,
    StepContext,
    enabled,
    terminal_checks,
    terminal_defaults,
)
from cardreamer.roadmap import MapError, RoadMap, Route, plan_route_via, random_route
from cardreamer.roadmap.polyline import project_onto_polyline
from cardreamer.world.api import Behavior, Pose, World

DESTINATION_TOLERANCE = 3.0
"""The destination counts as reached within this many metres of the route's end."""


class PartParams(BaseModel):
    """Base of a part's params: unknown keys, NaN and infinities are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TaskPart:
    """One piece of a task. Override the hooks it needs; declare the facts ``observe`` adds.

    ``self.task`` is the running Task (its road map, spec, route and ego id); ``self.params``
    is this part's validated ``Params``.
    """

    Params: ClassVar[type[PartParams]] = PartParams
    provides: ClassVar[frozenset[str]] = frozenset()
    """Names of the facts ``observe`` puts in ``ctx.facts`` every step."""

    def __init__(self, params: PartParams, task: Task):
        self.params = params
        self.task = task

    @classmethod
    def spec_errors(cls, spec: TaskSpec, params: PartParams) -> list[tuple[tuple[str | int, ...], str]]:
        """Problems of the rest of the task spec for this part, as (location in ``task``, message)."""
        return []

    def episode_spec(self, spec: TaskSpec, rng: np.random.Generator) -> TaskSpec:
        """The spec this episode runs with (before any part resets); by default unchanged."""
        return spec

    def reset(self, world: World, rng: np.random.Generator) -> None:
        """Set up this part's share of an episode."""

    def after_tick(self, world: World) -> None:
        """Act after each world tick (before the step is scored)."""

    def observe(self, ctx: StepContext) -> None:
        """Add this part's facts to ``ctx.facts``."""

    def metrics(self, reason: str | None) -> dict[str, Any]:
        """This part's episode metrics, reported in ``info`` when the episode ends."""
        return {}


TASK_PARTS: Registry[type[TaskPart]] = Registry("task part")


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


def pose_on_lane(road_map: RoadMap, spec: PoseSpec) -> tuple[Pose, int, float]:
    """A pose spec on the lane under it: the pose (yaw from the lane if not given), lane and s."""
    lane, s, _ = road_map.locate(np.array([spec.x, spec.y]))
    yaw = np.radians(spec.yaw) if spec.yaw is not None else float(road_map.lanes[lane].heading_at(s))
    return Pose(spec.x, spec.y, float(yaw)), lane, s


# ----------------------------------------------------------------------------- core parts
class LightsPart(TaskPart):
    """Core part ``lights``: traffic-light timing (``task.lights``), drawn per episode."""

    def reset(self, world: World, rng: np.random.Generator) -> None:
        lights = self.task.spec.lights
        world.set_traffic_light_timing(sample(lights.green, rng), lights.yellow, sample(lights.red, rng))


class RoutePart(TaskPart):
    """Core part ``route``: the ego on its spawn pose with a planned route (``task.ego``), its
    progress along the route, and the facts of ``ROUTE_FACTS``."""

    provides = ROUTE_FACTS

    def reset(self, world: World, rng: np.random.Generator) -> None:
        pose, lane, s = self._ego_pose(rng)
        self.task.ego_pose = pose
        self.task.route = self._ego_route(pose, lane, s, rng)
        self.task.ego_id = world.spawn_vehicle(pose, role="ego", route=self.task.route, speed=self.task.spec.ego.speed)
        self.route_s = 0.0
        self.step_count = 0
        self.stalled_for = 0.0
        self.speeds: list[float] = []

    def _ego_pose(self, rng: np.random.Generator) -> tuple[Pose, int, float]:
        spawn = self.task.spec.ego.spawn
        road_map = self.task.road_map
        if spawn == "random":
            points = road_map.spawn_points()
            i = int(rng.integers(len(points.xy)))
            x, y = points.xy[i]
            return Pose(float(x), float(y), float(points.yaw[i])), int(points.lane[i]), float(points.s[i])
        if isinstance(spawn, list):
            spawn = spawn[int(rng.integers(len(spawn)))]
        return pose_on_lane(road_map, spawn)

    def _ego_route(self, pose: Pose, lane: int, s: float, rng: np.random.Generator) -> Route:
        ego = self.task.spec.ego
        if ego.route == "random":
            return random_route(self.task.road_map, rng, lane, s, ego.route_length)
        return plan_route_via(self.task.road_map, [(pose.x, pose.y), *ego.route])

    def context(self, world: World) -> StepContext:
        """Measure the ego after a tick: the step's context with the route facts."""
        ego_id, route = self.task.ego_id, self.task.route
        v = world.vehicles()
        i = v.row(ego_id)
        xy, yaw, speed = v.xy[i], float(v.yaw[i]), float(v.speed[i])
        lo, hi = np.searchsorted(route.s, [self.route_s - 5.0, self.route_s + 20.0])
        hi = max(hi, lo + 2)
        s_local, lateral = project_onto_polyline(route.points[lo:hi], route.s[lo:hi], xy[None])
        s_prev, self.route_s = self.route_s, max(self.route_s, float(s_local[0]))
        heading_error = float(np.angle(np.exp(1j * (yaw - route.heading_at(self.route_s)))))
        collisions = world.collisions(ego_id)
        self.step_count += 1
        self.stalled_for = self.stalled_for + world.dt if abs(speed) < 0.1 else 0.0
        self.speeds.append(speed)
        off_road = bool(world.is_off_road(ego_id))
        return StepContext(
            world=world, ego_id=ego_id, route=route, desired_speed=self.task.spec.desired_speed, dt=world.dt,
            step=self.step_count, speed=speed, velocity=v.velocity[i].copy(), route_s=self.route_s,
            route_s_prev=s_prev, lateral_offset=float(lateral[0]), heading_error=heading_error,
            collided=bool(collisions), collision_speed=max((c.relative_speed for c in collisions), default=0.0),
            lane_invasions=len(world.lane_invasions(ego_id)), off_road=off_road,
            reached_destination=self.route_s >= route.length - DESTINATION_TOLERANCE, stalled_for=self.stalled_for)

    def metrics(self, reason: str | None) -> dict[str, Any]:
        route = self.task.route
        return {
            "success": reason == "destination",
            "collision": reason == "collision",
            "route_completion": float(min(self.route_s / max(route.length - DESTINATION_TOLERANCE, 1e-6), 1.0)),
            "mean_speed": float(np.mean(self.speeds)) if self.speeds else 0.0,
            "episode_length": self.step_count,
        }


class TrafficPart(TaskPart):
    """Core part ``traffic``: background vehicles and flows (``task.traffic``)."""

    def reset(self, world: World, rng: np.random.Generator) -> None:
        self.rng = rng
        traffic, pose = self.task.spec.traffic, self.task.ego_pose
        if traffic.background and traffic.near_ego:
            self._spawn_near_ego(world, pose, rng)
        elif traffic.background:
            world.spawn_traffic(traffic.background, to_behavior(traffic.behavior, rng),
                                exclude_near=np.array([pose.x, pose.y]), exclude_radius=traffic.exclude_radius)
        self.flows = [_FlowState(flow, self._flow_route(flow)) for flow in traffic.flows]

    def _spawn_near_ego(self, world: World, pose: Pose, rng: np.random.Generator) -> None:
        """Background vehicles at random spawn points between ``exclude_radius`` and ``near_ego`` metres
        from the ego (for large maps such as CARLA towns, where traffic spread over the whole map
        would rarely meet the ego)."""
        traffic, road_map = self.task.spec.traffic, self.task.road_map
        points = road_map.spawn_points()
        distance = np.linalg.norm(points.xy - np.array([pose.x, pose.y]), axis=1)
        candidates = np.flatnonzero((distance > traffic.exclude_radius) & (distance < traffic.near_ego))
        placed = 0
        for k in rng.permutation(candidates).tolist():
            if placed >= traffic.background:
                break
            x, y = points.xy[k]
            route = random_route(road_map, rng, int(points.lane[k]), float(points.s[k]), 400.0)
            actor = world.try_spawn_vehicle(Pose(float(x), float(y), float(points.yaw[k])), route=route,
                                            behavior=to_behavior(traffic.behavior, rng))
            placed += actor is not None

    def _flow_route(self, flow: FlowSpec) -> Route | None:
        if flow.route == "random":
            return None
        return plan_route_via(self.task.road_map, [(flow.spawn.x, flow.spawn.y), *flow.route])

    def after_tick(self, world: World) -> None:
        """Spawn flow vehicles whose entry gap has opened."""
        if not self.flows:
            return
        vehicles = world.vehicles()
        for flow in self.flows:
            flow.spawn_if_free(world, vehicles, self.task.road_map, self.rng)


class _FlowState:
    """One traffic flow: spawns a vehicle at its entry whenever the drawn gap is free.

    The gap is free space, bumper to bumper (not centre to centre), drawn anew for each vehicle.
    """

    def __init__(self, spec: FlowSpec, route: Route | None):
        self.spec = spec
        self.route = route
        self.spawned: list[int] = []
        self.next_gap: float | None = None

    def spawn_if_free(self, world: World, vehicles, road_map: RoadMap, rng: np.random.Generator) -> None:
        spec = self.spec
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
        pose, lane, s = pose_on_lane(road_map, spec.spawn)
        route = self.route or random_route(road_map, rng, lane, s, 400.0)
        actor = world.try_spawn_vehicle(pose, route=route, speed=spec.speed,
                                        behavior=to_behavior(spec.behavior, rng, on_route_end="destroy"))
        if actor is not None:
            self.spawned.append(actor)
            self.next_gap = float(rng.uniform(*spec.gap))


CORE_PARTS: dict[str, type[TaskPart]] = {"lights": LightsPart, "route": RoutePart, "traffic": TrafficPart}
"""The parts of every task, in the order they reset (configured by task.lights, task.ego, task.traffic)."""


def provided_facts(spec: TaskSpec) -> dict[str, str]:
    """Every fact the task's parts provide, and the part providing it."""
    found = {fact: "route" for fact in ROUTE_FACTS}
    for name in spec.parts:
        found.update(dict.fromkeys(TASK_PARTS[name].provides, name))
    return found


# ----------------------------------------------------------------------------- the task
class Task:
    """A task's parts at run time: reset, after-tick and scoring, in part order (core parts first)."""

    def __init__(self, spec: TaskSpec, road_map: RoadMap):
        self.base_spec = self.spec = spec
        self.road_map = road_map
        self.terminal_cfg = {**terminal_defaults(), **spec.terminal}
        self._checks = [(s.reason, s.check, self.terminal_cfg[n]) for n, s in terminal_checks()
                        if enabled(self.terminal_cfg[n])]
        self._terms = [(name, REWARD_TERMS[name], setting) for name, setting in spec.rewards.items()]
        self.ego_id = -1
        self.ego_pose: Pose | None = None
        self.route: Route | None = None
        self.parts: dict[str, TaskPart] = {name: cls(cls.Params(), self) for name, cls in CORE_PARTS.items()}
        self.parts.update((name, TASK_PARTS[name](params, self)) for name, params in spec.parts.items())
        self._route_part: RoutePart = self.parts["route"]  # type: ignore[assignment]

    @property
    def route_s(self) -> float:
        return self._route_part.route_s

    def part(self, name: str) -> TaskPart:
        """A part of this task by name (``route``, ``lead_vehicle``, ...)."""
        return self.parts[name]

    def reset(self, world: World, rng: np.random.Generator) -> int:
        """Set up one episode; returns the ego's actor id."""
        spec = self.base_spec
        for part in self.parts.values():
            spec = part.episode_spec(spec, rng)
        self.spec = spec
        for part in self.parts.values():
            part.reset(world, rng)
        return self.ego_id

    def after_tick(self, world: World) -> None:
        for part in self.parts.values():
            part.after_tick(world)

    def evaluate(self, world: World) -> tuple[float, dict[str, float], str | None, StepContext]:
        """Reward, per-term rewards, terminal reason (None if the episode goes on), and the context."""
        ctx = self.context(world)
        terms = {name: term(ctx, setting) * setting.scale for name, term, setting in self._terms}
        reason = next((reason for reason, check, value in self._checks if check(ctx, value)), None)
        return float(sum(terms.values())), terms, reason, ctx

    def context(self, world: World) -> StepContext:
        """The step's facts: the route part's, then each other part's (checked against ``provides``)."""
        ctx = self._route_part.context(world)
        for name, part in self.parts.items():
            part.observe(ctx)
            missing = part.provides - ROUTE_FACTS - ctx.facts.keys()
            if missing:
                raise RuntimeError(f"task part {name!r} declares facts it did not provide: {', '.join(sorted(missing))}")
        return ctx

    def episode_metrics(self, reason: str | None) -> dict[str, Any]:
        """Metrics reported in ``info`` when the episode ends."""
        metrics: dict[str, Any] = {}
        for part in self.parts.values():
            metrics.update(part.metrics(reason))
        return metrics


__all__ = ["CORE_PARTS", "TASK_PARTS", "MapError", "PartParams", "Task", "TaskPart", "pose_on_lane",
           "provided_facts", "to_behavior"]
