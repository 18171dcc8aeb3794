"""Part ``lead_vehicle``: a lead vehicle on the ego's route, and the reward terms built on it.

The part spawns one vehicle ``lead_distance`` metres ahead on the ego's route, driving the rest of
that route at ``lead_speed`` (m/s, or a [min, max] range drawn per episode), optionally swinging
from side to side within its lane (``swing_amplitude`` m over ``swing_period`` m of road). Each
step it provides the facts

- ``lead_gap``: bumper-to-bumper distance from the ego to the lead along the route (negative once
  the ego is ahead; None when the lead has left the world);
- ``off_lane``: whether the ego's centre is outside its route's lane (beyond half a lane width);
- ``overtake_done``: true on the one step the ego is back in its lane ``overtake_distance`` m
  ahead of the lead.

``overtake`` and ``follow`` use it with different reward terms.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel

from cardreamer.config import BehaviorSpec, NonNegative, PositiveFloat, PositiveInterval
from cardreamer.rewards import StepContext, reward_term
from cardreamer.roadmap import Route
from cardreamer.task_runtime import TASK_PARTS, PartParams, TaskPart, to_behavior
from cardreamer.world.api import Pose, World

HALF_LANE = 1.75


@TASK_PARTS.register("lead_vehicle")
class LeadVehicle(TaskPart):
    """One lead vehicle ahead of the ego on its route."""

    class Params(PartParams):
        lead_distance: PositiveFloat = 20.0      # m ahead of the ego along its route
        lead_speed: NonNegative | PositiveInterval = 4.0  # m/s, or a [min, max] range drawn per episode
        swing_amplitude: NonNegative = 0.0       # m to either side of the lane centre
        swing_period: PositiveFloat = 40.0       # m of road per swing
        overtake_distance: NonNegative = 5.0     # m ahead of the lead (and back in lane) that counts as overtaken

    provides = frozenset({"lead_gap", "off_lane", "overtake_done"})

    def reset(self, world: World, rng: np.random.Generator) -> None:
        p = self.params
        self.lead_route = self._lead_route(p.lead_distance, p.swing_amplitude, p.swing_period)
        behavior = to_behavior(BehaviorSpec(desired_speed=p.lead_speed, auto_lane_change=False), rng,
                               on_route_end="destroy")
        start = Pose(float(self.lead_route.points[0, 0]), float(self.lead_route.points[0, 1]),
                     float(self.lead_route.headings[0]))
        self.lead_id = world.spawn_vehicle(start, route=self.lead_route, behavior=behavior,
                                           speed=behavior.desired_speed)
        self.passed = False

    def _lead_route(self, distance: float, amplitude: float, period: float) -> Route:
        """The ego's route from ``distance`` on, weaving ``amplitude`` metres to either side."""
        route = self.task.route
        keep = route.s >= distance
        points, headings, s = route.points[keep], route.headings[keep], route.s[keep] - distance
        if amplitude > 0:
            weave = amplitude * np.sin(2 * np.pi * s / period) * np.minimum(s / period, 1.0)
            points = points + weave[:, None] * np.stack([-np.sin(headings), np.cos(headings)], -1)
        return Route(points.copy(), headings.copy(), route.lanes[keep].copy())

    def observe(self, ctx: StepContext) -> None:
        v = ctx.world.vehicles()
        rows = np.flatnonzero(v.ids == self.lead_id)
        gap = None
        if len(rows):
            lead_s = float(self.task.route.project(v.xy[rows[0]][None])[0][0])
            half = v.extent[v.row(ctx.ego_id), 0] + v.extent[rows[0], 0]
            gap = lead_s - ctx.route_s - (half if lead_s >= ctx.route_s else -half)
        off_lane = abs(ctx.lateral_offset) > HALF_LANE
        overtaken = gap is not None and gap < -self.params.overtake_distance and not off_lane
        ctx.facts.update(lead_gap=gap, off_lane=off_lane, overtake_done=overtaken and not self.passed)
        self.passed |= overtaken

    def metrics(self, reason: str | None) -> dict[str, Any]:
        return {"overtaken": self.passed}


@reward_term("overtake", needs={"overtake_done"})
def overtake(ctx: StepContext) -> float:
    """+1 once, on the step the ego is back in its lane ``overtake_distance`` ahead of the lead."""
    return 1.0 if ctx.facts["overtake_done"] else 0.0


@reward_term("exceeding", needs={"lead_gap"})
def exceeding(ctx: StepContext) -> float:
    """+1 every step the ego is ahead of the lead vehicle (rewards staying past it)."""
    gap = ctx.facts["lead_gap"]
    return 1.0 if gap is not None and gap < 0 else 0.0


class StayInLane(BaseModel):
    distance: NonNegative = 15.0  # m behind the lead, in its lane, that is penalised


@reward_term("stay_in_lane", needs={"lead_gap", "off_lane"}, params=StayInLane)
def stay_in_lane(ctx: StepContext, settings: StayInLane) -> float:
    """-1 every step the ego sits in the lead's lane within ``distance`` (15 m) behind it."""
    gap = ctx.facts["lead_gap"]
    close = gap is not None and 0 <= gap < settings.distance
    return -1.0 if close and not ctx.facts["off_lane"] else 0.0


class EarlyLaneChange(BaseModel):
    distance: NonNegative = 25.0  # m to the lead beyond which leaving the lane is early


@reward_term("early_lane_change", needs={"lead_gap", "off_lane"}, params=EarlyLaneChange)
def early_lane_change(ctx: StepContext, settings: EarlyLaneChange) -> float:
    """-1 every step the ego is out of its lane while the lead is still farther than ``distance``
    (25 m) ahead."""
    gap = ctx.facts["lead_gap"]
    early = gap is None or gap > settings.distance
    return -1.0 if early and ctx.facts["off_lane"] else 0.0


class FollowingDistance(BaseModel):
    gap: PositiveInterval = (5.0, 25.0)  # m bumper to bumper that is rewarded


@reward_term("following_distance", needs={"lead_gap"}, params=FollowingDistance)
def following_distance(ctx: StepContext, settings: FollowingDistance) -> float:
    """+1 while the gap to the lead is within ``gap`` ([5, 25] m), -1 when closer, and down to -1 in
    proportion to the excess when farther; 0 once the lead has gone."""
    gap = ctx.facts["lead_gap"]
    if gap is None:
        return 0.0
    low, high = settings.gap
    if gap < low:
        return -1.0
    if gap <= high:
        return 1.0
    return -min((gap - high) / high, 1.0)


__all__ = ["LeadVehicle"]
