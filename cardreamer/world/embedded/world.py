"""EmbeddedWorld: the project's own simulator behind the ``World`` interface (the default backend)."""
from __future__ import annotations

import weakref
from collections.abc import Sequence

import carla
import numpy as np
from numba import njit

from cardreamer.geometry import box_corners, boxes_overlap
from cardreamer.roadmap import MapError, RoadMap, Route
from cardreamer.roadmap.route import random_route
from cardreamer.world.api import (
    Behavior,
    CollisionEvent,
    LaneInvasionEvent,
    Pose,
    SpawnError,
    TrafficLightStates,
    VehicleArrays,
    World,
    WorldError,
)
from cardreamer.world.embedded import autopilot
from cardreamer.world.embedded.compiled_geometry import overlapping_pairs
from cardreamer.world.embedded.dynamics import MAX_STEER, ego_acceleration, integrate, resistance_stops
from cardreamer.world.embedded.fleet import R_HEADING, R_Z, Fleet
from cardreamer.world.embedded.lane_change import LaneChanger
from cardreamer.world.embedded.lane_raster import LaneRaster
from cardreamer.world.embedded.lights import TrafficLightController
from cardreamer.world.embedded.route_table import LEVEL_GAP, SPACING, MapIndex, load_route

ROUTE_LENGTH = 300.0    # m of each random route
EXTEND_AHEAD = 60.0     # m: a "continue" route is extended when less than this remains
KEEP_BEHIND = 10.0      # m of the old route kept behind the vehicle when extending
SPAWN_CLEARANCE = 0.5   # m between bounding circles of vehicles placed by spawn_traffic
ROLES = ("ego", "background")
DEFAULT_EXTENT = (2.4, 1.05)

_MAP_CACHE: weakref.WeakKeyDictionary[RoadMap, tuple[MapIndex, LaneRaster]] = weakref.WeakKeyDictionary()


def _map_tables(road_map: RoadMap) -> tuple[MapIndex, LaneRaster]:
    if road_map not in _MAP_CACHE:
        _MAP_CACHE[road_map] = (MapIndex(road_map), LaneRaster(road_map))
    return _MAP_CACHE[road_map]


