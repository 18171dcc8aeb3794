"""How the stand-in Traffic Manager plans a vehicle's way: CARLA's localization stage, on the real ``carla.Map``.

Facts from CARLA's source (LibCarla/source/carla/trafficmanager/LocalizationStage.cpp, ``Update`` and
``ImportPath``; Constants.h; InMemoryMap.cpp; PythonAPI/carla/src/TrafficManager.cpp):

- the TM keeps a buffer of its own map's waypoints (MAP_RESOLUTION 5 m apart) per vehicle, filled ahead up to a
  horizon of max(2 v, 15) m (4 v above 60 km/h); waypoints the vehicle has passed are dropped, and the buffer is
  cleared when its front is more than 20 m from the vehicle;
- it always follows successors. Without a path, a fork's branch is random. With a path (``set_path``), each
  location is snapped to the TM's nearest waypoint; at a fork it takes the branch whose junction end point (past the
  junction, at least sqrt(50) m from the branch start) lies on the road of the next path point, else the branch whose
  end point is nearest to it; a path point is consumed once a pushed waypoint is within sqrt(30) m of it, and its
  snapped waypoint is pushed too (the buffer jumps there, another lane included); once the path is used up the TM
  picks branches at random again; a dead end stops the vehicle (CARLA removes it);
- ``get_all_actions`` lists the buffer's front and every waypoint where the road option changes (junction waypoints
  are Left/Right/Straight by their connector's turn, others LaneFollow), as ``[str, carla.Waypoint]`` pairs.
"""
from __future__ import annotations

from typing import Any

import carla
import numpy as np

MAP_RESOLUTION = 5.0             # m between the TM's waypoints
MIN_HORIZON = 15.0               # m of buffer ahead at low speed
HIGHWAY_SPEED = 60.0 / 3.6       # m/s above which the horizon grows faster
MAX_START_DISTANCE = 20.0        # m from the vehicle to its buffer's front before the buffer is rebuilt
CONSUME_DISTANCE = np.sqrt(30.0)  # m: a path point this close to a pushed waypoint is consumed
JUNCTION_END_MIN = np.sqrt(50.0)  # m from a branch's start to the end point whose road names the branch
STRAIGHT_DEGREES = 19.0          # a connector turning less than this is Straight
WALK_LIMIT = 200                 # waypoints walked at most looking for a junction's end (maps without one)


def _location(waypoint: carla.Waypoint) -> np.ndarray:
    loc = waypoint.transform.location
    return np.array([loc.x, loc.y, loc.z])


def _distance(a: carla.Waypoint, b: carla.Waypoint) -> float:
    return float(np.linalg.norm(_location(a) - _location(b)))


def _next(waypoint: carla.Waypoint) -> list[carla.Waypoint]:
    return [w for w in waypoint.next(MAP_RESOLUTION) if w.lane_type == carla.LaneType.Driving]


def road_option(waypoint: carla.Waypoint, known: dict[tuple[int, int, int], str]) -> str:
    """LaneFollow outside junctions; inside, Straight/Left/Right by the heading change along its connector lane
    (``known``: the options of one map's connectors worked out so far)."""
    if not waypoint.is_junction:
        return "LaneFollow"
    key = (waypoint.road_id, waypoint.section_id, waypoint.lane_id)
    if key not in known:
        known[key] = _turn(waypoint)
    return known[key]


def _turn(waypoint: carla.Waypoint) -> str:
    start, end = waypoint, waypoint
    for _ in range(WALK_LIMIT):
        before = [w for w in start.previous(MAP_RESOLUTION) if w.is_junction and w.road_id == waypoint.road_id]
        if not before:
            break
        start = before[0]
    for _ in range(WALK_LIMIT):
        after = [w for w in end.next(MAP_RESOLUTION) if w.is_junction and w.road_id == waypoint.road_id]
        if not after:
            break
        end = after[0]
    turn = (end.transform.rotation.yaw - start.transform.rotation.yaw + 180.0) % 360.0 - 180.0
    if abs(turn) < STRAIGHT_DEGREES:
        return "Straight"
    return "Right" if turn > 0 else "Left"  # CARLA's yaw grows clockwise seen from above


