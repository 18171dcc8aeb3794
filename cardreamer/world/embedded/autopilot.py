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

from cardreamer.geometry import (
    bounding_radius,
    box_corners,
    boxes_overlap,
    corner_segment_distance,
    point_box_distance,
)
from cardreamer.world.embedded.dynamics import MAX_BRAKE, pure_pursuit
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
from cardreamer.world.embedded.lights import GREEN, STOP_SIGN, YELLOW
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


_NEXT = np.arange(2)  # a route point and the next one


@dataclass
class AutopilotCommand:
    accel: np.ndarray
    steer: np.ndarray


def _idm_interaction(v, dv, gap, s0, headway, a_max, b_comf):
    """IDM interaction term (s*/gap)^2."""
    s_star = s0 + np.maximum(0.0, v * headway + v * dv / (2.0 * np.sqrt(a_max * b_comf)))
    return (s_star / np.maximum(gap, 0.1)) ** 2


def idm_accel(v, v0, gap, dv, s0, headway, a_max, b_comf):
    """IDM acceleration behind a leader ``gap`` metres ahead approached at ``dv`` (inf gap: free road)."""
    free = 1.0 - (v / np.maximum(v0, 0.1)) ** 4
    return a_max * (free - _idm_interaction(v, dv, gap, s0, headway, a_max, b_comf))


