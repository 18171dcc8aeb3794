"""Routes resampled to exactly one point per metre and annotated for the vectorized autopilot.

With a fixed spacing the point at arc length ``s`` is row ``int(s)``, so look-ahead points,
stop lines and junction spans of every vehicle are found by plain integer indexing. Each route is
padded with a straight run-out past its end so look-ahead never leaves the array.
"""
from __future__ import annotations

import itertools

import numpy as np

from cardreamer.roadmap import RoadMap, Route
from cardreamer.world.embedded import fleet as F
from cardreamer.world.embedded.fleet import Fleet

SPACING = 1.0            # m between stored route points
RUN_OUT = 64             # padding points past the route end
LATERAL_ACCEL = 2.5      # m/s^2 accepted in curves when choosing curve speeds
LEVEL_GAP = 3.0          # m of height between two roads (a bridge): vehicles on them never meet
SIGN_NEAR_JUNCTION = 6.0  # m: a stop sign this close before a junction entry governs that junction


class MapIndex:
    """Per-map lookups used when annotating routes: signals by lane, lane junction ids, elevation."""

    def __init__(self, road_map: RoadMap):
        self.road_map = road_map
        self.lane_junction = np.array([lane.junction_id if lane.is_junction else -1 for lane in road_map.lanes])
        self.lane_z = _lane_elevations(road_map)
        self.lane_mean_z = np.array([float(z.mean()) for z in self.lane_z])
        self.has_levels = bool(np.ptp(np.concatenate(self.lane_z)) >= 1.0)
        self.signals_by_lane: dict[int, list[tuple[int, float]]] = {}
        for index, signal in enumerate(road_map.signals):
            self.signals_by_lane.setdefault(signal.lane, []).append((index, signal.stop_s))
        self.is_stop_sign = np.array([s.kind == "stop_sign" for s in road_map.signals], dtype=bool)


def _lane_elevations(road_map: RoadMap) -> list[np.ndarray]:
    """Height of every lane point, from the map's waypoints (bridges and overpasses cross in 2-D)."""
    waypoints = road_map.carla_map.generate_waypoints(2.0)
    by_lane: dict[tuple, list[tuple[float, float, float]]] = {}
    for wp in waypoints:
        loc = wp.transform.location
        by_lane.setdefault((wp.road_id, wp.section_id, wp.lane_id), []).append((loc.x, loc.y, loc.z))
    heights = []
    for lane in road_map.lanes:
        samples = np.asarray(by_lane.get(lane.key, ()), dtype=float).reshape(-1, 3)
        if len(samples) == 0 or np.ptp(samples[:, 2]) < 1e-3:
            heights.append(np.full(len(lane.s), samples[0, 2] if len(samples) else 0.0))
            continue
        s, _ = lane.project(samples[:, :2])
        order = np.argsort(s)
        heights.append(np.interp(lane.s, s[order], samples[order, 2]))
    return heights


def _stops_on_route(index: MapIndex, route: Route) -> tuple[np.ndarray, np.ndarray]:
    """(route s, signal index) of every stop line the route meets, sorted by s."""
    lanes = route.lanes
    run_starts = np.flatnonzero(np.concatenate([[True], lanes[1:] != lanes[:-1]]))
    stop_s, stop_sig = [], []
    for run, start in enumerate(run_starts):
        lane_index = int(lanes[start])
        signals = index.signals_by_lane.get(lane_index)
        if not signals:
            continue
        lane = index.road_map.lanes[lane_index]
        entered_at_start = run > 0 and lane_index in index.road_map.lanes[int(lanes[start - 1])].successors
        if entered_at_start:  # consecutive lanes share their joint point: this run starts just past it
            lane_s0 = float(np.hypot(*(route.points[start] - lane.points[0])))
        else:                 # the route starts, or changes lanes, part-way along this lane
            lane_s0 = float(lane.project(route.points[start][None])[0][0])
        tolerance = 1.5 * SPACING if entered_at_start else 0.5
        for sig, s_on_lane in signals:
            if s_on_lane >= lane_s0 - tolerance:
                stop_s.append(route.s[start] + s_on_lane - lane_s0)
                stop_sig.append(sig)
    order = np.argsort(stop_s, kind="stable")
    return np.asarray(stop_s, dtype=float)[order], np.asarray(stop_sig, dtype=np.int64)[order]