class EmbeddedWorld(World):
    """A numpy simulator of one OpenDRIVE map: ego vehicles, autopilot traffic, lights, stop signs.

    Deterministic: the same seed and the same calls give bit-identical states.
    """

    def __init__(self, road_map: RoadMap, dt: float = 0.1, seed: int = 0, traffic_lights: dict | None = None):
        if not dt > 0:
            raise WorldError(f"dt must be > 0 s, got {dt!r}")
        self.road_map = road_map
        self.dt = float(dt)
        self.map_index, self.raster = _map_tables(road_map)
        self.lights = TrafficLightController(road_map, traffic_lights)
        self.lane_changer = LaneChanger(road_map)
        self._spawn_points = road_map.spawn_points()
        self.fleet = Fleet()
        self.reset(seed)

    # ------------------------------------------------------------------ lifecycle
    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.fleet.clear()
        self.frame = 0
        self._next_id = 1
        self._row: dict[int, int] = {}
        self._routes: dict[int, Route | None] = {}
        self._collisions: dict[int, list[CollisionEvent]] = {}
        self._invasions: dict[int, list[LaneInvasionEvent]] = {}
        self._snapshot: VehicleArrays | None = None
        self._auto = self._ego = self._routed = np.zeros(0, dtype=np.int64)  # rows by kind, see _update_rows
        self._rows_dirty = True
        self.stats = {"background_collisions": 0}  # overlapping autopilot pairs, summed over ticks
        self.lights.reset(self.rng)

    def close(self) -> None:
        self.fleet.clear()
        self._row.clear()
        self._routes.clear()
        self._snapshot = None
        self._rows_dirty = True

    # ------------------------------------------------------------------ spawning
    def spawn_vehicle(self, pose: Pose, *, role: str = "background", route: Route | None = None,
                      behavior: Behavior | None = None, speed: float = 0.0,
                      extent: tuple[float, float] = DEFAULT_EXTENT) -> int:
        lane, s_lane = self._check_on_road(pose)
        occupant = self._occupant(pose, extent, self._height(lane, s_lane))
        if occupant is not None:
            raise SpawnError(f"cannot spawn at ({pose.x:.1f}, {pose.y:.1f}) on map {self.road_map.name!r}: "
                             f"the box overlaps vehicle {occupant}")
        return self._add(pose, role, route, behavior, speed, extent, lane, s_lane)

    def try_spawn_vehicle(self, pose: Pose, **kwargs) -> int | None:
        lane, s_lane = self._check_on_road(pose)
        if self._occupant(pose, kwargs.get("extent", DEFAULT_EXTENT), self._height(lane, s_lane)) is not None:
            return None
        return self.spawn_vehicle(pose, **kwargs)

    def spawn_traffic(self, count: int, behavior: Behavior | None = None,
                      exclude_near: np.ndarray | None = None, exclude_radius: float = 0.0) -> list[int]:
        points = self._spawn_points
        order = self.rng.permutation(len(points.xy))
        if exclude_near is not None and len(exclude_near):
            far = np.all(np.linalg.norm(points.xy[order][:, None] - np.atleast_2d(exclude_near)[None], axis=-1)
                         > exclude_radius, axis=1)
            order = order[far]
        f = self.fleet
        taken_xy = list(f.xy[: f.n])
        taken_r = list(np.hypot(f.extent[: f.n, 0], f.extent[: f.n, 1]))
        taken_z = list(f.z[: f.n])
        radius = float(np.hypot(*DEFAULT_EXTENT))
        spawned = []
        for k in order:
            if len(spawned) >= count:
                break
            xy = points.xy[k]
            z = self._height(int(points.lane[k]), float(points.s[k]))
            if taken_xy and np.any((np.linalg.norm(np.asarray(taken_xy) - xy, axis=1)
                                    < np.asarray(taken_r) + radius + SPAWN_CLEARANCE)
                                   & (np.abs(np.asarray(taken_z) - z) < LEVEL_GAP)):
                continue
            pose = Pose(float(xy[0]), float(xy[1]), float(points.yaw[k]))
            spawned.append(self._add(pose, "background", None, behavior, 0.0, DEFAULT_EXTENT,
                                     int(points.lane[k]), float(points.s[k])))
            taken_xy.append(xy)
            taken_r.append(radius)
            taken_z.append(z)
        return spawned

    def _check_on_road(self, pose: Pose) -> tuple[int, float]:
        try:
            lane, s, _ = self.road_map.locate(np.array([pose.x, pose.y]), max_distance=0.0)
        except MapError as exc:
            raise SpawnError(f"cannot spawn at ({pose.x:.1f}, {pose.y:.1f}): off the road; {exc}") from None
        return lane, s

    def _height(self, lane: int, s: float) -> float:
        return float(np.interp(s, self.road_map.lanes[lane].s, self.map_index.lane_z[lane]))

    def _occupant(self, pose: Pose, extent, z: float) -> int | None:
        """Id of a vehicle the box at ``pose`` (road height ``z``) would overlap, if any."""
        f = self.fleet
        n = f.n
        if not n:
            return None
        hit = boxes_overlap(np.repeat([[pose.x, pose.y]], n, 0), np.full(n, pose.yaw),
                            np.repeat(np.asarray(extent, float)[None], n, 0), f.xy[:n], f.yaw[:n], f.extent[:n])
        hit &= np.abs(f.z[:n] - z) < LEVEL_GAP
        rows = np.flatnonzero(hit)
        return int(f.ids[rows[0]]) if len(rows) else None

    def _add(self, pose: Pose, role: str, route: Route | None, behavior: Behavior | None, speed: float,
             extent, lane: int, s_lane: float) -> int:
        if role not in ROLES:
            raise WorldError(f"unknown vehicle role {role!r}; valid roles: {ROLES}")
        extent = np.asarray(extent, dtype=float)
        if extent.shape != (2,) or not np.all(extent > 0):
            raise WorldError(f"extent must be (half_length, half_width) > 0, got {extent.tolist()}")
        behavior = behavior or Behavior()
        if behavior.on_route_end not in ("continue", "destroy"):
            raise WorldError(f"Behavior.on_route_end must be 'continue' or 'destroy', got {behavior.on_route_end!r}")
        is_ego = role == "ego"
        starts_here = route is None and not is_ego
        if starts_here:
            route = random_route(self.road_map, self.rng, lane, s_lane, ROUTE_LENGTH)
        f = self.fleet
        row = f.add()
        actor_id = self._next_id
        self._next_id += 1
        f.ids[row] = actor_id
        f.xy[row] = (pose.x, pose.y)
        f.yaw[row] = pose.yaw
        f.speed[row] = speed
        f.velocity[row] = speed * np.array([np.cos(pose.yaw), np.sin(pose.yaw)])
        f.prev_velocity[row] = f.velocity[row]
        f.extent[row] = extent
        f.z[row] = self._height(lane, s_lane)
        f.wheelbase[row] = min(2.9, 1.2 * extent[0])
        f.is_ego[row] = is_ego
        f.behavior[row] = (behavior.desired_speed, behavior.min_gap, behavior.time_headway, behavior.max_accel,
                           behavior.comfort_decel, behavior.politeness)
        f.ignore_lights[row] = behavior.ignore_lights
        f.ignore_signs[row] = behavior.ignore_signs
        f.ignore_vehicles[row] = behavior.ignore_vehicles
        f.auto_lane_change[row] = behavior.auto_lane_change
        f.destroy_at_end[row] = behavior.on_route_end == "destroy"
        if is_ego:  # lane tracking starts from the lanes under the box
            f.corner_lanes[row] = self.raster.lanes_at(self._corners([row]))[0]
            f.off_road[row] = self.raster.lanes_at(f.xy[row][None])[0] < 0
        self._row[actor_id] = row
        self._routes[actor_id] = route
        if route is not None:
            load_route(f, row, route, self.map_index)
            f.route_s[row] = 0.0 if starts_here else float(route.project(np.array([[pose.x, pose.y]]))[0][0])
        self._rows_dirty = True
        self._snapshot = None
        return actor_id

    def destroy(self, actor_id: int) -> None:
        row = self._row_of(actor_id)
        f = self.fleet
        last_id = int(f.ids[f.n - 1])
        f.remove(row)
        del self._row[actor_id]
        self._routes.pop(actor_id, None)
        if last_id != actor_id:
            self._row[last_id] = row
        self._rows_dirty = True
        self._snapshot = None

    def _row_of(self, actor_id: int) -> int:
        try:
            return self._row[actor_id]
        except KeyError:
            raise WorldError(f"no vehicle with id {actor_id} (live ids: {sorted(self._row)[:20]})") from None

    # ------------------------------------------------------------------ control and tick
    def apply_control(self, actor_id: int, control: carla.VehicleControl) -> None:
        row = self._row_of(actor_id)
        f = self.fleet
        if not f.is_ego[row]:
            raise WorldError(f"vehicle {actor_id} is autopilot traffic; apply_control drives ego vehicles only")
        f.throttle[row] = np.clip(control.throttle, 0.0, 1.0)
        f.steer_cmd[row] = np.clip(control.steer, -1.0, 1.0)
        f.brake[row] = np.clip(control.brake, 0.0, 1.0)
        f.reverse[row] = bool(control.reverse)
        f.hand_brake[row] = bool(control.hand_brake)

    def _update_rows(self) -> None:
        if self._rows_dirty:
            ego = self.fleet.is_ego[: self.fleet.n]
            self._auto = np.flatnonzero(~ego)
            self._ego = np.flatnonzero(ego)
            self._routed = np.flatnonzero(self.fleet.has_route[: self.fleet.n])
            self._rows_dirty = False

    def tick(self) -> int:
        """Drive (autopilot and ego controls), move, track routes, advance lights, then detect
        collisions and lane events, extend or end routes, and let traffic change lanes."""
        tick_worlds([self])
        return self.frame

    def _after_motion(self) -> None:
        """The rest of a tick once every vehicle has moved: routes, heights, lights, events, route
        ends and lane changes."""
        self._advance_route_progress()
        self._update_heights()
        self.lights.advance(self.dt)
        self.frame += 1
        self._detect_collisions()
        if len(self._ego):
            self._detect_lane_events()
        elif self._invasions:
            self._invasions = {}
        self._handle_route_ends()
        self._update_rows()  # route ends may have removed vehicles
        if len(self._auto):
            self.lane_changer.consider(self, self._auto)
        self._snapshot = None

    def _advance_route_progress(self) -> None:
        """Move each routed vehicle's route s to the closest route point near its predicted s."""
        f = self.fleet
        if len(self._routed):
            _route_progress(f.route, f.xy, f.yaw, f.speed, f.route_s, self._routed, self.dt)

    def _update_heights(self) -> None:
        """Road height under each vehicle: from its route, or (unrouted egos) from the lane under it."""
        f = self.fleet
        if not self.map_index.has_levels:
            return
        rows = self._routed
        f.z[rows] = f.points(rows, np.minimum((f.route_s[rows] / SPACING).astype(np.int64), f.route_points - 1))[:, R_Z]
        loose = np.flatnonzero(~f.has_route[: f.n])
        if len(loose):
            lanes = self.raster.lanes_at(f.xy[loose])
            f.z[loose] = np.where(lanes >= 0, self.map_index.lane_mean_z[lanes], f.z[loose])

    def _detect_collisions(self) -> None:
        f = self.fleet
        i, j = overlapping_pairs(f.xy[: f.n], f.yaw[: f.n], f.extent[: f.n])
        if len(i) and self.map_index.has_levels:
            same_level = np.abs(f.z[i] - f.z[j]) < LEVEL_GAP
            i, j = i[same_level], j[same_level]
        if not len(i) and not self._collisions:
            return
        self._collisions = {}
        if not len(i):
            return
        rel = np.linalg.norm(f.velocity[i] - f.velocity[j], axis=1)
        self.stats["background_collisions"] += int(np.sum(~f.is_ego[i] & ~f.is_ego[j]))
        for a, b, speed in zip(f.ids[i].tolist(), f.ids[j].tolist(), rel.tolist()):
            self._collisions.setdefault(a, []).append(CollisionEvent(self.frame, a, b, speed))
            self._collisions.setdefault(b, []).append(CollisionEvent(self.frame, b, a, speed))

    def _corners(self, rows) -> np.ndarray:
        f = self.fleet
        return box_corners(f.xy[rows], f.yaw[rows], f.extent[rows])

    def _detect_lane_events(self) -> None:
        f = self.fleet
        ego = self._ego
        corners, lanes, centre = self.raster.lanes_under_boxes(f.xy[ego], f.yaw[ego], f.extent[ego])
        f.off_road[ego] = centre < 0
        previous = f.corner_lanes[ego]
        f.corner_lanes[ego] = lanes
        self._invasions = {}
        changed = np.argwhere((lanes != previous) & (previous >= 0))
        for e, c in changed.tolist():
            marking = self._crossed_marking(int(previous[e, c]), int(lanes[e, c]), corners[e, c])
            if marking is None:
                continue
            actor = int(f.ids[ego[e]])
            events = self._invasions.setdefault(actor, [LaneInvasionEvent(self.frame, actor, ())])
            if marking not in events[0].markings:
                events[0] = LaneInvasionEvent(self.frame, actor, events[0].markings + (marking,))

    def _crossed_marking(self, old: int, new: int, point: np.ndarray) -> str | None:
        """Marking type between lane ``old`` and the side where ``point`` left it (None: lengthwise move)."""
        lane = self.road_map.lanes[old]
        if lane.is_junction or new in lane.successors or new in lane.predecessors:
            return None
        if new >= 0 and self.road_map.lanes[new].is_junction:
            return None
        s, lateral = lane.project(point[None])
        if new >= 0 and self.map_index.has_levels:
            s_new, _ = self.road_map.lanes[new].project(point[None])
            if abs(self._height(old, s[0]) - self._height(new, s_new[0])) >= LEVEL_GAP:
                return None  # a road passing above or below, not a lane boundary
        k = int(np.clip(np.searchsorted(lane.s, s[0]), 0, len(lane.s) - 1))
        return lane.right_marking[k] if lateral[0] > 0 else lane.left_marking[k]

    def _handle_route_ends(self) -> None:
        f = self.fleet
        n = f.n
        remaining = f.route_length[:n] - f.route_s[:n]
        due = f.has_route[:n] & ~f.is_ego[:n] & (
            np.where(f.destroy_at_end[:n], remaining < 0.5, remaining < EXTEND_AHEAD))
        if not due.any():
            return
        for actor_id in f.ids[:n][due].tolist():
            row = self._row[actor_id]  # rows move when vehicles are destroyed: look up each time
            extended = not f.destroy_at_end[row] and self._extend_route(actor_id, row)
            if not extended and f.route_length[row] - f.route_s[row] < 0.5:
                self.destroy(actor_id)

    def _extend_route(self, actor_id: int, row: int) -> bool:
        """Append a random continuation to a route; False at a dead end (the vehicle is then removed at its end)."""
        f = self.fleet
        old = self._routes[actor_id]
        end_lane = int(old.lanes[-1])
        end_s = float(self.road_map.lanes[end_lane].project(old.points[-1:])[0][0])
        lane = self.road_map.lanes[end_lane]
        if not lane.successors and end_s > lane.length - 1.0:  # the road ends at the map edge
            f.destroy_at_end[row] = True
            return False
        more = random_route(self.road_map, self.rng, end_lane, end_s, ROUTE_LENGTH)
        if more.length < 1.0:
            f.destroy_at_end[row] = True
            return False
        cut = min(int(np.searchsorted(old.s, f.route_s[row] - KEEP_BEHIND)), len(old.s) - 2)
        route = Route(np.concatenate([old.points[cut:], more.points[1:]]),
                      np.concatenate([old.headings[cut:], more.headings[1:]]),
                      np.concatenate([old.lanes[cut:], more.lanes[1:]]))
        shift = float(old.s[cut])
        self.replace_route(actor_id, route, f.route_s[row] - shift, f.sign_cleared_s[row] - shift)
        return True

    def replace_route(self, actor_id: int, route: Route, route_s: float | None = None,
                      sign_cleared_s: float = -np.inf) -> None:
        """Give a vehicle a new route; ``route_s`` defaults to the vehicle's projection onto it."""
        row = self._row_of(actor_id)
        f = self.fleet
        load_route(f, row, route, self.map_index)
        if route_s is None:
            route_s = float(route.project(f.xy[row][None])[0][0])
        f.route_s[row] = route_s
        f.sign_cleared_s[row] = sign_cleared_s
        self._routes[actor_id] = route
        self._rows_dirty = True

    # ------------------------------------------------------------------ queries
    def vehicles(self) -> VehicleArrays:
        if self._snapshot is None:
            f = self.fleet
            n = f.n
            self._snapshot = VehicleArrays(
                ids=f.ids[:n].copy(), xy=f.xy[:n].copy(), yaw=f.yaw[:n].copy(), speed=f.speed[:n].copy(),
                velocity=f.velocity[:n].copy(), acceleration=(f.velocity[:n] - f.prev_velocity[:n]) / self.dt,
                extent=f.extent[:n].copy(), is_ego=f.is_ego[:n].copy())
        return self._snapshot

    def route_of(self, actor_id: int) -> Route | None:
        self._row_of(actor_id)
        return self._routes.get(actor_id)

    def route_progress(self, actor_id: int) -> float:
        row = self._row_of(actor_id)
        return float(self.fleet.route_s[row]) if self.fleet.has_route[row] else 0.0

    def traffic_lights(self) -> TrafficLightStates:
        return self.lights.states()

    def set_traffic_light_timing(self, green: float, yellow: float, red: float | None = None,
                                 junction_id: int | None = None) -> None:
        self.lights.set_timing(green, yellow, red, junction_id)

    def collisions(self, actor_id: int) -> list[CollisionEvent]:
        self._row_of(actor_id)
        return list(self._collisions.get(actor_id, ()))

    def lane_invasions(self, actor_id: int) -> list[LaneInvasionEvent]:
        self._row_of(actor_id)
        return list(self._invasions.get(actor_id, ()))

    def is_off_road(self, actor_id: int) -> bool:
        """Whether the centre of a vehicle lies outside every driving lane (ego vehicles; after a tick)."""
        row = self._row_of(actor_id)
        f = self.fleet
        if not f.is_ego[row]:
            return bool(self.raster.lanes_at(f.xy[row][None])[0] < 0)
        return bool(f.off_road[row])



