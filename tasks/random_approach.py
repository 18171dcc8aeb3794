"""Task logic ``random_approach``: the same manoeuvre from an approach drawn per episode.

For junctions symmetric under quarter turns about ``params.center`` (CARLA coordinates), the
task's ego spawn, route and flows are written once for one approach; each episode rotates them
all by ``k`` quarter turns, ``k`` drawn from ``params.rotations`` (default [0, 1, 2, 3]).
A quarter turn maps (x, y) to (cx + (y - cy), cy - (x - cx)) and the yaw to yaw - 90 degrees.
"""
from __future__ import annotations

import numpy as np

from cardreamer.config import PoseSpec, TaskSpec
from cardreamer.config_loading import ConfigError
from cardreamer.roadmap import RoadMap
from cardreamer.task_runtime import RouteTask, register_task_logic
from cardreamer.world.api import World


def _turn(xy, center, k: int) -> tuple[float, float]:
    x, y = xy[0] - center[0], xy[1] - center[1]
    for _ in range(k):
        x, y = y, -x
    return float(x + center[0]), float(y + center[1])


def _turn_pose(pose: PoseSpec, center, k: int) -> PoseSpec:
    x, y = _turn((pose.x, pose.y), center, k)
    return PoseSpec(x=x, y=y, yaw=None if pose.yaw is None else pose.yaw - 90.0 * k)


def _turn_route(route, center, k: int):
    return route if route == "random" else [_turn(p, center, k) for p in route]


def rotated_spec(spec: TaskSpec, center, k: int) -> TaskSpec:
    """``spec`` with its ego spawn and route and its flows turned by ``k`` quarter turns."""
    spawn = spec.ego.spawn
    if spawn == "random":
        raise ConfigError(f"task {spec.name!r}: logic random_approach needs an explicit ego spawn pose")
    spawn = [_turn_pose(p, center, k) for p in spawn] if isinstance(spawn, list) else _turn_pose(spawn, center, k)
    ego = spec.ego.model_copy(update={"spawn": spawn, "route": _turn_route(spec.ego.route, center, k)})
    flows = [f.model_copy(update={"spawn": _turn_pose(f.spawn, center, k), "route": _turn_route(f.route, center, k)})
             for f in spec.traffic.flows]
    return spec.model_copy(update={"ego": ego, "traffic": spec.traffic.model_copy(update={"flows": flows})})


@register_task_logic("random_approach")
class RandomApproachTask(RouteTask):
    """A route task whose approach (a quarter-turn rotation of the written one) is drawn per episode."""

    def __init__(self, spec: TaskSpec, road_map: RoadMap):
        super().__init__(spec, road_map)
        center = spec.params.get("center", (0.0, 0.0))
        self.variants = {k: rotated_spec(spec, center, k) for k in spec.params.get("rotations", [0, 1, 2, 3])}
        self.base_spec = spec

    def reset(self, world: World, rng: np.random.Generator) -> int:
        keys = sorted(self.variants)
        self.approach = keys[int(rng.integers(len(keys)))]
        self.spec = self.variants[self.approach]
        return super().reset(world, rng)
