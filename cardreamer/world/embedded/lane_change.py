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

from cardreamer.geometry import to_ego_frame
from cardreamer.roadmap import RoadMap
from cardreamer.roadmap.route import LANE_CHANGE_LENGTH, route_through_lanes
from cardreamer.world.embedded.autopilot import idm_accel
from cardreamer.world.embedded.fleet import (
    B_A_MAX,
    B_B_COMF,
    B_HEADWAY,
    B_POLITENESS,
    B_S0,
    B_V0,
    R_JUNCTION_IN,
    R_LANE,
    R_STOP_S,
)
from cardreamer.world.embedded.route_table import LEVEL_GAP, SPACING

if TYPE_CHECKING:
    from cardreamer.world.embedded.world import EmbeddedWorld

PERIOD = 10             # ticks between two decisions of one vehicle
THRESHOLD = 0.3         # m/s^2 of net gain needed to change
SAFE_DECEL = 4.0        # m/s^2 the new follower may be asked to brake at most
MIN_GAP = 2.0           # m of free space needed ahead and behind in the target lane
JUNCTION_CLEARANCE = 40.0  # m: no lane change this close to the next junction
MIN_SPEED = 3.0         # m/s
CHANGE_WATCH = 25.0     # m ahead and behind where vehicles moving into the target lane are watched
CONTINUATION = 300.0    # m of random continuation after a change ("continue" vehicles)


class LaneChanger:
    """MOBIL lane changes of one world's autopilot traffic, with the per-lane tables they are decided on:
    the permitted left and right neighbour of each lane (-1: none, and none in junctions) and its mean width."""

    def __init__(self, road_map: RoadMap):
        lanes = road_map.lanes
        self.left = np.array([l.left if l.left is not None and l.change_left and not l.is_junction else -1
                              for l in lanes])
        self.right = np.array([l.right if l.right is not None and l.change_right and not l.is_junction else -1
                               for l in lanes])
        self.width = np.array([float(np.mean(l.widths)) for l in lanes])

    def consider(self, world: EmbeddedWorld, auto: np.ndarray) -> None:
        """Let the autopilot rows ``auto`` change lanes where MOBIL says so (every ``PERIOD`` ticks)."""
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
        here = f.points(cand, i_now)
        lane_now = here[:, R_LANE].astype(np.int64)
        steady = (lane_now >= 0) & (f.points(cand, i_ahead)[:, R_LANE] == lane_now)
        steady &= here[:, R_JUNCTION_IN] - s > JUNCTION_CLEARANCE
        steady &= here[:, R_STOP_S] - s > JUNCTION_CLEARANCE
        cand, lane_now = cand[steady], lane_now[steady]
        if not len(cand):
            return
        left, right, width = self.left, self.right, self.width
        n = f.n
        local = to_ego_frame(f.xy[None, :n], f.xy[cand][:, None], f.yaw[cand][:, None])  # (C, n, 2)
        lon, lat = local[..., 0], local[..., 1]       # ahead of each candidate, to its right
        lon[np.arange(len(cand)), cand] = np.nan
        if world.map_index.has_levels:
            lon[np.abs(f.z[None, :n] - f.z[cand, None]) >= LEVEL_GAP] = np.nan
        lane_width = width[lane_now][:, None]
        # the lane each routed vehicle will be in a lane change from now: a vehicle already moving over
        # counts as in its target lane
        routed = f.has_route[:n]
        soon = np.minimum(((f.route_s[:n] + LANE_CHANGE_LENGTH) / SPACING).astype(np.int64), last)
        lane_soon = np.where(routed, f.points(np.arange(n), soon)[:, R_LANE], -1).astype(np.int64)
        v = f.speed[cand]
        mine = f.behavior[cand]
        v0 = mine[:, B_V0]
        params = (mine[:, B_S0], mine[:, B_HEADWAY], mine[:, B_A_MAX], mine[:, B_B_COMF])

        def neighbours(offset, lane):
            """(leader gap, leader speed, follower gap, follower row) in ``lane``, ``offset`` widths to the right.

            A vehicle counts as in that lane when its centre lies within the lane's width (plus a
            margin) of the line parallel to the candidate's heading (a local, straight-road view that
            also sees vehicles still leaving a junction), or when it is changing into that lane.
            """
            member = np.abs(lat - offset * lane_width) < 0.5 * lane_width + 0.3
            member |= (lane_soon[None, :] == lane[:, None]) & (np.abs(lon) < CHANGE_WATCH)
            ahead = np.where(member & (lon >= 0), lon, np.inf)
            behind = np.where(member & (lon < 0), -lon, np.inf)
            lead = ahead.argmin(axis=1)
            follow = behind.argmin(axis=1)
            rows = np.arange(len(cand))
            half = f.extent[cand, 0]
            lead_gap = ahead[rows, lead] - half - f.extent[lead, 0]
            follow_gap = behind[rows, follow] - half - f.extent[follow, 0]
            return lead_gap, f.speed[lead], follow_gap, follow

        lead_gap, lead_v, _, _ = neighbours(0.0, lane_now)
        a_now = idm_accel(v, v0, lead_gap, v - lead_v, *params)
        best_gain = np.full(len(cand), THRESHOLD)
        best_lane = np.full(len(cand), -1)
        for side, offset in ((left, -1.0), (right, 1.0)):
            target = side[lane_now]
            ok = target >= 0
            if not ok.any():
                continue
            t_gap, t_v, f_gap, f_row = neighbours(offset, np.where(ok, target, -2))
            a_new = idm_accel(v, v0, t_gap, v - t_v, *params)
            fv = f.speed[f_row]
            theirs = f.behavior[f_row]
            fparams = (theirs[:, B_S0], theirs[:, B_HEADWAY], theirs[:, B_A_MAX], theirs[:, B_B_COMF])
            follower_before = idm_accel(fv, theirs[:, B_V0], f_gap + t_gap + 2 * f.extent[cand, 0], fv - t_v, *fparams)
            follower_after = idm_accel(fv, theirs[:, B_V0], f_gap, fv - v, *fparams)
            follower_after = np.where(np.isinf(f_gap), 0.0, follower_after)
            follower_before = np.where(np.isinf(f_gap), 0.0, follower_before)
            safe = ok & (t_gap > MIN_GAP) & (f_gap > MIN_GAP) & (follower_after > -SAFE_DECEL)
            gain = a_new - a_now + mine[:, B_POLITENESS] * (follower_after - follower_before)
            better = safe & (gain > best_gain)
            best_gain = np.where(better, gain, best_gain)
            best_lane = np.where(better, target, best_lane)
        go = np.flatnonzero(best_lane >= 0)
        if len(go) > 1:  # two vehicles choosing the same lane side by side: only the keener one moves
            same = best_lane[go][:, None] == best_lane[go][None, :]
            close = np.abs(lon[go][:, cand[go]]) < CHANGE_WATCH
            keener = (best_gain[go][None, :] > best_gain[go][:, None]) | (
                (best_gain[go][None, :] == best_gain[go][:, None]) & (go[None, :] < go[:, None]))
            go = go[~np.any(same & close & keener, axis=1)]
        for k in go.tolist():
            row = int(cand[k])
            _change_lane(world, row, int(lane_now[k]), int(best_lane[k]))