@njit(cache=True)
def _route_progress(route, xy, yaw, speed, route_s, rows, dt):
    """Per routed row: predict the route s a tick on from the speed along the route's heading, then
    take the closest point of the segments before, at and after the predicted one."""
    last = route.shape[1] - 2
    for r in rows:
        s = route_s[r]
        i_now = min(np.int64(s / SPACING), last)
        along = speed[r] * dt * np.cos(yaw[r] - route[r, i_now, R_HEADING])
        guess = min(max(np.int64((s + along) / SPACING), 1), last - 1)
        best, best_d2, best_seg, best_t = -1, np.inf, 0, 0.0
        for w in range(3):
            seg = guess - 1 + w
            ax, ay = route[r, seg, 0], route[r, seg, 1]
            dx, dy = route[r, seg + 1, 0] - ax, route[r, seg + 1, 1] - ay
            rx, ry = xy[r, 0] - ax, xy[r, 1] - ay
            t = min(max((rx * dx + ry * dy) / max(dx * dx + dy * dy, 1e-9), 0.0), 1.0)
            ox, oy = rx - t * dx, ry - t * dy
            d2 = ox * ox + oy * oy
            if d2 < best_d2 or best < 0:
                best, best_d2, best_seg, best_t = w, d2, seg, t
        route_s[r] = (best_seg + best_t) * SPACING


