"""The background-traffic driver, vectorized over all autopilot vehicles at once.

Per tick and vehicle it chooses a road-wheel angle (pure pursuit on the route) and an
acceleration (IDM), where the IDM gap is the nearest of:

- any vehicle box on the vehicle's own path ahead (path points every 4 m for 40 m and the segments
  between them, tested against every box ahead within reach at once: this covers followed
  vehicles, vehicles crossing in junctions, and a corner poking into the path between two points);
- the stop line of a red or yellow light it can still stop for, or of a stop sign it has not yet
  stopped at for ``SIGN_STOP_TIME``;
- the entry of the next junction when it must yield there: vehicles heading into the same
  junction on paths that conflict are ordered by one priority key per vehicle (inside the
  junction first, then those too fast to stop before it, then by time to reach the entry, with a
  penalty for stop-sign approaches; ties by row), so the yield relation has no cycles and cannot
  deadlock. An ego vehicle inside the junction on the main path (a clearly gentler bend, as the
  ring of a roundabout) goes before the vehicles not yet in; an ego approaching, or turning off
  the main path, must find its own gap. A vehicle too fast to stop at the entry stops before the
  conflict point instead. It also waits at the entry while a slow vehicle on its path is still
  inside the junction ("don't block the box").

The stop line of a light or sign at the junction takes precedence: a vehicle held there does not
take part in the junction's priority order until it is released.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from cardreamer.world.embedded.compiled_geometry import (
    box_corners,
    boxes_overlap,
    corner_segment_distance,
    point_box_distance,
)
from cardreamer.world.embedded.dynamics import MAX_BRAKE, MAX_STEER
from cardreamer.world.embedded.fleet import (
    B_A_MAX,
    B_B_COMF,
    B_HEADWAY,
    B_S0,
    B_V0,
    R_HEADING,
    R_JUNCTION,
    R_JUNCTION_IN,
    R_JUNCTION_OUT,
    R_JUNCTION_SIGN,
    R_STOP_S,
    R_STOP_SIG,
    R_VCURVE,
    Fleet,
)
from cardreamer.world.embedded.lights import GREEN as _GREEN
from cardreamer.world.embedded.lights import STOP_SIGN
from cardreamer.world.embedded.lights import YELLOW as _YELLOW
from cardreamer.world.embedded.route_table import LEVEL_GAP, SPACING

PATH_STEP = 4.0          # m between sampled path points (a box cannot slip between two)
PATH_POINTS = 11         # -> 40 m of path ahead of the front bumper
SENSE_RADIUS = 46.0      # m: vehicles farther than this from a vehicle's centre are not tested
PATH_MARGIN = 0.35       # m added to the half width when testing boxes against the path
STOP_LINE_GAP = 1.0      # m: standstill distance to a stop line or junction entry
SIGN_STOP_TIME = 1.0     # s at standstill before a stop sign counts as obeyed
STOPPED = 0.05           # m/s: below this a vehicle counts as stopped
SIGN_NEAR = 3.0          # m: "at the line" for a stop sign
RED_BRAKE = 6.0          # m/s^2: stop for red if this suffices, else go through
YELLOW_BRAKE = 3.5       # m/s^2: stop for yellow only if this suffices
JUNCTION_HORIZON = 30.0  # m before a junction entry where yielding starts
CONFLICT_STEP = 2.0      # m between path points compared for junction conflicts
CONFLICT_POINTS = 20     # -> 40 m of path through the junction
CONFLICT_MARGIN = 0.3    # m added around both boxes when testing two paths for a conflict
SIGN_PENALTY = 3.0       # s added to the priority key of stop-sign approaches
COMMIT_BRAKE = 5.0       # m/s^2: a vehicle that cannot stop before the entry with this is committed
MAIN_PATH_RATIO = 1.3    # curve-speed ratio over which an ego inside a junction is on the main path
EXIT_CLEAR = 0.0         # m past a junction's exit that must be clear of slow vehicles before entering

GREEN, YELLOW = int(_GREEN), int(_YELLOW)  # plain ints for the compiled code


@dataclass
class AutopilotCommand:
    accel: np.ndarray
    steer: np.ndarray


@dataclass
class DriveTerms:
    """Per autopilot vehicle: speed, behaviour row, IDM desired speed, IDM interaction term, whether
    it is at a standstill target, and the pure-pursuit arc tangent argument."""
    speed: np.ndarray
    behavior: np.ndarray
    v0: np.ndarray
    interaction: np.ndarray
    at_target: np.ndarray
    pursuit: np.ndarray

    @classmethod
    def concatenate(cls, parts: list[DriveTerms]) -> DriveTerms:
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in
                     ("speed", "behavior", "v0", "interaction", "at_target", "pursuit")))


def _idm_interaction(v, dv, gap, s0, headway, a_max, b_comf):
    """IDM interaction term (s*/gap)^2."""
    s_star = s0 + np.maximum(0.0, v * headway + v * dv / (2.0 * np.sqrt(a_max * b_comf)))
    return (s_star / np.maximum(gap, 0.1)) ** 2


def idm_accel(v, v0, gap, dv, s0, headway, a_max, b_comf):
    """IDM acceleration behind a leader ``gap`` metres ahead approached at ``dv`` (inf gap: free road)."""
    free = 1.0 - (v / np.maximum(v0, 0.1)) ** 4
    return a_max * (free - _idm_interaction(v, dv, gap, s0, headway, a_max, b_comf))



@njit(cache=True, inline="always")
def _interaction(v, dv, gap, s0, headway, a_max, b_comf):
    """``_idm_interaction`` of one vehicle (the same operations in the same order)."""
    s_star = s0 + max(0.0, v * headway + v * dv / (2.0 * np.sqrt(a_max * b_comf)))
    ratio = s_star / max(gap, 0.1)
    return ratio * ratio


def drive_terms(f: Fleet, auto: np.ndarray, signal_state: np.ndarray, dt: float, levels: bool = False) -> DriveTerms:
    """The compiled part of driving the autopilot rows ``auto``; updates their stop-sign memory.

    ``levels``: the map has roads above others, so vehicles more than ``LEVEL_GAP`` apart in height
    ignore each other. :func:`commands` turns the terms into accelerations and steering.
    """
    return DriveTerms(f.speed[auto], f.behavior[auto], *_drive_kernel(
        f.route, f.n, f.xy, f.yaw, f.speed, f.z, f.extent, f.wheelbase, f.behavior, f.route_s, f.is_ego,
        f.has_route, f.ignore_lights, f.ignore_signs, f.ignore_vehicles, f.sign_wait, f.sign_cleared_s,
        auto, signal_state, float(dt), bool(levels)))


def commands(terms: DriveTerms) -> AutopilotCommand:
    """Acceleration and steering from the drive terms of any set of vehicles (one world's or the
    rows of several worlds concatenated). The powers and arc tangents are numpy's, whose SIMD
    forms differ in the last bit from the C library's the kernel would use, and elementwise: each
    vehicle gets the same bits however the rows are grouped."""
    v, a_max, b_comf = terms.speed, terms.behavior[:, B_A_MAX], terms.behavior[:, B_B_COMF]
    steer = np.clip(np.arctan(terms.pursuit), -MAX_STEER, MAX_STEER)
    accel = a_max * (1.0 - (v / np.maximum(terms.v0, 0.1)) ** 4 - terms.interaction)
    # IDM only creeps up to a standstill target: close to one, brake to a full stop
    accel = np.where(terms.at_target & (v < 2.0), np.minimum(accel, -b_comf), accel)
    return AutopilotCommand(np.clip(accel, -MAX_BRAKE, a_max), steer)


@njit(cache=True)
def _drive_kernel(route, n, xy, yaw, speed, z, extent, wheelbase, behavior, route_s, is_ego, has_route,
                  ignore_lights, ignore_signs, ignore_vehicles, sign_wait, sign_cleared_s, auto, signal_state,
                  dt, levels):
    """Per autopilot row: IDM desired speed (route curve speeds included), the IDM interaction term
    (the largest over vehicles on the path, stop lines and junction entries), whether it is at a
    standstill target, and the pure-pursuit arc tangent argument. Updates the stop-sign memory."""
    m = len(auto)
    last = route.shape[1] - 1
    v0 = np.empty(m)
    interaction = np.zeros(m)
    pursuit = np.empty(m)
    front = np.empty(m)
    d_entry = np.empty(m)
    j_in = np.empty(m)
    j_out = np.empty(m)
    junction = np.empty(m)
    sign_approach = np.empty(m)
    lead_gap = np.full(m, np.inf)
    lead_slow = np.zeros(m, dtype=np.bool_)
    held = np.zeros(m, dtype=np.bool_)
    gap_stop = np.empty(m)
    approaching = np.zeros(m, dtype=np.bool_)
    inside = np.zeros(m, dtype=np.bool_)
    path = np.empty((PATH_POINTS, 3))  # x, y, heading of the sampled path points
    dist = np.empty(PATH_POINTS)
    corners = np.empty((4, 2))
    for k in range(m):
        r = auto[k]
        x, y, heading, v = xy[r, 0], xy[r, 1], yaw[r], speed[r]
        half_width, wb, s = extent[r, 1], wheelbase[r], route_s[r]
        a_max, b_comf, headway = behavior[r, B_A_MAX], behavior[r, B_B_COMF], behavior[r, B_HEADWAY]
        front[k] = s + extent[r, 0]
        here = route[r, min(np.int64(front[k] / SPACING), last)]
        j_in[k], j_out[k] = here[R_JUNCTION_IN], here[R_JUNCTION_OUT]
        d_entry[k] = j_in[k] - front[k]
        junction[k], sign_approach[k] = here[R_JUNCTION], here[R_JUNCTION_SIGN]

        # ---- steering: pure pursuit on the route, look-ahead from the rear axle growing with speed
        look = min(max(2.5 + 0.4 * v, 3.5), 15.0)
        target_s = min(max(s - 0.5 * wb + look, 0.0), last - 1.0) / SPACING
        i0 = np.int64(target_s)
        frac = target_s - i0
        tx = route[r, i0, 0] * (1.0 - frac) + route[r, i0 + 1, 0] * frac
        ty = route[r, i0, 1] * (1.0 - frac) + route[r, i0 + 1, 1] * frac
        c, sn = np.cos(heading), np.sin(heading)
        dx = tx - (x - 0.5 * wb * c)
        dy = ty - (y - 0.5 * wb * sn)
        lateral = dy * c - dx * sn
        pursuit[k] = 2.0 * wb * lateral / max(dx * dx + dy * dy, 1e-6)

        # ---- path ahead of the front bumper and the curve speed along it
        vcurve = np.inf
        for p in range(PATH_POINTS):
            point = route[r, min(np.int64((front[k] + p * PATH_STEP) / SPACING + 0.5), last)]
            path[p, 0], path[p, 1], path[p, 2] = point[0], point[1], point[R_HEADING]
            vcurve = min(vcurve, np.sqrt(point[R_VCURVE] ** 2 + 2.0 * b_comf * (p * PATH_STEP)))
        v0[k] = min(behavior[r, B_V0], vcurve)

        # ---- vehicles on the path: every vehicle ahead within reach, tested against every path point
        clearance = half_width + PATH_MARGIN
        corner_reach = np.hypot(clearance, 0.5 * PATH_STEP)
        for j in range(n if not ignore_vehicles[r] else 0):
            ox, oy = xy[j, 0] - x, xy[j, 1] - y
            if not (ox * ox + oy * oy < SENSE_RADIUS**2 and ox * c + oy * sn > 0.0):
                continue
            if levels and not abs(z[j] - z[r]) < LEVEL_GAP:
                continue
            cj, sj = np.cos(yaw[j]), np.sin(yaw[j])
            closest = np.inf
            for p in range(PATH_POINTS):
                dist[p] = point_box_distance(path[p, 0], path[p, 1], xy[j, 0], xy[j, 1], cj, sj, extent[j, 0],
                                             extent[j, 1])
                closest = min(closest, dist[p])
            if closest < corner_reach:  # a box corner can reach in between two path points
                box_corners(corners, xy[j, 0], xy[j, 1], cj, sj, extent[j, 0], extent[j, 1])
                for p in range(1, PATH_POINTS):
                    dist[p] = min(dist[p], corner_segment_distance(corners, path[p - 1, 0], path[p - 1, 1],
                                                                   path[p, 0], path[p, 1]))
            first = -1
            for p in range(PATH_POINTS):
                if dist[p] < clearance:
                    first = p
                    break
            if first < 0:
                continue
            # refine between the last free path point and the first blocked one
            before = max(first - 1, 0)
            free_run = min(max(dist[before] - clearance, 0.0), PATH_STEP)
            gap = before * PATH_STEP + free_run if first > 0 else 0.0
            v_other = speed[j] * np.cos(yaw[j] - path[first, 2])
            term = _interaction(v, v - v_other, gap, behavior[r, B_S0], headway, a_max, b_comf)
            interaction[k] = max(interaction[k], term)
            lead_gap[k] = min(lead_gap[k], gap)
            if gap > d_entry[k] and gap < j_out[k] - front[k] + EXIT_CLEAR and v_other < 2.0:
                lead_slow[k] = True

        # ---- stop lines: lights and stop signs
        stop_s = here[R_STOP_S]
        gap_stop[k] = stop_s - front[k]
        state = signal_state[np.int64(here[R_STOP_SIG])]  # -1 (no stop line ahead): the always-green last entry
        braking_needed = v * v / (2.0 * max(gap_stop[k] + 0.5, 0.05))
        light_hold = (not ignore_lights[r] and state != GREEN and state != STOP_SIGN and braking_needed < RED_BRAKE
                      and (state != YELLOW or braking_needed < YELLOW_BRAKE))
        sign_pending = state == STOP_SIGN and not ignore_signs[r] and stop_s > sign_cleared_s[r] + 1e-6
        at_line = sign_pending and gap_stop[k] < SIGN_NEAR and v < STOPPED
        wait = sign_wait[r] + dt if at_line else 0.0
        done = wait >= SIGN_STOP_TIME - 1e-9
        sign_wait[r] = 0.0 if done else wait
        if done:
            sign_cleared_s[r] = stop_s
        held[k] = (light_hold or (sign_pending and not done)) and gap_stop[k] < 80.0
        if held[k]:
            interaction[k] = max(interaction[k], _interaction(v, v, gap_stop[k], STOP_LINE_GAP, headway, a_max,
                                                              b_comf))
        inside[k] = d_entry[k] <= 0.0
        held_before_junction = held[k] and stop_s <= j_in[k] + SIGN_NEAR  # a stop line further on does not count
        approaching[k] = junction[k] >= 0 and d_entry[k] < JUNCTION_HORIZON and not held_before_junction

    # ---- yielding at junctions
    hold = approaching & ~inside & lead_slow & (lead_gap > d_entry)
    hold_gap = np.where(hold, d_entry, np.inf)
    _must_yield(route, extent, speed, route_s, auto, approaching, inside, junction, d_entry, front, j_in, j_out,
                sign_approach, hold, hold_gap)
    _yield_to_egos(route, n, extent, speed, z, route_s, is_ego, has_route, auto, approaching & ~inside, junction,
                   d_entry, front, j_in, j_out, levels, hold, hold_gap)
    at_target = np.zeros(m, dtype=np.bool_)
    for k in range(m):
        r = auto[k]
        if hold[k] and (inside[k] or ignore_vehicles[r]):
            hold[k] = False
        v = speed[r]
        if hold[k]:
            interaction[k] = max(interaction[k], _interaction(v, v, hold_gap[k], STOP_LINE_GAP, behavior[r, B_HEADWAY],
                                                              behavior[r, B_A_MAX], behavior[r, B_B_COMF]))
        at_target[k] = ((held[k] and gap_stop[k] < STOP_LINE_GAP + 1.0)
                        or (hold[k] and hold_gap[k] < STOP_LINE_GAP + 1.0))
    return v0, interaction, at_target, pursuit


@njit(cache=True)
def _must_yield(route, extent, speed, route_s, auto, approaching, inside, junction, d_entry, front, j_in, j_out,
                sign_approach, hold, hold_gap):
    """Mark in ``hold``/``hold_gap`` the approaching autopilot vehicles that must yield at their next
    junction, and the gap to stop in.

    A vehicle yields to every vehicle with a lower priority key whose path through the same
    junction conflicts with its own: the boxes the two would occupy at some pair of path points
    (every ``CONFLICT_STEP`` metres) overlap when inflated by ``CONFLICT_MARGIN``. It stops at the
    junction entry, or, when it is too fast to stop there ("committed"), before the conflict point.
    Vehicles entering at the same point form a queue, left to car following.
    """
    m = len(auto)
    last = route.shape[1] - 1
    key = np.empty(m)
    committed = np.empty(m, dtype=np.bool_)
    for k in range(m):
        v = speed[auto[k]]
        committed[k] = v * v / (2.0 * COMMIT_BRAKE) > d_entry[k]
        if inside[k]:
            key[k] = -1000.0 - (front[k] - j_in[k])
        else:
            key[k] = d_entry[k] / max(v, 2.0) - 100.0 * committed[k]
        key[k] = key[k] + SIGN_PENALTY * sign_approach[k]
    for a in range(m):
        if not approaching[a] or inside[a]:
            continue
        ra = auto[a]
        entry_a = route[ra, min(np.int64(j_in[a] / SPACING), last)]
        for b in range(m):
            if not approaching[b] or junction[b] != junction[a]:
                continue
            if not (key[a] > key[b] or (key[a] == key[b] and a > b)):
                continue
            rb = auto[b]
            entry_b = route[rb, min(np.int64(j_in[b] / SPACING), last)]
            if not np.hypot(entry_a[0] - entry_b[0], entry_a[1] - entry_b[1]) > 1.0:
                continue
            start_a = max(front[a], j_in[a])
            first = _first_conflict(route, ra, start_a, j_out[a], extent[ra], rb,
                                    max(route_s[rb] - extent[rb, 0], j_in[b]), j_out[b], extent[rb])
            if first < CONFLICT_POINTS:
                # room for the front bumper while the centre stays at the last sample before the conflict
                d_conflict = start_a + (first - 1) * CONFLICT_STEP - route_s[ra]
                hold[a] = True
                hold_gap[a] = min(hold_gap[a], d_conflict if committed[a] else d_entry[a])


@njit(cache=True)
def _yield_to_egos(route, n, extent, speed, z, route_s, is_ego, has_route, auto, outside, junction, d_entry, front,
                   j_in, j_out, levels, hold, hold_gap):
    """Mark in ``hold``/``hold_gap`` the approaching autopilot vehicles (``outside`` their junction)
    that must yield to an ego inside it, and the gap to stop in.

    An ego counts as inside from when its front bumper passes the junction entry until its rear
    leaves the exit. There it goes before a vehicle not yet in whose path through the junction
    conflicts with its own when its own path is the main one: its sharpest bend allows at least
    ``MAIN_PATH_RATIO`` times the other's curve speed (the ring of a roundabout against a vehicle
    turning in; not a turning ego against a straight flow). A queue behind it, entering at the same
    point, is left to car following; an ego still approaching gets no priority: it must find its
    own gap.
    """
    last = route.shape[1] - 1
    for e in range(n):
        if not (is_ego[e] and has_route[e]):
            continue
        rear = route_s[e] - extent[e, 0]
        at_rear = route[e, min(max(np.int64(rear / SPACING), 0), last)]
        e_junction, e_in, e_out = at_rear[R_JUNCTION], at_rear[R_JUNCTION_IN], at_rear[R_JUNCTION_OUT]
        if not (e_junction >= 0 and e_in <= route_s[e] + extent[e, 0]):
            continue
        entry_e = route[e, min(np.int64(e_in / SPACING), last)]
        ego_curve = _curve_speed(route, e, e_in, e_out)
        for a in range(len(auto)):
            ra = auto[a]
            if not outside[a] or junction[a] != e_junction:
                continue
            if levels and not abs(z[ra] - z[e]) < LEVEL_GAP:
                continue
            entry_a = route[ra, min(np.int64(j_in[a] / SPACING), last)]
            if not np.hypot(entry_a[0] - entry_e[0], entry_a[1] - entry_e[1]) > 1.0:
                continue
            if not ego_curve > MAIN_PATH_RATIO * _curve_speed(route, ra, j_in[a], j_out[a]):
                continue
            start_a = max(front[a], j_in[a])
            first = _first_conflict(route, ra, start_a, j_out[a], extent[ra], e, max(rear, e_in), e_out, extent[e])
            if first < CONFLICT_POINTS:
                v = speed[ra]
                committed = v * v / (2.0 * COMMIT_BRAKE) > d_entry[a]
                d_conflict = start_a + (first - 1) * CONFLICT_STEP - (front[a] - extent[ra, 0])
                hold[a] = True
                hold_gap[a] = min(hold_gap[a], d_conflict if committed else d_entry[a])


@njit(cache=True)
def _curve_speed(route, row, s_in, s_out):
    """The lowest curve speed (the sharpest bend) of a route between ``s_in`` and ``s_out``."""
    last = route.shape[1] - 1
    lowest = np.inf
    for i in range(CONFLICT_POINTS):
        s = min(s_in + i * CONFLICT_STEP, s_out)
        lowest = min(lowest, route[row, min(np.int64(s / SPACING), last), R_VCURVE])
    return lowest


@njit(cache=True)
def _first_conflict(route, row_a, start_a, end_a, ext_a, row_b, start_b, end_b, ext_b):
    """The first of A's path samples (every ``CONFLICT_STEP`` m from ``start_a`` up to ``end_a``)
    whose box, inflated by ``CONFLICT_MARGIN``, overlaps B's box at one of its samples (from
    ``start_b`` up to ``end_b``); ``CONFLICT_POINTS`` where the two paths do not conflict."""
    last = route.shape[1] - 1
    la, wa = ext_a[0] + CONFLICT_MARGIN, ext_a[1] + CONFLICT_MARGIN
    lb, wb = ext_b[0] + CONFLICT_MARGIN, ext_b[1] + CONFLICT_MARGIN
    reach = np.hypot(la, wa) + np.hypot(lb, wb)
    for ka in range(CONFLICT_POINTS):
        sa = start_a + ka * CONFLICT_STEP
        if not sa <= end_a + 1.0:
            continue
        pa = route[row_a, min(np.int64(sa / SPACING), last)]
        for kb in range(CONFLICT_POINTS):
            sb = start_b + kb * CONFLICT_STEP
            if not sb <= end_b + 1.0:
                continue
            pb = route[row_b, min(np.int64(sb / SPACING), last)]
            dx, dy = pa[0] - pb[0], pa[1] - pb[1]
            if dx * dx + dy * dy < reach**2 and boxes_overlap(pa[0], pa[1], pa[R_HEADING], la, wa, pb[0], pb[1],
                                                              pb[R_HEADING], lb, wb):
                return ka
    return CONFLICT_POINTS