class PathFollower:
    """One vehicle's waypoint buffer and the part of its imported path not consumed yet."""

    def __init__(self, carla_map: carla.Map, rng: np.random.Generator, options: dict[tuple[int, int, int], str]):
        self.carla_map = carla_map
        self.rng = rng
        self.options = options
        self.buffer: list[carla.Waypoint] = []
        self.pending: list[carla.Location] = []
        self.upload = False

    def set_path(self, locations: list[carla.Location]) -> None:
        """``set_path(actor, path, empty_buffer=True)``: the next update keeps only the buffer's front."""
        self.pending = list(locations)
        self.upload = True

    def update(self, xyz: np.ndarray, yaw: float, speed: float) -> None:
        """One localization step for a vehicle at ``xyz`` heading ``yaw`` (radians) at ``speed`` m/s."""
        horizon = max(speed * (4.0 if speed > HIGHWAY_SPEED else 2.0), MIN_HORIZON)
        if self.buffer and np.linalg.norm(_location(self.buffer[0]) - xyz) > MAX_START_DISTANCE:
            self.buffer = []
        heading = np.array([np.cos(yaw), np.sin(yaw)])
        while self.buffer and float(np.dot(_location(self.buffer[0])[:2] - xyz[:2], heading)) <= 0.0:
            self.buffer.pop(0)
        if not self.buffer:
            start = self.carla_map.get_waypoint(carla.Location(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2])))
            self.buffer = [start]
        if self.pending:
            self._import(horizon)
        else:
            self._fill_randomly(horizon)

    def _reach(self) -> float:
        return _distance(self.buffer[0], self.buffer[-1])

    def _fill_randomly(self, horizon: float) -> None:
        while self._reach() <= horizon:
            options = _next(self.buffer[-1])
            if not options:
                return
            self.buffer.append(options[int(self.rng.integers(len(options)))])

    def _import(self, horizon: float) -> None:
        if self.upload:
            self.buffer = self.buffer[:1]
            self.upload = False
        target = self.carla_map.get_waypoint(self.pending[0])
        while self.pending and self._reach() <= horizon:
            options = _next(self.buffer[-1])
            if not options:
                return
            chosen = options[0] if len(options) == 1 else self._branch(options, target)
            self.buffer.append(chosen)
            if _distance(chosen, target) < CONSUME_DISTANCE:
                self.pending.pop(0)
                self.buffer.append(target)
                if self.pending:
                    target = self.carla_map.get_waypoint(self.pending[0])

    def _branch(self, options: list[carla.Waypoint], target: carla.Waypoint) -> carla.Waypoint:
        """The branch whose junction end point is on the target's road, else the one whose end point is nearest."""
        best, best_distance = options[0], np.inf
        for option in options:
            end = self._junction_end(option)
            if end.road_id == target.road_id:
                return option
            distance = _distance(end, target)
            if distance < best_distance:
                best, best_distance = option, distance
        return best

    @staticmethod
    def _junction_end(start: carla.Waypoint) -> carla.Waypoint:
        end = start
        for inside in (False, True):
            for _ in range(WALK_LIMIT):
                if end.is_junction != inside:
                    break
                options = _next(end)
                if not options:
                    return end
                end = options[0]
        for _ in range(WALK_LIMIT):
            if _distance(start, end) >= JUNCTION_END_MIN:
                break
            options = _next(end)
            if not options:
                break
            end = options[0]
        return end

    def polyline(self) -> np.ndarray:
        """(n, 3) locations of the buffer, in order."""
        return np.array([_location(w) for w in self.buffer]) if self.buffer else np.zeros((0, 3))

    def actions(self) -> list[list[Any]]:
        """``get_all_actions``: the front and each waypoint where the road option changes."""
        if not self.buffer:
            return []
        actions, last = [], None
        for waypoint in self.buffer:
            option = road_option(waypoint, self.options)
            if option != last:
                actions.append([option, waypoint])
                last = option
        return actions