def tick_worlds(worlds: Sequence[EmbeddedWorld]) -> None:
    """``tick()`` every world (all with the same ``dt``) as one batch: the autopilot kernel runs
    per world, the numpy motion (autopilot commands, the egos' pedals, the bicycle model) once over
    the vehicles of all worlds, then each world handles its own events. Every numpy operation here
    is elementwise, so each vehicle gets the same bits as when its world ticks alone."""
    if not worlds:
        return
    dt = worlds[0].dt
    if any(w.dt != dt for w in worlds):
        raise WorldError(f"worlds ticked together need one dt, got {sorted({w.dt for w in worlds})}")
    terms, auto, ego, offset = [], [], [], 0
    for w in worlds:
        w._update_rows()
        if len(w._auto):
            terms.append(autopilot.drive_terms(w.fleet, w._auto, w.lights.signal_state, dt, w.map_index.has_levels))
        auto.append(w._auto + offset)
        ego.append(w._ego + offset)
        offset += w.fleet.n
    auto, ego = _cat(auto), _cat(ego)

    def rows(name: str) -> np.ndarray:
        return _cat([w.fleet.arrays[name][: w.fleet.n] for w in worlds])

    speed, is_ego = rows("speed"), rows("is_ego")
    accel = np.empty(offset)
    steer = np.empty(offset)
    stop_at_zero = np.ones(offset, dtype=bool)
    if len(auto):
        command = autopilot.commands(autopilot.DriveTerms.concatenate(terms))
        accel[auto] = command.accel
        steer[auto] = command.steer
    if len(ego):
        ego_speed, throttle, reverse = speed[ego], rows("throttle")[ego], rows("reverse")[ego]
        accel[ego] = ego_acceleration(ego_speed, throttle, rows("brake")[ego], reverse, rows("hand_brake")[ego])
        steer[ego] = rows("steer_cmd")[ego] * MAX_STEER
        stop_at_zero[ego] = resistance_stops(ego_speed, throttle, reverse)
    xy, yaw, speed = integrate(rows("xy"), rows("yaw"), speed, accel, steer, rows("wheelbase"), dt, stop_at_zero,
                               ~is_ego)
    velocity = speed[:, None] * np.stack([np.cos(yaw), np.sin(yaw)], -1)
    start = 0
    for w in worlds:
        f = w.fleet
        n, end = f.n, start + f.n
        f.prev_velocity[:n] = f.velocity[:n]
        f.xy[:n], f.yaw[:n] = xy[start:end], yaw[start:end]
        f.speed[:n], f.velocity[:n] = speed[start:end], velocity[start:end]
        start = end
        w._after_motion()


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
