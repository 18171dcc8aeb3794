"""MOBIL lane changes for autopilot vehicles, decided vectorized and executed by re-planning the route.

All vehicles reconsider together once every ``PERIOD`` ticks. A change to a permitted neighbour lane
is taken when the IDM acceleration it gains, minus ``politeness`` times what the new follower
loses, exceeds ``THRESHOLD``, and the new follower would not have to brake harder than
``SAFE_DECEL``. Vehicles near a junction or already changing lanes keep their lane.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from cardreamer.roadmap.route import LANE_CHANGE_LENGTH, route_through_lanes
from cardreamer.world.embedded.autopilot import idm_accel
from cardreamer.world.embedded.route_table import SPACING

if TYPE_CHECKING:
    from cardreamer.world.embedded.world import EmbeddedWorld

PERIOD = 10             # ticks between two decisions of one vehicle
THRESHOLD = 0.3         # m/s^2 of net gain needed to change
SAFE_DECEL = 4.0        # m/s^2 the new follower may be asked to brake at most
MIN_GAP = 2.0           # m of free space needed ahead and behind in the target lane
JUNCTION_CLEARANCE = 40.0  # m: no lane change this close to the next junction
MIN_SPEED = 3.0         # m/s
CONTINUATION = 300.0    # m of random continuation after a change ("continue" vehicles)


def _lane_tables(world: "EmbeddedWorld"):
    cache = getattr(world, "_lane_change_tables", None)
    if cache is None:
        lanes = world.road_map.lanes
        left = np.array([l.left if l.left is not None and l.change_left and not l.is_junction else -1 for l in lanes])
        right = np.array([l.right if l.right is not None and l.change_right and not l.is_junction else -1
                          for l in lanes])
        cache = world._lane_change_tables = (left, right)
    return cache


def current_lanes(world: "EmbeddedWorld") -> np.ndarray:
    """Lane index each vehicle drives in: its route's lane, or the lane under an ego's centre."""
    f = world.fleet
    n = f.n
    idx = np.minimum((f.route_s[:n] / SPACING).astype(np.int64), f.route_points - 1)
    lanes = f.r_lane[np.arange(n), idx]
    unrouted = ~f.has_route[:n] | f.is_ego[:n]
    if unrouted.any():
        lanes[unrouted] = world.raster.lanes_at(f.xy[:n][unrouted])
    return lanes


def consider(world: "EmbeddedWorld", auto: np.ndarray) -> None:
    if world.frame % PERIOD:
        return
    f = world.fleet
    turn = f.auto_lane_change[auto] & (f.speed[auto] > MIN_SPEED)
    cand = auto[turn]
    if not len(cand):
        return
    last = f.route_points - 1
    s = f.route_s[cand]
    i_now = np.minimum((s / SPACING).astype(np.int64), last)
    i_ahead = np.minimum(((s + LANE_CHANGE_LENGTH + 5.0) / SPACING).astype(np.int64), last)
    lane_now = f.r_lane[cand, i_now]
    steady = (lane_now >= 0) & (f.r_lane[cand, i_ahead] == lane_now)
    steady &= f.r_junction_in[cand, i_now] - s > JUNCTION_CLEARANCE
    steady &= f.r_stop_s[cand, i_now] - s > JUNCTION_CLEARANCE
    cand, lane_now = cand[steady], lane_now[steady]
    if not len(cand):
        return
    left, right = _lane_tables(world)
    lanes_all = current_lanes(world)
    n = f.n
    fwd = np.stack([np.cos(f.yaw[cand]), np.sin(f.yaw[cand])], -1)
    lon = np.einsum("cjk,ck->cj", f.xy[None, :n] - f.xy[cand][:, None], fwd)
    lon[np.arange(len(cand)), cand] = np.nan
    v = f.speed[cand]
    params = (f.s0[cand], f.headway[cand], f.a_max[cand], f.b_comf[cand])

    def neighbours(lane):
        """(leader gap, leader speed, follower gap, follower row) in ``lane`` around each candidate."""
        member = lanes_all[None, :n] == lane[:, None]
        ahead = np.where(member & (lon > 0), lon, np.inf)
        behind = np.where(member & (lon < 0), -lon, np.inf)
        lead = ahead.argmin(axis=1)
        follow = behind.argmin(axis=1)
        rows = np.arange(len(cand))
        half = f.extent[cand, 0]
        lead_gap = ahead[rows, lead] - half - f.extent[lead, 0]
        follow_gap = behind[rows, follow] - half - f.extent[follow, 0]
        return lead_gap, f.speed[lead], follow_gap, follow

    lead_gap, lead_v, _, _ = neighbours(lane_now)
    a_now = idm_accel(v, f.v0[cand], lead_gap, v - lead_v, *params)
    best_gain = np.full(len(cand), THRESHOLD)
    best_lane = np.full(len(cand), -1)
    for side in (left, right):
        target = side[lane_now]
        ok = target >= 0
        if not ok.any():
            continue
        t_gap, t_v, f_gap, f_row = neighbours(np.where(ok, target, -2))
        a_new = idm_accel(v, f.v0[cand], t_gap, v - t_v, *params)
        fv = f.speed[f_row]
        fparams = (f.s0[f_row], f.headway[f_row], f.a_max[f_row], f.b_comf[f_row])
        follower_before = idm_accel(fv, f.v0[f_row], f_gap + t_gap + 2 * f.extent[cand, 0], fv - t_v, *fparams)
        follower_after = idm_accel(fv, f.v0[f_row], f_gap, fv - v, *fparams)
        follower_after = np.where(np.isinf(f_gap), 0.0, follower_after)
        follower_before = np.where(np.isinf(f_gap), 0.0, follower_before)
        safe = ok & (t_gap > MIN_GAP) & (f_gap > MIN_GAP) & (follower_after > -SAFE_DECEL)
        gain = a_new - a_now + f.politeness[cand] * (follower_after - follower_before)
        better = safe & (gain > best_gain)
        best_gain = np.where(better, gain, best_gain)
        best_lane = np.where(better, target, best_lane)
    for row, lane in zip(cand[best_lane >= 0].tolist(), best_lane[best_lane >= 0].tolist()):
        _change_lane(world, row, lanes_all[row], lane)


def _change_lane(world: "EmbeddedWorld", row: int, lane_now: int, target: int) -> None:
    f = world.fleet
    road_map = world.road_map
    actor_id = int(f.ids[row])
    old = world.route_of(actor_id)
    if f.destroy_at_end[row]:
        goal_lane = int(old.lanes[-1])
        try:
            path = nx.shortest_path(road_map.graph, target, goal_lane, weight="weight")
        except nx.NetworkXNoPath:
            return
        lanes = [lane_now] + path
        goal_s = float(road_map.lanes[goal_lane].local_coordinates(old.points[-1:])[0][0])
    else:
        lanes = [lane_now, target]
        total = road_map.lanes[target].length
        while total < CONTINUATION and road_map.lanes[lanes[-1]].successors:
            succ = road_map.lanes[lanes[-1]].successors
            lanes.append(succ[world.rng.integers(len(succ))])
            total += road_map.lanes[lanes[-1]].length
        goal_s = road_map.lanes[lanes[-1]].length
    s_now = float(road_map.lanes[lane_now].local_coordinates(f.xy[row][None])[0][0])
    if s_now + 2.0 > road_map.lanes[lane_now].length:
        return
    route = route_through_lanes(road_map, lanes, s_now, goal_s)
    world.replace_route(actor_id, route)