def _change_lane(world: EmbeddedWorld, row: int, lane_now: int, target: int) -> None:
    f = world.fleet
    road_map = world.road_map
    actor_id = int(f.ids[row])
    old = world.route_of(actor_id)
    if f.destroy_at_end[row]:
        # reach the route's last road (any lane of it going the same way), not its exact lane
        goal = road_map.lanes[int(old.lanes[-1])]
        ends = [lane.index for lane in road_map.lanes
                if lane.key[:2] == goal.key[:2] and lane.key[2] * goal.key[2] > 0]
        cost, paths = nx.single_source_dijkstra(road_map.graph, target, weight="weight")
        reachable = [end for end in ends if end in cost]
        if not reachable:
            return
        goal_lane = min(reachable, key=lambda end: (cost[end], end))
        lanes = [lane_now] + paths[goal_lane]
        goal_s = float(road_map.lanes[goal_lane].project(old.points[-1:])[0][0])
    else:
        lanes = [lane_now, target]
        total = road_map.lanes[target].length
        while total < CONTINUATION and road_map.lanes[lanes[-1]].successors:
            succ = road_map.lanes[lanes[-1]].successors
            lanes.append(succ[world.rng.integers(len(succ))])
            total += road_map.lanes[lanes[-1]].length
        goal_s = road_map.lanes[lanes[-1]].length
    s_now = float(road_map.lanes[lane_now].project(f.xy[row][None])[0][0])
    if s_now + 2.0 > road_map.lanes[lane_now].length:
        return
    route = route_through_lanes(road_map, lanes, s_now, goal_s)
    world.replace_route(actor_id, route)