def _route_heights(index: MapIndex, route: Route) -> np.ndarray:
    """Height of every point of ``route`` (by projection onto its lane's elevation profile)."""
    z = np.empty(len(route.points))
    lanes = route.lanes
    bounds = np.flatnonzero(np.concatenate([[True], lanes[1:] != lanes[:-1], [True]]))
    for a, b in itertools.pairwise(bounds):
        lane = index.road_map.lanes[int(lanes[a])]
        profile = index.lane_z[lane.index]
        if np.ptp(profile) < 1e-3:
            z[a:b] = profile[0]
        else:
            s, _ = lane.project(route.points[a:b])
            z[a:b] = np.interp(s, lane.s, profile)
    return z


def load_route(fleet: Fleet, row: int, route: Route, index: MapIndex) -> None:
    """Write ``route`` into the route arrays of ``fleet`` row ``row``."""
    count = int(np.floor(route.length / SPACING)) + 1
    fleet.ensure_route_points(count + RUN_OUT)
    total = fleet.route_points
    s = np.arange(total) * SPACING
    inside = s <= route.length
    xy = np.empty((total, 2))
    xy[:, 0] = np.interp(s, route.s, route.points[:, 0])
    xy[:, 1] = np.interp(s, route.s, route.points[:, 1])
    end_heading = float(route.headings[-1])
    beyond = ~inside
    xy[beyond] = route.points[-1] + (s[beyond] - route.length)[:, None] * [np.cos(end_heading), np.sin(end_heading)]
    d = np.diff(xy, axis=0)
    heading = np.arctan2(d[:, 1], d[:, 0])
    heading = np.append(heading, heading[-1])
    turn = np.abs((np.diff(heading) + np.pi) % (2 * np.pi) - np.pi) / SPACING  # curvature between points
    curvature = np.maximum(np.append(turn, 0.0), np.insert(turn, 0, 0.0))       # at each point: worst side
    vcurve = np.sqrt(LATERAL_ACCEL / np.maximum(curvature, 1e-4))

    point_of = np.clip(np.searchsorted(route.s, s, side="right") - 1, 0, len(route.s) - 1)
    lane = np.where(inside, route.lanes[point_of], -1)
    height = _route_heights(index, route)[point_of] if index.has_levels else index.lane_mean_z[0]
    junction = np.where(lane >= 0, index.lane_junction[np.maximum(lane, 0)], -1)

    stop_s, stop_sig = _stops_on_route(index, route)
    nxt = np.searchsorted(stop_s, s)  # first stop line at or after each point
    has = nxt < len(stop_s)
    r_stop_s = np.where(has, np.append(stop_s, np.inf)[nxt], np.inf)
    r_stop_sig = np.where(has, np.append(stop_sig, -1)[nxt], -1)

    # junction spans along the route: [entry, exit) in s, with their id
    change = np.flatnonzero(np.diff(np.concatenate([[-1], junction, [-1]])) != 0)
    spans = [(change[k], change[k + 1]) for k in range(len(change) - 1) if junction[change[k]] >= 0]
    j_in = np.array([s[a] for a, _ in spans] + [np.inf])
    j_out = np.array([s[b - 1] + SPACING for _, b in spans] + [np.inf])
    j_id = np.array([junction[a] for a, _ in spans] + [-1], dtype=np.int64)
    j_sign = np.zeros(len(spans) + 1, dtype=bool)
    for k, entry in enumerate(j_in[:-1]):
        near = (stop_s > entry - SIGN_NEAR_JUNCTION) & (stop_s < entry + 3.0)
        j_sign[k] = bool(np.any(index.is_stop_sign[stop_sig[near]])) if near.any() else False
    span_of = np.searchsorted(j_out[:-1], s, side="right")  # first span whose exit lies beyond s

    r = fleet.route[row]
    r[:, F.R_X], r[:, F.R_Y] = xy[:, 0], xy[:, 1]
    r[:, F.R_HEADING] = heading
    r[:, F.R_VCURVE] = np.where(inside, vcurve, F.ROUTE_DEFAULTS[F.R_VCURVE])
    r[:, F.R_LANE] = lane
    r[:, F.R_Z] = height
    r[:, F.R_STOP_SIG] = r_stop_sig
    r[:, F.R_STOP_S] = r_stop_s
    r[:, F.R_JUNCTION] = j_id[span_of]
    r[:, F.R_JUNCTION_IN] = j_in[span_of]
    r[:, F.R_JUNCTION_OUT] = j_out[span_of]
    r[:, F.R_JUNCTION_SIGN] = j_sign[span_of]
    a = fleet.arrays
    a["has_route"][row] = True
    a["route_length"][row] = route.length
    a["sign_cleared_s"][row] = -np.inf
    a["sign_wait"][row] = 0.0
