"""A scripted expert: follows the ego's route, keeps its distance, obeys lights and signs, yields.

It reads privileged state through the world API (vehicles, their planned routes, light states),
the way CARLA's BasicAgent does, and outputs the action nearest to its desired (acceleration,
steer). Per step it:

- steers by pure pursuit on the route (shifted sideways while overtaking);
- picks a target speed from the task's desired speed, the curvature ahead and the route's end;
- brakes (IDM) for the nearest of: the vehicle on its path ahead, the stop line of a red/yellow
  light or of a stop sign it has not yet stopped at, and the place where it must yield: a point
  where another vehicle's planned route crosses or joins its own and that vehicle would get
  there before the ego has cleared it (gap acceptance, as in unprotected turns and merges);
- where the task lets it leave its lane (``terminal.out_of_lane`` wider than a lane), passes a
  slow leader in a free neighbouring lane and returns once clear of it.
"""
from __future__ import annotations

import numpy as np

from cardreamer.env import CarDreamerEnv
from cardreamer.geometry import bounding_radius, boxes_overlap
from cardreamer.world.api import TrafficLightStates, VehicleArrays

WHEELBASE = 2.9
MAX_STEER = np.radians(35.0)
LOOKAHEAD_DISTANCE = 40.0
PATH_MARGIN = 0.5
"""Metres beside the ego's own half width within which a stopped vehicle's box blocks its path."""
PATH_HALF_WIDTH = 1.6
"""Metres from the path within which a moving vehicle's centre (plus its half width) blocks it."""
STOP_MARGIN = 3.0
"""Where the ego's centre should come to rest before a stop line (m): front bumper just short of it."""
IDM_STANDSTILL = 2.5
COMFORT_LATERAL_ACC = 2.0
SIGN_STOP_TIME = 1.2
"""Seconds the expert stands still at a stop sign (the tasks ask for 1 s)."""

YIELD_HORIZON = 40.0      # m of own path checked for conflicts with other vehicles' routes
YIELD_SENSE = 80.0        # m: vehicles farther away are ignored
OTHER_HORIZON_TIME = 7.0  # s of another vehicle's route looked at (at its current speed, min 15 m)
LANE_CLEARANCE = 0.4      # m between the ego's box and another vehicle's swept lane that counts as clear of it
ON_PATH_DISTANCE = 2.2    # m: a vehicle this close to the own path is a leader/follower, not a crosser
SAFETY_TIME = 2.0         # s between the ego clearing a crossing and the other arriving (half for merges)
START_ACCEL = 2.0         # m/s^2 assumed when estimating how long the ego needs to clear a conflict
BRAKE_FOR_YIELD = 4.0     # m/s^2: past the point where this stops it, the ego is committed
REACTION_TIME = 0.3       # s of driving before braking for a yield point takes hold
STOPPED_SPEED = 0.5       # m/s: vehicles slower than this are waiting, not claiming the way
CREEP_CLEARANCE = 1.0     # m of path between where the waiting ego stands and where its box would touch a lane
MERGE_CHECK = 8.0         # m after a meeting point where merged paths are still together
OTHER_BRAKE = 5.0         # m/s^2 another vehicle may be asked to brake for the ego
OTHER_MARGIN = 3.0        # m it should still have left when stopped

OVERTAKE_TRIGGER_GAP = 22.0   # m: consider passing a slow leader this close
OVERTAKE_SLOW_RATIO = 0.7     # leader speed below this fraction of the target speed counts as slow
OVERTAKE_RETURN_GAP = 8.0     # m the passed vehicle must be behind the ego before returning
LATERAL_RATE = 0.18           # m of sideways shift per step while changing lanes