def drive(f: Fleet, auto: np.ndarray, signal_state: np.ndarray, dt: float, levels: bool = False) -> AutopilotCommand:
    """Acceleration and steering of the autopilot rows ``auto``; updates their stop-sign memory.

    ``levels``: the map has roads above others, so vehicles more than ``LEVEL_GAP`` apart in height
    ignore each other.
    """
    n = f.n
    xy, yaw, v = f.xy[auto], f.yaw[auto], f.speed[auto]
    ext, wheelbase, s = f.extent[auto], f.wheelbase[auto], f.route_s[auto]
    behavior = f.behavior[auto]
    a_max, b_comf, headway = behavior[:, B_A_MAX], behavior[:, B_B_COMF], behavior[:, B_HEADWAY]
    last = f.route_points - 1
    front = s + ext[:, 0]
    fi = np.minimum((front / SPACING).astype(np.int64), last)
    here = f.points(auto, fi)  # every annotation of the route point under the front bumper
    j_in, j_out = here[:, R_JUNCTION_IN], here[:, R_JUNCTION_OUT]
    d_entry = j_in - front

    # ---- steering: pure pursuit on the route, look-ahead from the rear axle growing with speed
    look = np.clip(2.5 + 0.4 * v, 3.5, 15.0)
    target_s = np.clip(s - 0.5 * wheelbase + look, 0.0, last - 1.0) / SPACING
    i0 = target_s.astype(np.int64)
    frac = (target_s - i0)[:, None]
    pair = f.points(auto[:, None], i0[:, None] + _NEXT)[..., :2]
    steer = pure_pursuit(xy, yaw, wheelbase, pair[:, 0] * (1.0 - frac) + pair[:, 1] * frac)

    # ---- path ahead of the front bumper and the curve speed along it
    ahead = np.arange(PATH_POINTS) * PATH_STEP
    idx = np.minimum(((front[:, None] + ahead) / SPACING + 0.5).astype(np.int64), last)
    path = f.points(auto[:, None], idx)  # (m, PATH_POINTS, ROUTE_COLUMNS)
    vcurve = np.sqrt(path[..., R_VCURVE] ** 2 + 2.0 * b_comf[:, None] * ahead).min(axis=1)
    v0 = np.minimum(behavior[:, B_V0], vcurve)
    interaction = np.zeros(len(auto))

    # ---- vehicles on the path: every vehicle ahead within reach, tested against every path point
    lead_gap = np.full(len(auto), np.inf)
    lead_slow = np.zeros(len(auto), dtype=bool)
    dx = f.xy[None, :n, 0] - xy[:, 0, None]
    dy = f.xy[None, :n, 1] - xy[:, 1, None]
    near = (dx * dx + dy * dy < SENSE_RADIUS**2) & (dx * np.cos(yaw)[:, None] + dy * np.sin(yaw)[:, None] > 0.0)
    if levels:
        near &= np.abs(f.z[None, :n] - f.z[auto, None]) < LEVEL_GAP
    near[f.ignore_vehicles[auto]] = False
    pi, pj = np.nonzero(near)  # (the vehicle itself is not strictly ahead of itself)
    if len(pi):
        dist = point_box_distance(path[pi, :, :2], f.xy[pj], f.yaw[pj], f.extent[pj])
        clearance = (ext[pi, 1] + PATH_MARGIN)[:, None]
        # a box corner can reach in between two path points: there, test the segments too
        near_path = np.flatnonzero(dist.min(axis=1) < np.hypot(clearance[:, 0], 0.5 * PATH_STEP))
        if len(near_path):
            corners = box_corners(f.xy[pj[near_path]], f.yaw[pj[near_path]], f.extent[pj[near_path]])
            points = path[pi[near_path], :, :2]
            between = corner_segment_distance(corners, points[:, :-1], points[:, 1:])
            dist[near_path, 1:] = np.minimum(dist[near_path, 1:], between)
        hit = dist < clearance
        any_hit = hit.any(axis=1)
        pi, pj, hit, dist, clearance = pi[any_hit], pj[any_hit], hit[any_hit], dist[any_hit], clearance[any_hit]
        first = hit.argmax(axis=1)
        # refine between the last free path point and the first blocked one
        before = np.maximum(first - 1, 0)
        free_run = np.clip(dist[np.arange(len(pi)), before] - clearance[:, 0], 0.0, PATH_STEP)
        gap = np.where(first > 0, ahead[before] + free_run, 0.0)
        v_other = f.speed[pj] * np.cos(f.yaw[pj] - path[pi, first, R_HEADING])
        term = _idm_interaction(v[pi], v[pi] - v_other, gap, behavior[pi, B_S0], headway[pi], a_max[pi],
                                b_comf[pi])
        np.maximum.at(interaction, pi, term)
        np.minimum.at(lead_gap, pi, gap)
        blocking_exit = (gap > d_entry[pi]) & (gap < j_out[pi] - front[pi] + EXIT_CLEAR) & (v_other < 2.0)
        lead_slow[pi[blocking_exit]] = True

    # ---- stop lines: lights and stop signs
    stop_sig = here[:, R_STOP_SIG].astype(np.int64)
    stop_s = here[:, R_STOP_S]
    gap_stop = stop_s - front
    state = signal_state[stop_sig]  # -1 (no stop line ahead) reads the always-green last entry
    braking_needed = v * v / (2.0 * np.maximum(gap_stop + 0.5, 0.05))
    light_hold = ~f.ignore_lights[auto] & (((state != GREEN) & (state != STOP_SIGN) & (braking_needed < RED_BRAKE))
                                          & ((state != YELLOW) | (braking_needed < YELLOW_BRAKE)))
    sign_pending = (state == STOP_SIGN) & ~f.ignore_signs[auto] & (stop_s > f.sign_cleared_s[auto] + 1e-6)
    at_line = sign_pending & (gap_stop < SIGN_NEAR) & (v < STOPPED)
    wait = np.where(at_line, f.sign_wait[auto] + dt, 0.0)
    done = wait >= SIGN_STOP_TIME - 1e-9
    f.sign_wait[auto] = np.where(done, 0.0, wait)
    f.sign_cleared_s[auto] = np.where(done, stop_s, f.sign_cleared_s[auto])
    held = (light_hold | (sign_pending & ~done)) & (gap_stop < 80.0)
    stop_term = _idm_interaction(v, v, gap_stop, STOP_LINE_GAP, headway, a_max, b_comf)
    interaction = np.where(held, np.maximum(interaction, stop_term), interaction)

    # ---- yielding at junctions
    junction = here[:, R_JUNCTION]
    inside = d_entry <= 0.0
    held_before_junction = held & (stop_s <= j_in + SIGN_NEAR)  # a stop line further on does not count
    approaching = (junction >= 0) & (d_entry < JUNCTION_HORIZON) & ~held_before_junction
    hold = approaching & ~inside & lead_slow & (lead_gap > d_entry)
    hold_gap = np.where(hold, d_entry, np.inf)
    q = np.flatnonzero(approaching)
    if len(q) > 1 and len(np.unique(junction[q])) < len(q):  # two or more heading into one junction
        must, gap = _must_yield(f, auto, q, junction, inside, d_entry, front, s, v, ext, j_in, j_out,
                                here[:, R_JUNCTION_SIGN])
        hold |= must
        hold_gap = np.minimum(hold_gap, gap)
    outside = q[~inside[q]]
    if len(outside):
        must, gap = _yield_to_egos(f, auto, outside, junction, d_entry, front, v, ext, j_in, j_out, levels)
        hold |= must
        hold_gap = np.minimum(hold_gap, gap)
    hold &= ~inside & ~f.ignore_vehicles[auto]
    entry_term = _idm_interaction(v, v, hold_gap, STOP_LINE_GAP, headway, a_max, b_comf)
    interaction = np.where(hold, np.maximum(interaction, entry_term), interaction)

    accel = a_max * (1.0 - (v / np.maximum(v0, 0.1)) ** 4 - interaction)
    # IDM only creeps up to a standstill target: close to one, brake to a full stop
    at_target = (held & (gap_stop < STOP_LINE_GAP + 1.0)) | (hold & (hold_gap < STOP_LINE_GAP + 1.0))
    accel = np.where(at_target & (v < 2.0), np.minimum(accel, -b_comf), accel)
    return AutopilotCommand(np.clip(accel, -MAX_BRAKE, a_max), steer)


