"""Routes: dense polylines along legal lane connections, and the planner that finds them."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import networkx as nx
import numpy as np

from cardreamer.roadmap.polyline import Polyline
from cardreamer.roadmap.road_map import MapError, RoadMap

LANE_CHANGE_LENGTH = 12.0
"""Distance (m) over which a planned lane change moves across to the neighbouring lane."""


@dataclass
class Route(Polyline):
    """A path through the lane graph, sampled about every metre.

    ``lanes[i]`` is the lane the point ``points[i]`` belongs to (during a lane change, the target
    lane); ``s`` is the distance along the route.
    """

    points: np.ndarray
    headings: np.ndarray
    lanes: np.ndarray

    def window(self, s_from: float, s_to: float) -> np.ndarray:
        """Route points with s in [s_from, s_to]."""
        lo, hi = np.searchsorted(self.s, [s_from, s_to])
        return self.points[lo:hi]


def _lane_piece(road_map: RoadMap, lane_index: int, s_from: float, s_to: float):
    lane = road_map.lanes[lane_index]
    s_to = min(s_to, lane.length)
    if s_to - s_from < 1e-6:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0, dtype=int)
    inner = lane.s[(lane.s > s_from) & (lane.s < s_to)]
    s = np.concatenate([[s_from], inner, [s_to]])
    return lane.position(s), lane.heading_at(s), np.full(len(s), lane_index)


def route_through_lanes(road_map: RoadMap, lanes: list[int], s_start: float, s_goal: float) -> Route:
    """Build the dense route along a lane sequence, entering the first at ``s_start``."""
    pieces = []
    s_in = s_start
    for i, index in enumerate(lanes):
        lane = road_map.lanes[index]
        last = i == len(lanes) - 1
        nxt = None if last else lanes[i + 1]
        change = nxt is not None and nxt in (lane.left, lane.right) and nxt not in lane.successors
        if last:
            s_out = s_goal
        elif change:
            s_out = min(s_in + 1.0, lane.length)
        else:
            s_out = lane.length
        pieces.append(_lane_piece(road_map, index, s_in, s_out))
        if change:
            target = road_map.lanes[nxt]
            end_xy = lane.position(s_out)
            s_target, _ = target.project(end_xy[None])
            s_in = min(float(s_target[0]) + LANE_CHANGE_LENGTH, target.length - 1e-3)
        else:
            s_in = 0.0
    points = np.concatenate([p[0] for p in pieces])
    headings = np.concatenate([p[1] for p in pieces])
    lane_ids = np.concatenate([p[2] for p in pieces])
    keep = np.concatenate([[True], np.linalg.norm(np.diff(points, axis=0), axis=1) > 1e-3])
    return Route(points[keep], headings[keep], lane_ids[keep])


def plan_route(road_map: RoadMap, start_xy, goal_xy) -> Route:
    """Shortest legal route between two world locations, like CARLA's GlobalRoutePlanner."""
    start_lane, s_start, _ = road_map.locate(np.asarray(start_xy, dtype=float))
    goal_lane, s_goal, _ = road_map.locate(np.asarray(goal_xy, dtype=float))
    if start_lane == goal_lane and s_goal >= s_start:
        return route_through_lanes(road_map, [start_lane], s_start, s_goal)
    graph = road_map.graph
    best: list[int] | None = None
    best_cost = np.inf
    for succ in graph.successors(start_lane):
        try:
            cost, path = nx.single_source_dijkstra(graph, succ, goal_lane, weight="weight")
        except nx.NetworkXNoPath:
            continue
        if cost < best_cost:
            best, best_cost = [start_lane] + path, cost
    if best is None:
        raise MapError(f"no legal route on map {road_map.name!r} from ({start_xy[0]:.1f}, {start_xy[1]:.1f}) "
                       f"to ({goal_xy[0]:.1f}, {goal_xy[1]:.1f})")
    return route_through_lanes(road_map, best, s_start, s_goal)


def plan_route_via(road_map: RoadMap, waypoints) -> Route:
    """A route through several world locations in order (each leg planned on the lane graph)."""
    legs = [plan_route(road_map, a, b) for a, b in itertools.pairwise(waypoints)]
    points = np.concatenate([leg.points for leg in legs])
    headings = np.concatenate([leg.headings for leg in legs])
    lanes = np.concatenate([leg.lanes for leg in legs])
    keep = np.concatenate([[True], np.linalg.norm(np.diff(points, axis=0), axis=1) > 1e-3])
    return Route(points[keep], headings[keep], lanes[keep])


def random_route(road_map: RoadMap, rng: np.random.Generator, start_lane: int, s_start: float,
                 length: float) -> Route:
    """A random drive of about ``length`` metres along successor lanes (random turns at junctions).

    Raises MapError when the start is at the very end of a lane that leads nowhere.
    """
    start = road_map.lanes[start_lane]
    if start.length - s_start < 1.0 and not start.successors:
        raise MapError(f"no route from lane {start.key} of map {road_map.name!r}: it ends {start.length - s_start:.1f} m "
                       f"ahead at the map edge")
    lanes = [start_lane]
    total = road_map.lanes[start_lane].length - s_start
    while total < length:
        succ = road_map.lanes[lanes[-1]].successors
        if not succ:
            break
        nxt = succ[rng.integers(len(succ))]
        lanes.append(nxt)
        total += road_map.lanes[nxt].length
    last = road_map.lanes[lanes[-1]]
    overshoot = max(total - length, 0.0)
    s_goal = max(last.length - overshoot, 0.5) if len(lanes) > 1 else min(s_start + length, last.length)
    return route_through_lanes(road_map, lanes, s_start, s_goal)


__all__ = ["Route", "plan_route", "plan_route_via", "random_route", "route_through_lanes"]