class ExpertPolicy:
    """Route-following controller with IDM speed control; ``act(env)`` returns an env action."""

    def __init__(self, env: CarDreamerEnv):
        self.env = env
        self._route = None

    def _prepare(self) -> None:
        """Per-episode state: route s of every stop line (lights and stop signs) on the route."""
        env = self.env
        route = env.task.route
        self._route = route
        lanes_on_route = set(route.lanes.tolist())
        self._stops: list[tuple[int, str, float]] = []
        for index, signal in enumerate(env.road_map.signals):
            if signal.lane in lanes_on_route:
                xy = env.road_map.lanes[signal.lane].position(signal.stop_s)
                s, lat = route.project(xy[None])
                if abs(lat[0]) < 2.0:
                    self._stops.append((index, signal.kind, float(s[0])))
        self._stopped_at: set[int] = set()
        self._stop_timer = 0.0
        self._residual = np.zeros(2)
        limit = env.task.terminal_cfg.get("out_of_lane")
        self._may_overtake = limit is None or limit > 4.5
        self._offset = 0.0
        self._offset_target = 0.0
        self._passing: int | None = None

    def act(self, env: CarDreamerEnv | None = None):
        env = env or self.env
        if env.task.route is not self._route:
            self._prepare()
        world, task = env.world, env.task
        route = task.route
        v = world.vehicles()
        i = v.row(env.ego_id)
        xy, yaw, speed = v.xy[i], float(v.yaw[i]), float(v.speed[i])
        s = task.route_s
        target = self._target_speed(route, s, env.config.task.desired_speed)
        gap, leader_speed, leader = self._leader_gap(v, i, route, s)
        if self._may_overtake:
            self._plan_overtake(env, v, i, route, s, gap, leader_speed, leader, target)
            self._offset += float(np.clip(self._offset_target - self._offset, -LATERAL_RATE, LATERAL_RATE))
            if self._offset != 0.0:
                gap, leader_speed, _ = self._leader_gap(v, i, route, s)
        steer = self._steer(route, s, xy, yaw, speed)
        hold = min(self._stop_gap(world.traffic_lights(), s, speed, world.dt),
                   self._yield_gap(env, v, i, route, s, speed, target))
        # the leader moves; a stop line or a yield point stands still
        acc = min(self._idm(speed, target, gap, leader_speed), self._idm(speed, target, hold, 0.0))
        return self._quantize(env, acc, steer)

    # ------------------------------------------------------------------ control
    def _quantize(self, env: CarDreamerEnv, acc: float, steer: float):
        """Nearest action, carrying the rounding error over to the next step (sigma-delta), so a
        coarse discrete grid still tracks the desired acceleration and steer on average."""
        if not env.config.env.action.discrete:
            return env.actions.nearest(acc, steer)
        want = np.array([acc, steer]) + self._residual
        action = env.actions.nearest(*want)
        self._residual = np.clip(want - np.array(env.actions.acc_steer(action)), -1.0, 1.0)
        return action

    def _path(self, route, s_from: float, s_to: float) -> np.ndarray:
        """Route points in [s_from, s_to], shifted sideways by the current overtaking offset."""
        lo, hi = np.searchsorted(route.s, [s_from, s_to])
        points = route.points[lo:hi + 1]
        if self._offset == 0.0 or not len(points):
            return points
        h = route.heading_at(route.s[lo:hi + 1])
        return points + self._offset * np.stack([-np.sin(h), np.cos(h)], -1)

    def _steer(self, route, s, xy, yaw, speed) -> float:
        lookahead = max(4.0, 0.6 * speed + 3.0)
        s_target = min(s + lookahead, route.length)
        target = route.position(s_target)
        if self._offset:
            h = float(route.heading_at(s_target))
            target = target + self._offset * np.array([-np.sin(h), np.cos(h)])
        dx, dy = target - xy
        local_y = -np.sin(yaw) * dx + np.cos(yaw) * dy
        dist2 = max(dx * dx + dy * dy, 1e-6)
        angle = np.arctan(2.0 * WHEELBASE * local_y / dist2)
        return float(np.clip(angle / MAX_STEER, -1.0, 1.0))

    def _target_speed(self, route, s, desired) -> float:
        ahead = np.linspace(s, min(s + 25.0, route.length), 12)
        headings = route.heading_at(ahead)
        curvature = np.abs(np.diff(headings)) / np.maximum(np.diff(ahead), 1e-3)
        kappa = float(curvature.max()) if len(curvature) else 0.0
        curve_speed = np.sqrt(COMFORT_LATERAL_ACC / max(kappa, 1e-4))
        remaining = route.length - s
        return float(min(desired, curve_speed, max(remaining, 0.0) * 0.8 + 1.0))

    @staticmethod
    def _idm(speed, target, gap, leader_speed) -> float:
        a_max, b, s0, headway = 2.0, 3.0, IDM_STANDSTILL, 1.2
        free = 1.0 - (max(speed, 0.0) / max(target, 0.1)) ** 4
        if not np.isfinite(gap):
            return a_max * free
        s_star = s0 + max(0.0, speed * headway + speed * (speed - leader_speed) / (2 * np.sqrt(a_max * b)))
        return a_max * (free - (s_star / max(gap, 0.1)) ** 2)

    # ------------------------------------------------------------------ what to brake for
    def _leader_gap(self, v: VehicleArrays, i: int, route, s) -> tuple[float, float, int | None]:
        """Distance to the nearest vehicle occupying the path ahead, its speed along it, and its row."""
        others = np.flatnonzero(v.ids != v.ids[i])
        if not len(others):
            return np.inf, 0.0, None
        near = others[np.linalg.norm(v.xy[others] - v.xy[i], axis=1) < LOOKAHEAD_DISTANCE + 5]
        if not len(near):
            return np.inf, 0.0, None
        lo = np.searchsorted(route.s, s)
        path = self._path(route, s, s + LOOKAHEAD_DISTANCE)
        if len(path) < 2:
            return np.inf, 0.0, None
        d = _distance_to_boxes(path, v.xy[near], v.yaw[near], v.extent[near])
        # vehicles block with their whole box (a merging one's corner too); moving ones also where
        # their centre line comes near the path
        moving = v.speed[near] > 1.0
        centre = np.linalg.norm(v.xy[near][:, None, :] - path[None], axis=2)
        blocked = (d < v.extent[i, 1] + PATH_MARGIN) | (moving[:, None] & (centre < PATH_HALF_WIDTH + v.extent[near, 1:]))
        first = np.where(blocked.any(axis=1), blocked.argmax(axis=1), 1 << 30)
        if not (first < 1 << 30).any():
            return np.inf, 0.0, None
        j = int(np.argmin(first))
        path_s = route.s[min(lo + first[j], len(route.s) - 1)] - s
        gap = path_s - v.extent[i, 0]
        heading = route.heading_at(s + path_s)
        leader_speed = float(v.velocity[near[j]] @ np.array([np.cos(heading), np.sin(heading)]))
        return max(gap, 0.0), max(leader_speed, 0.0), int(near[j])

    def _stop_gap(self, lights: TrafficLightStates, s, speed, dt) -> float:
        """Distance to the stop line the ego must stop at (red/yellow light, unserved stop sign)."""
        state_of = dict(zip(lights.signals.tolist(), lights.states.tolist()))
        gap = np.inf
        for index, kind, stop_s in self._stops:
            ahead = stop_s - s
            if ahead < -1.0 or ahead > LOOKAHEAD_DISTANCE:
                continue
            if kind == "traffic_light" and state_of.get(index, TrafficLightStates.GREEN) != TrafficLightStates.GREEN:
                braking = speed * speed / (2 * 4.0)
                if ahead > braking or state_of.get(index) == TrafficLightStates.RED and ahead > 0.5 * braking:
                    gap = min(gap, ahead - STOP_MARGIN + IDM_STANDSTILL)
            elif kind == "stop_sign" and index not in self._stopped_at:
                at_line = ahead < STOP_MARGIN + 2.0
                self._stop_timer = self._stop_timer + dt if at_line and abs(speed) < 0.1 else 0.0
                if self._stop_timer >= SIGN_STOP_TIME:
                    self._stopped_at.add(index)
                    self._stop_timer = 0.0
                    continue
                # at the line: hold the brake until the stop is complete
                gap = min(gap, 0.0 if at_line else ahead - STOP_MARGIN + IDM_STANDSTILL)
        return max(gap, 0.0) if np.isfinite(gap) else np.inf

    def _yield_gap(self, env: CarDreamerEnv, v: VehicleArrays, i: int, route, s, speed, target) -> float:
        """Gap to the point where the ego must wait for a vehicle whose route crosses or joins its own.

        The conflict is geometric: the first pose on the ego's path where its box comes within
        ``LANE_CLEARANCE`` of the other vehicle's box at some pose on that vehicle's route (boxes,
        not centre lines, so corners swinging out in a turn count). A crossing vehicle has priority when it would reach that point less than
        ``SAFETY_TIME`` after the ego could have cleared it; the ego then waits with its whole box
        just outside the other's lane (creeping up, as drivers do at a busy junction), unless it is
        already too close to stop there. It also goes when the other could still stop comfortably
        behind it: autopilot traffic brakes for boxes on its path, so a dense flow lets the ego in.
        """
        world = env.world
        own = self._path(route, s, s + YIELD_HORIZON)
        if len(own) < 2:
            return np.inf
        lo = np.searchsorted(route.s, s)
        own_s = route.s[lo:lo + len(own)] - s
        own_yaw = route.heading_at(route.s[lo:lo + len(own)])
        behind = self._path(route, s - 15.0, s)
        near_own = np.concatenate([behind, own])
        others = np.flatnonzero((v.ids != v.ids[i]) & (np.linalg.norm(v.xy - v.xy[i], axis=1) < YIELD_SENSE))
        committed = speed * speed / (2 * BRAKE_FOR_YIELD) + speed * REACTION_TIME
        half = float(v.extent[i, 0])
        best = np.inf
        for j in others.tolist():
            if np.min(np.linalg.norm(near_own - v.xy[j], axis=1)) < ON_PATH_DISTANCE:
                continue  # a leader (handled by car following) or a follower
            intended = world.intended_route(int(v.ids[j]))
            if intended is None:
                continue
            other_route, progress = intended
            v_j = max(float(v.speed[j]), 0.0)
            if v_j < STOPPED_SPEED:
                continue  # waiting (for a light, a sign or the ego itself); car following covers one in the way
            reach = max(15.0, v_j * OTHER_HORIZON_TIME)
            a, b = np.searchsorted(other_route.s, [progress, progress + reach])
            theirs = other_route.points[a:b + 1]
            if len(theirs) < 2:
                continue
            their_yaw = other_route.heading_at(other_route.s[a:b + 1])
            touching = _boxes_meet(own, own_yaw, v.extent[i], theirs, their_yaw, v.extent[j], LANE_CLEARANCE)
            in_lane = touching.any(axis=1)
            if not in_lane.any():
                continue
            k = int(np.argmax(in_lane))
            s_enter = float(own_s[k])
            if s_enter < committed:
                continue  # too late to stop before it: go on
            m = int(np.argmax(touching[k]))
            d_other = float(other_route.s[a + m] - progress) - float(v.extent[j, 0])
            # merging paths stay together after they meet; crossing ones part again
            after = min(int(np.searchsorted(own_s, s_enter + MERGE_CHECK)), len(own) - 1)
            crossing = not in_lane[after]
            if d_other < 0 and not crossing:
                continue  # already past the merge point: it will be a leader, handled by car following
            d_other = max(d_other, 0.0)
            if crossing:
                clear = float(own_s[k + int(np.argmin(in_lane[k:]))]) + half  # the box has left its lane
            else:
                clear = s_enter + 2.0 * half  # the whole box is in its lane
            if d_other / max(v_j, 0.5) > self._time_to_cover(clear, speed, target) + SAFETY_TIME * (1 + crossing) / 2:
                continue  # it arrives well after the ego has cleared the meeting point
            t_enter = self._time_to_cover(s_enter, speed, target)
            brake, margin = (OTHER_BRAKE / 2, 2 * OTHER_MARGIN) if crossing else (OTHER_BRAKE, OTHER_MARGIN)
            if d_other - v_j * t_enter > v_j * v_j / (2 * brake) + margin:
                continue  # it can still stop comfortably for the ego (autopilot traffic brakes for boxes on its path)
            # wait with the centre CREEP_CLEARANCE short of the first pose whose box touches its lane
            best = min(best, s_enter - CREEP_CLEARANCE + IDM_STANDSTILL)
        return max(best, 0.0) if np.isfinite(best) else np.inf

    @staticmethod
    def _time_to_cover(distance: float, speed: float, top: float) -> float:
        """Seconds to drive ``distance`` from ``speed``, accelerating at START_ACCEL up to ``top``."""
        speed = max(speed, 0.0)
        top = max(top, speed, 0.5)
        to_top = (top * top - speed * speed) / (2 * START_ACCEL)
        if distance <= to_top:
            return (-speed + np.sqrt(speed * speed + 2 * START_ACCEL * distance)) / START_ACCEL
        return (top - speed) / START_ACCEL + (distance - to_top) / top

    # ------------------------------------------------------------------ overtaking
    def _plan_overtake(self, env: CarDreamerEnv, v: VehicleArrays, i: int, route, s, gap, leader_speed,
                       leader, target) -> None:
        """Start passing a slow leader in a free neighbouring lane; come back once clear of it."""
        road_map = env.road_map
        lane_now = road_map.lanes[int(route.lanes[min(np.searchsorted(route.s, s), len(route.lanes) - 1)])]
        if self._passing is None:
            if leader is None or gap > OVERTAKE_TRIGGER_GAP or leader_speed > OVERTAKE_SLOW_RATIO * target:
                return
            for side, sign in ((lane_now.left, -1.0), (lane_now.right, 1.0)):
                if side is None or lane_now.is_junction:
                    continue
                offset = sign * float(lane_now.width_at(0.0))
                if self._lane_free(v, i, route, s, offset, (-15.0, 30.0)):
                    self._passing = int(v.ids[leader])
                    self._offset_target = offset
                    return
            return
        rows = np.flatnonzero(v.ids == self._passing)
        passed_s = -np.inf if not len(rows) else float(route.project(v.xy[rows[0]][None])[0][0]) - s
        if passed_s < -OVERTAKE_RETURN_GAP and self._lane_free(v, i, route, s, 0.0, (-OVERTAKE_RETURN_GAP + 1, 20.0)):
            self._passing = None
            self._offset_target = 0.0

    @staticmethod
    def _lane_free(v: VehicleArrays, i: int, route, s, offset: float, window: tuple[float, float]) -> bool:
        """Whether no other vehicle is within ``window`` (m along the route) in the lane at ``offset``."""
        others = np.flatnonzero(v.ids != v.ids[i])
        if not len(others):
            return True
        along, lateral = route.project(v.xy[others])
        inside = (along - s > window[0]) & (along - s < window[1]) & (np.abs(lateral - offset) < 2.6)
        return not inside.any()