def _must_yield(f, auto, q, junction, inside, d_entry, front, s, v, ext, j_in, j_out, sign_approach):
    """Which autopilot vehicles must yield at their next junction, and the gap to stop in.

    A vehicle yields to every vehicle with a lower priority key whose path through the same
    junction conflicts with its own: the boxes the two would occupy at some pair of path points
    (every ``CONFLICT_STEP`` metres) overlap when inflated by ``CONFLICT_MARGIN``. It stops at the
    junction entry, or, when it is too fast to stop there ("committed"), before the conflict point.
    """
    committed = v * v / (2.0 * COMMIT_BRAKE) > d_entry
    key = np.where(inside, -1000.0 - (front - j_in), d_entry / np.maximum(v, 2.0) - 100.0 * committed)
    key = key + SIGN_PENALTY * sign_approach
    kq = key[q]
    same = junction[q][:, None] == junction[q][None, :]
    lower = (kq[:, None] > kq[None, :]) | ((kq[:, None] == kq[None, :]) & (q[:, None] > q[None, :]))
    candidate = same & lower & ~inside[q][:, None]
    a, b = np.nonzero(candidate)
    must = np.zeros(len(auto), dtype=bool)
    gap = np.full(len(auto), np.inf)
    if not len(a):
        return must, gap
    a, b = q[a], q[b]
    last = f.route_points - 1
    entry_a = f.points(auto[a], np.minimum((j_in[a] / SPACING).astype(np.int64), last))[:, :2]
    entry_b = f.points(auto[b], np.minimum((j_in[b] / SPACING).astype(np.int64), last))[:, :2]
    distinct = np.hypot(*(entry_a - entry_b).T) > 1.0  # same entry point: a queue, left to car following
    a, b = a[distinct], b[distinct]
    if not len(a):
        return must, gap
    start_a = np.maximum(front[a], j_in[a])
    start_b = np.maximum(s[b] - ext[b, 0], j_in[b])
    first = _first_conflict(f, auto[a], start_a, j_out[a], ext[a], auto[b], start_b, j_out[b], ext[b])
    conflict = first < CONFLICT_POINTS
    a = a[conflict]
    # room for the front bumper while the centre stays at the last sample before the conflict
    d_conflict = start_a[conflict] + (first[conflict] - 1) * CONFLICT_STEP - s[a]
    must[a] = True
    np.minimum.at(gap, a, np.where(committed[a], d_conflict, d_entry[a]))
    return must, gap


