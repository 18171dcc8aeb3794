"""Planned routes of vehicles as shared intentions: route windows, transmission errors, manoeuvres."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from cardreamer.roadmap import RoadMap, Route
from cardreamer.world.api import World

MANOEUVRES = ("straight", "left", "right", "lane_change")
TURN_THRESHOLD = np.radians(30.0)
"""Heading change over the look-ahead above which a route counts as a turn."""


def route_ahead(world: World, actor_id: int, length: float, behind: float = 0.0) -> tuple[Route, int, int] | None:
    """(route, lo, hi): the slice of a vehicle's intended route from ``behind`` metres back to ``length`` ahead."""
    intended = world.intended_route(actor_id)
    if intended is None or len(intended[0].points) < 2:
        return None
    route, s = intended
    lo, hi = np.searchsorted(route.s, [s - behind, s + length])
    hi = min(int(hi) + 1, len(route.s))
    lo = min(int(lo), hi - 1)
    return route, lo, hi


def classify_manoeuvre(road_map: RoadMap, route: Route, lo: int, hi: int) -> int:
    """Index into MANOEUVRES of what a route slice does: a lane change, a left or right turn, or straight.

    Yaw grows clockwise seen from above (CARLA's frame), so a growing heading is a right turn.
    """
    lanes = route.lanes[lo:hi]
    for a, b in itertools.pairwise(lanes.tolist()):
        if a != b and b not in road_map.lanes[a].successors and b in (road_map.lanes[a].left, road_map.lanes[a].right):
            return MANOEUVRES.index("lane_change")
    if hi - lo < 2:
        return MANOEUVRES.index("straight")
    turn = np.angle(np.exp(1j * (route.headings[hi - 1] - route.headings[lo])))
    if turn > TURN_THRESHOLD:
        return MANOEUVRES.index("right")
    if turn < -TURN_THRESHOLD:
        return MANOEUVRES.index("left")
    return MANOEUVRES.index("straight")


@dataclass(frozen=True)
class IntentionError:
    """How one vehicle's shared route is corrupted: shifted sideways, or cut short."""

    kind: str        # "shift" | "truncate"
    amount: float    # shift: lateral metres (positive right); truncate: fraction of the window kept


class IntentionChannel:
    """Shares vehicles' planned routes, corrupting each vehicle's with probability ``error_rate``.

    The decision and its parameters are drawn once per (episode, vehicle) from a generator seeded
    with ``(seed, episode, vehicle id)``: reproducible and independent of drawing order.
    """

    def __init__(self, error_rate: float, seed: int, shift: float = 3.5):
        self.error_rate = error_rate
        self.seed = seed
        self.shift = shift
        self.episode = -1
        self.errors: dict[int, IntentionError | None] = {}

    def reset(self) -> None:
        self.episode += 1
        self.errors = {}

    def error_of(self, actor_id: int) -> IntentionError | None:
        if actor_id not in self.errors:
            rng = np.random.default_rng([self.seed, self.episode, int(actor_id)])
            error = None
            if self.error_rate > 0 and rng.random() < self.error_rate:
                if rng.random() < 0.5:
                    error = IntentionError("shift", float(rng.choice([-1.0, 1.0]) * self.shift))
                else:
                    error = IntentionError("truncate", float(rng.uniform(0.1, 0.5)))
            self.errors[actor_id] = error
        return self.errors[actor_id]

    def received(self, world: World, actor_id: int, length: float) -> np.ndarray | None:
        """Route points (K, 2) ahead of a vehicle as received, errors included; None if it has no route."""
        window = route_ahead(world, actor_id, length)
        if window is None:
            return None
        route, lo, hi = window
        points = route.points[lo:hi]
        error = self.error_of(actor_id) if self.error_rate > 0 else None
        if error is None:
            return points
        if error.kind == "shift":
            heading = route.headings[lo:hi]
            right = np.stack([-np.sin(heading), np.cos(heading)], axis=-1)
            return points + right * error.amount
        return points[:max(2, round(len(points) * error.amount))]
