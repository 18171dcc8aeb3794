"""Part ``random_approach``: the same manoeuvre from an approach drawn per episode.

For junctions symmetric under quarter turns about ``center`` (CARLA coordinates), the task's ego
spawn, route and flows are written once for one approach; each episode rotates them all by ``k``
quarter turns, ``k`` drawn from ``rotations`` (default [0, 1, 2, 3]). A quarter turn maps (x, y)
to (cx + (y - cy), cy - (x - cx)) and the yaw to yaw - 90 degrees. It provides no facts.
"""
from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from cardreamer.config import PoseSpec, TaskSpec
from cardreamer.task_runtime import TASK_PARTS, PartParams, Task, TaskPart


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
    spawn = [_turn_pose(p, center, k) for p in spawn] if isinstance(spawn, list) else _turn_pose(spawn, center, k)
    ego = spec.ego.model_copy(update={"spawn": spawn, "route": _turn_route(spec.ego.route, center, k)})
    flows = [f.model_copy(update={"spawn": _turn_pose(f.spawn, center, k), "route": _turn_route(f.route, center, k)})
             for f in spec.traffic.flows]
    return spec.model_copy(update={"ego": ego, "traffic": spec.traffic.model_copy(update={"flows": flows})})


@TASK_PARTS.register("random_approach")
class RandomApproach(TaskPart):
    """The task's approach (a quarter-turn rotation of the written one), drawn per episode."""

    class Params(PartParams):
        center: tuple[float, float] = (0.0, 0.0)
        rotations: list[Annotated[int, Field(ge=0, le=3)]] = Field([0, 1, 2, 3], min_length=1)

    @classmethod
    def spec_errors(cls, spec: TaskSpec, params: Params) -> list[tuple[tuple[str | int, ...], str]]:
        if spec.ego.spawn == "random":
            return [(("ego", "spawn"), ("part random_approach turns a written approach: give the ego an "
                                        "explicit spawn pose, not 'random'"))]
        return []

    def __init__(self, params: Params, task: Task):
        super().__init__(params, task)
        self.variants = {k: rotated_spec(task.base_spec, params.center, k) for k in params.rotations}
        self.approach = 0

    def episode_spec(self, spec: TaskSpec, rng: np.random.Generator) -> TaskSpec:
        keys = sorted(self.variants)
        self.approach = keys[int(rng.integers(len(keys)))]
        return self.variants[self.approach]