def _yield_to_egos(f: Fleet, auto: np.ndarray, q: np.ndarray, junction: np.ndarray, d_entry: np.ndarray,
                   front: np.ndarray, v: np.ndarray, ext: np.ndarray, j_in: np.ndarray, j_out: np.ndarray,
                   levels: bool) -> tuple[np.ndarray, np.ndarray]:
    """Which approaching autopilot vehicles must yield to an ego inside their junction, and the gap.

    An ego counts as inside from when its front bumper passes the junction entry until its rear
    leaves the exit. There it goes before a vehicle not yet in whose path through the junction
    conflicts with its own when its own path is the main one: its sharpest bend allows at least
    ``MAIN_PATH_RATIO`` times the other's curve speed (the ring of a roundabout against a vehicle
    turning in; not a turning ego against a straight flow). A queue behind it, entering at the same
    point, is left to car following; an ego still approaching gets no priority: it must find its
    own gap.
    """
    must = np.zeros(len(auto), dtype=bool)
    gap = np.full(len(auto), np.inf)
    egos = np.flatnonzero(f.is_ego[: f.n] & f.has_route[: f.n])
    if not len(egos):
        return must, gap
    last = f.route_points - 1
    rear = f.route_s[egos] - f.extent[egos, 0]
    at_rear = f.points(egos, np.clip((rear / SPACING).astype(np.int64), 0, last))
    e_junction, e_in, e_out = at_rear[:, R_JUNCTION], at_rear[:, R_JUNCTION_IN], at_rear[:, R_JUNCTION_OUT]
    e_inside = (e_junction >= 0) & (e_in <= f.route_s[egos] + f.extent[egos, 0])
    pair = (junction[q][:, None] == e_junction[None, :]) & e_inside[None, :]
    if levels:
        pair &= np.abs(f.z[auto[q]][:, None] - f.z[egos][None, :]) < LEVEL_GAP
    a, k = np.nonzero(pair)
    if not len(a):
        return must, gap
    a, e = q[a], egos[k]
    entry_a = f.points(auto[a], np.minimum((j_in[a] / SPACING).astype(np.int64), last))[:, :2]
    entry_e = f.points(e, np.minimum((e_in[k] / SPACING).astype(np.int64), last))[:, :2]
    distinct = np.hypot(*(entry_a - entry_e).T) > 1.0
    their_curve = _curve_speed(f, auto[a], j_in[a], j_out[a])
    main = _curve_speed(f, e, e_in[k], e_out[k]) > MAIN_PATH_RATIO * their_curve
    keep = distinct & main
    a, e, k = a[keep], e[keep], k[keep]
    if not len(a):
        return must, gap
    start_a = np.maximum(front[a], j_in[a])
    first = _first_conflict(f, auto[a], start_a, j_out[a], ext[a], e, np.maximum(rear[k], e_in[k]), e_out[k],
                            f.extent[e])
    conflict = first < CONFLICT_POINTS
    a = a[conflict]
    committed = v[a] * v[a] / (2.0 * COMMIT_BRAKE) > d_entry[a]
    d_conflict = start_a[conflict] + (first[conflict] - 1) * CONFLICT_STEP - (front[a] - ext[a, 0])
    must[a] = True
    np.minimum.at(gap, a, np.where(committed, d_conflict, d_entry[a]))
    return must, gap


def _curve_speed(f: Fleet, rows: np.ndarray, s_in: np.ndarray, s_out: np.ndarray) -> np.ndarray:
    """The lowest curve speed (its sharpest bend) of each route between ``s_in`` and ``s_out``."""
    s = np.minimum(s_in[:, None] + np.arange(CONFLICT_POINTS) * CONFLICT_STEP, s_out[:, None])
    points = f.points(rows[:, None], np.minimum((s / SPACING).astype(np.int64), f.route_points - 1))
    return points[..., R_VCURVE].min(axis=1)


def _first_conflict(f: Fleet, rows_a: np.ndarray, start_a: np.ndarray, end_a: np.ndarray, ext_a: np.ndarray,
                    rows_b: np.ndarray, start_b: np.ndarray, end_b: np.ndarray,
                    ext_b: np.ndarray) -> np.ndarray:
    """Per pair, the first of A's path samples (every ``CONFLICT_STEP`` m from ``start_a`` up to
    ``end_a``) whose box, inflated by ``CONFLICT_MARGIN``, overlaps B's box at one of its samples
    (from ``start_b`` up to ``end_b``); ``CONFLICT_POINTS`` where the two paths do not conflict."""
    last = f.route_points - 1
    steps = np.arange(CONFLICT_POINTS) * CONFLICT_STEP
    sa, sb = start_a[:, None] + steps, start_b[:, None] + steps
    valid_a, valid_b = sa <= end_a[:, None] + 1.0, sb <= end_b[:, None] + 1.0
    ra = f.points(rows_a[:, None], np.minimum((sa / SPACING).astype(np.int64), last))
    rb = f.points(rows_b[:, None], np.minimum((sb / SPACING).astype(np.int64), last))
    pa, pb = ra[..., :2], rb[..., :2]
    # broad phase on sample pairs, then the boxes each vehicle would occupy at its two samples
    d = pa[:, :, None, :] - pb[:, None, :, :]
    reach = bounding_radius(ext_a, CONFLICT_MARGIN) + bounding_radius(ext_b, CONFLICT_MARGIN)
    close = (np.einsum("pijc,pijc->pij", d, d) < (reach**2)[:, None, None]) & valid_a[:, :, None] & valid_b[:, None, :]
    p, ka, kb = np.nonzero(close)
    hit = boxes_overlap(pa[p, ka], ra[p, ka, R_HEADING], ext_a[p], pb[p, kb], rb[p, kb, R_HEADING], ext_b[p],
                        CONFLICT_MARGIN)
    first = np.full(len(rows_a), CONFLICT_POINTS)
    np.minimum.at(first, p[hit], ka[hit])
    return first