def _boxes_meet(xy_a: np.ndarray, yaw_a: np.ndarray, extent_a: np.ndarray, xy_b: np.ndarray, yaw_b: np.ndarray,
                extent_b: np.ndarray, margin: float) -> np.ndarray:
    """(K, M) whether a box of ``extent_a`` at each of K poses comes within ``margin`` of one of
    ``extent_b`` at each of M poses."""
    reach = bounding_radius(extent_a, margin / 2) + bounding_radius(extent_b, margin / 2)
    k, m = np.nonzero(np.linalg.norm(xy_a[:, None] - xy_b[None], axis=2) <= reach)
    meet = np.zeros((len(xy_a), len(xy_b)), dtype=bool)
    meet[k, m] = boxes_overlap(xy_a[k], yaw_a[k], np.broadcast_to(extent_a, (len(k), 2)), xy_b[m], yaw_b[m],
                               np.broadcast_to(extent_b, (len(k), 2)), margin / 2)
    return meet


def _distance_to_boxes(points: np.ndarray, xy: np.ndarray, yaw: np.ndarray, extent: np.ndarray) -> np.ndarray:
    """(V, P) distance from each of P points to each of V vehicles' boxes (0 inside a box)."""
    rel = points[None, :, :] - xy[:, None, :]
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    lon = np.abs(rel[..., 0] * c + rel[..., 1] * s) - extent[:, :1]
    lat = np.abs(-rel[..., 0] * s + rel[..., 1] * c) - extent[:, 1:]
    return np.hypot(np.maximum(lon, 0.0), np.maximum(lat, 0.0))
