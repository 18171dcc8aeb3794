"""A lead vehicle on the ego's route, and the reward terms of the tasks built on it.

Task logic ``lead_vehicle`` spawns one autopilot vehicle ``params.lead_distance`` metres ahead on
the ego's route, driving the rest of that route at ``params.lead_speed`` (m/s, or a [min, max]
range), optionally swinging from side to side within its lane (``params.swing_amplitude`` m
over ``params.swing_period`` m of road). Each step it reports in ``ctx.extra``:

- ``lead_gap``: bumper-to-bumper distance from the ego to the lead along the route (negative once
  the ego is ahead; None when the lead has left the world);
- ``off_lane``: whether the ego's centre is outside its route's lane (beyond half a lane width).

``overtake`` and ``follow`` use it with different reward terms.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from cardreamer.config import BehaviorSpec
from cardreamer.rewards import StepContext, reward_term
from cardreamer.roadmap import Route
from cardreamer.task_runtime import RouteTask, register_task_logic, to_behavior
from cardreamer.world.api import Pose, World

HALF_LANE = 1.75


@register_task_logic("lead_vehicle")
class LeadVehicleTask(RouteTask):
    """A route task with one lead vehicle ahead of the ego on its route."""

    def reset(self, world: World, rng: np.random.Generator) -> int:
        ego = super().reset(world, rng)
        params = self.spec.params
        self.lead_route = self._lead_route(float(params.get("lead_distance", 20.0)),
                                           float(params.get("swing_amplitude", 0.0)),
                                           float(params.get("swing_period", 40.0)))
        speed = params.get("lead_speed", 4.0)
        behavior = to_behavior(BehaviorSpec(desired_speed=tuple(speed) if isinstance(speed, list) else speed,
                                            auto_lane_change=False), rng, on_route_end="destroy")
        start = Pose(float(self.lead_route.points[0, 0]), float(self.lead_route.points[0, 1]),
                     float(self.lead_route.headings[0]))
        self.lead_id = world.spawn_vehicle(start, route=self.lead_route, behavior=behavior,
                                           speed=behavior.desired_speed)
        self.passed = False
        return ego

    def _lead_route(self, distance: float, amplitude: float, period: float) -> Route:
        """The ego's route from ``distance`` on, weaving ``amplitude`` metres to either side."""
        route = self.route
        keep = route.s >= distance
        points, headings, s = route.points[keep], route.headings[keep], route.s[keep] - distance
        if amplitude > 0:
            weave = amplitude * np.sin(2 * np.pi * s / period) * np.minimum(s / period, 1.0)
            points = points + weave[:, None] * np.stack([-np.sin(headings), np.cos(headings)], -1)
        return Route(points.copy(), headings.copy(), route.lanes[keep].copy())

    def add_task_facts(self, ctx: StepContext) -> None:
        v = ctx.world.vehicles()
        rows = np.flatnonzero(v.ids == self.lead_id)
        gap = None
        if len(rows):
            lead_s = float(self.route.project(v.xy[rows[0]][None])[0][0])
            half = v.extent[v.row(self.ego_id), 0] + v.extent[rows[0], 0]
            gap = lead_s - ctx.route_s - (half if lead_s >= ctx.route_s else -half)
        ctx.extra.update(lead_gap=gap, off_lane=abs(ctx.lateral_offset) > HALF_LANE)
        overtaken = gap is not None and gap < -ctx.params.get("overtake_distance", 5.0) and not ctx.extra["off_lane"]
        ctx.extra["overtake_done"] = overtaken and not self.passed
        self.passed |= overtaken

    def episode_metrics(self, reason: str | None) -> dict[str, Any]:
        return {**super().episode_metrics(reason), "overtaken": self.passed}


@reward_term("overtake")
def overtake(ctx: StepContext) -> float:
    """+1 once, on the step the ego is back in its lane ``overtake_distance`` (5 m) ahead of the lead."""
    return 1.0 if ctx.extra.get("overtake_done") else 0.0


@reward_term("exceeding")
def exceeding(ctx: StepContext) -> float:
    """+1 every step the ego is ahead of the lead vehicle (rewards staying past it)."""
    gap = ctx.extra.get("lead_gap")
    return 1.0 if gap is not None and gap < 0 else 0.0


@reward_term("stay_in_lane")
def stay_in_lane(ctx: StepContext) -> float:
    """-1 every step the ego sits in the lead's lane within ``stay_in_lane_distance`` (15 m) behind it."""
    gap = ctx.extra.get("lead_gap")
    close = gap is not None and 0 <= gap < ctx.params.get("stay_in_lane_distance", 15.0)
    return -1.0 if close and not ctx.extra.get("off_lane") else 0.0


@reward_term("early_lane_change")
def early_lane_change(ctx: StepContext) -> float:
    """-1 every step the ego is out of its lane while the lead is still farther than
    ``early_lane_change_distance`` (25 m) ahead."""
    gap = ctx.extra.get("lead_gap")
    early = gap is None or gap > ctx.params.get("early_lane_change_distance", 25.0)
    return -1.0 if early and ctx.extra.get("off_lane") else 0.0


@reward_term("following_distance")
def following_distance(ctx: StepContext) -> float:
    """+1 while the gap to the lead is within ``follow_gap`` ([5, 25] m), -1 when closer, and down to
    -1 in proportion to the excess when farther; 0 once the lead has gone."""
    gap = ctx.extra.get("lead_gap")
    if gap is None:
        return 0.0
    low, high = ctx.params.get("follow_gap", (5.0, 25.0))
    if gap < low:
        return -1.0
    if gap <= high:
        return 1.0
    return -min((gap - high) / high, 1.0)
