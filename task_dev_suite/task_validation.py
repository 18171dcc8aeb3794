"""``cardreamer task validate``: check a task spec against its schema and against its map.

Validation reports every problem at once, each with the YAML ``file:line:col`` of the key it is
about. It runs in two passes over the configuration merged as the env merges it
(``cardreamer.config.merge_config``: defaults, the task file and its bases, overrides, plugins):

1. the schema (the pydantic models of ``cardreamer.config``, with every observation entry
   checked against its handler's config, every part's params against its model, and every
   reward term and enabled terminal setting against the facts the task's parts provide);
2. the map: spawn points on a driving lane and heading along it, routes and flow routes legal on
   the lane graph (every leg planned), goals reachable, stop signs on a lane, no two spawn boxes
   (4.8 x 2.1 m) overlapping, flow gaps longer than a vehicle.

The map pass reads each piece of the spec on its own, so a schema error in one flow does not hide
an off-road spawn in another.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from cardreamer.config import Config, FlowSpec, PoseSpec, merge_config, validate
from cardreamer.config_loading import ConfigError, SourcedConfig
from cardreamer.roadmap import MapError, RoadMap, plan_route, random_route
from cardreamer.task_registry import task_file

VEHICLE_LENGTH = 4.8
VEHICLE_WIDTH = 2.1
SPAWN_TOLERANCE = 0.5
"""How far (m) beyond a lane's edge a spawn point or stop sign may lie and still count as on it."""
WRONG_WAY_DEGREES = 90.0
"""A spawn yaw further than this from its lane's heading drives against the traffic."""

POINT = TypeAdapter(tuple[float, float])
POSE = TypeAdapter(PoseSpec)
FLOW = TypeAdapter(FlowSpec)


@dataclass(frozen=True)
class Problem:
    """One finding: where (file:line:col), the dotted key, and what is wrong."""

    where: str
    key: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else "warning: "
        return f"{self.where}: {tag}{self.key}: {self.message}"


@dataclass
class ValidationReport:
    """The outcome of validating one task file."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    config: Config | None = None      # the validated config (None if the schema failed)
    sourced: SourcedConfig | None = None
    road_map: RoadMap | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def sorted_problems(self) -> list[Problem]:
        """Errors, then warnings, each in file and line order."""
        return sorted(self.errors, key=_position) + sorted(self.warnings, key=_position)

    def format(self) -> str:
        if not self.problems:
            return f"{self.path}: OK"
        lines = [str(p) for p in self.sorted_problems()]
        n_err, n_warn = len(self.errors), len(self.warnings)
        verdict = "INVALID" if n_err else "OK"
        lines.append(f"{self.path}: {verdict} ({n_err} error{'s' * (n_err != 1)}, "
                     f"{n_warn} warning{'s' * (n_warn != 1)})")
        return "\n".join(lines)


def _position(problem: Problem) -> tuple[str, int, int]:
    """Sort key: file, then line and column (problems without a line sort last in their file)."""
    match = re.match(r"^(.*):(\d+):(\d+)$", problem.where)
    if not match:
        return problem.where, 1 << 30, 0
    return match[1], int(match[2]), int(match[3])


# ----------------------------------------------------------------------------- map checks
@dataclass
class _Pose:
    """A parsed spawn pose: world point, heading (radians) and the key it came from."""

    key: str
    label: str
    xy: np.ndarray
    yaw: float


def parse_or_none(adapter: TypeAdapter, value: Any) -> Any:
    """One piece of a raw spec parsed on its own, or None if it is malformed (the schema says why)."""
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return None


def lane_under(road_map: RoadMap, xy: np.ndarray, tolerance: float = SPAWN_TOLERANCE) -> tuple[int, float] | None:
    """(lane, s) of the driving lane under a world point, within ``tolerance`` m of its edge.

    Checks the true distance to the lane centre: ``RoadMap.locate`` measures only the sideways
    offset, so it accepts points far beyond the end of a lane.
    """
    try:
        lane, s, _ = road_map.locate(xy, max_distance=tolerance)
    except MapError:
        return None
    centre = road_map.lanes[lane].position(s)
    if np.linalg.norm(np.asarray(xy, float) - centre) > road_map.lanes[lane].width_at(s) / 2 + tolerance:
        return None
    return lane, s


def _deg(radians: float) -> float:
    return float(np.degrees(radians))


class MapChecker:
    """Checks the geometric pieces of a raw task spec against a loaded road map."""

    def __init__(self, road_map: RoadMap, task: dict, locate: Callable[[str], str]):
        self.map = road_map
        self.task = task
        self.locate = locate
        self.problems: list[Problem] = []

    def error(self, key: str, message: str, severity: str = "error") -> None:
        self.problems.append(Problem(self.locate(key), key, message, severity))

    def run(self) -> list[Problem]:
        ego = self.task.get("ego") if isinstance(self.task.get("ego"), dict) else {}
        traffic = self.task.get("traffic") if isinstance(self.task.get("traffic"), dict) else {}
        ego_poses = self._ego_spawns(ego)
        for pose in ego_poses:
            self._check_route(pose, ego.get("route", "random"), "task.ego.route", ego.get("route_length", 300.0))
        flow_poses = []
        flows = traffic.get("flows") or []
        for i, raw in enumerate(flows if isinstance(flows, list) else []):
            pose = self._flow(i, raw)
            if pose is not None:
                flow_poses.append(pose)
        self._check_overlaps(ego_poses, flow_poses)
        self._check_stop_signs()
        self._check_background(traffic)
        return self.problems

    # -- points on lanes
    def on_lane(self, xy: np.ndarray, key: str, what: str) -> tuple[int, float] | None:
        """(lane, s) under a point, or None after reporting how far off the road it is."""
        found = lane_under(self.map, xy)
        if found is not None:
            return found
        hint = ""
        try:
            lane, s, _ = self.map.locate(xy, max_distance=1e6)
            centre = self.map.lanes[lane].position(s)
            road_id, _, lane_id = self.map.lanes[lane].key
            hint = (f"; the nearest driving lane (road {road_id}, lane {lane_id}) has its centre "
                    f"{np.linalg.norm(xy - centre):.1f} m away at ({centre[0]:.1f}, {centre[1]:.1f})")
        except MapError:
            pass
        self.error(key, f"{what} ({xy[0]:.1f}, {xy[1]:.1f}) is not on a driving lane of map "
                        f"{self.map.name!r}{hint}")
        return None

    def _pose(self, raw: Any, key: str, label: str) -> _Pose | None:
        spec = parse_or_none(POSE, raw)
        if spec is None:
            return None  # the schema reports it
        xy = np.array([spec.x, spec.y], dtype=float)
        found = self.on_lane(xy, key, f"{label} spawn")
        if found is None:
            return None
        lane = self.map.lanes[found[0]]
        heading = float(lane.heading_at(found[1]))
        if spec.yaw is None:
            return _Pose(key, label, xy, heading)
        yaw = float(np.radians(spec.yaw))
        off = abs(_deg(np.angle(np.exp(1j * (yaw - heading)))))
        if off > WRONG_WAY_DEGREES and not lane.is_junction:
            self.error(f"{key}.yaw", f"{label} spawn yaw {spec.yaw:.0f} deg points against its lane, "
                                     f"whose traffic drives toward {_deg(heading):.0f} deg ({off:.0f} deg off); "
                                     f"leave yaw out to take the lane's heading")
        return _Pose(key, label, xy, yaw)

    def _ego_spawns(self, ego: dict) -> list[_Pose]:
        spawn = ego.get("spawn", "random")
        if spawn == "random":
            return []
        if isinstance(spawn, list):
            poses = [self._pose(item, f"task.ego.spawn.{i}", f"ego #{i}") for i, item in enumerate(spawn)]
        else:
            poses = [self._pose(spawn, "task.ego.spawn", "ego")]
        return [p for p in poses if p is not None]

    def _flow(self, i: int, raw: Any) -> _Pose | None:
        key = f"task.traffic.flows.{i}"
        if not isinstance(raw, dict):
            return None
        pose = self._pose(raw.get("spawn"), f"{key}.spawn", f"flow {i}")
        flow = parse_or_none(FLOW, raw)
        if flow is not None:
            low = flow.gap[0]  # [min, max], ordered by the schema
            if low < VEHICLE_LENGTH:
                self.error(f"{key}.gap", f"the smallest gap ({low} m) is shorter than a vehicle "
                                         f"({VEHICLE_LENGTH} m): vehicles would enter on top of each other")
        if pose is not None:
            self._check_route(pose, raw.get("route", "random"), f"{key}.route", None)
        return pose

    # -- routes
    def _check_route(self, start: _Pose, raw_route: Any, key: str, route_length: Any) -> None:
        if raw_route == "random":
            if isinstance(route_length, (int, float)):
                self._check_random_route(start, float(route_length), key)
            return
        if not isinstance(raw_route, list) or not raw_route:
            return  # the schema reports it
        points: list[np.ndarray | None] = []
        for j, raw in enumerate(raw_route):
            xy = parse_or_none(POINT, raw)
            if xy is None:
                points.append(None)
                continue
            xy = np.asarray(xy, dtype=float)
            last = j == len(raw_route) - 1
            points.append(xy if self.on_lane(xy, f"{key}.{j}", "goal" if last else f"waypoint {j}") else None)
        legs = zip([start.xy, *points[:-1]], points, range(len(points)))
        for a, b, j in legs:
            if a is None or b is None:
                continue
            try:
                plan_route(self.map, a, b)
            except MapError:
                frm = f"the {start.label} spawn" if j == 0 else f"waypoint {j - 1}"
                what = "goal" if j == len(points) - 1 else f"waypoint {j}"
                self.error(f"{key}.{j}", f"{what} ({b[0]:.1f}, {b[1]:.1f}) is not reachable from {frm} "
                                         f"({a[0]:.1f}, {a[1]:.1f}) along legal lane connections (wrong "
                                         f"direction of travel, a dead end, or a missing junction movement)")

    def _check_random_route(self, start: _Pose, length: float, key: str) -> None:
        lane, s = lane_under(self.map, start.xy)
        route = random_route(self.map, np.random.default_rng(0), lane, s, length)
        if not self.map.lanes[lane].successors and route.length < length / 2:
            self.error(key, f"the {start.label} spawn's lane ends at the map edge after {route.length:.0f} m, "
                            f"far short of route_length {length:.0f} m", "warning")

    # -- overlaps
    def _check_overlaps(self, ego: list[_Pose], flows: list[_Pose]) -> None:
        pairs = [(a, b) for a in ego for b in flows]
        pairs += [(a, b) for i, a in enumerate(flows) for b in flows[i + 1:]]
        for a, b in pairs:
            if boxes_overlap(a.xy, a.yaw, b.xy, b.yaw):
                self.error(b.key, f"{b.label} spawn at ({b.xy[0]:.1f}, {b.xy[1]:.1f}) overlaps the {a.label} spawn "
                                  f"at ({a.xy[0]:.1f}, {a.xy[1]:.1f}) ({a.key}, {self.locate(a.key)}): "
                                  f"vehicle boxes are {VEHICLE_LENGTH} x {VEHICLE_WIDTH} m; move one along its lane")

    # -- signs and traffic
    def _check_stop_signs(self) -> None:
        signs = self.task.get("stop_signs") or []
        for i, raw in enumerate(signs if isinstance(signs, list) else []):
            xy = parse_or_none(POINT, raw)
            if xy is not None:
                self.on_lane(np.asarray(xy, float), f"task.stop_signs.{i}", "stop sign")

    def _check_background(self, traffic: dict) -> None:
        count = traffic.get("background", 0)
        if isinstance(count, int):
            available = len(self.map.spawn_points().xy)
            if count > available:
                self.error("task.traffic.background", f"{count} background vehicles requested but map "
                                                       f"{self.map.name!r} has only {available} spawn points "
                                                       f"(one every 10 m of lane)", "warning")


def boxes_overlap(xy_a: np.ndarray, yaw_a: float, xy_b: np.ndarray, yaw_b: float,
                  length: float = VEHICLE_LENGTH, width: float = VEHICLE_WIDTH) -> bool:
    """Whether two vehicle boxes (centre, yaw in radians) overlap, by the separating-axis test."""
    def corners(xy, yaw):
        c, s = np.cos(yaw), np.sin(yaw)
        fwd, right = np.array([c, s]) * length / 2, np.array([-s, c]) * width / 2
        return xy + np.array([fwd + right, fwd - right, -fwd - right, -fwd + right])

    ca, cb = corners(np.asarray(xy_a, float), yaw_a), corners(np.asarray(xy_b, float), yaw_b)
    axes = [np.array([np.cos(y), np.sin(y)]) for y in (yaw_a, yaw_b)]
    axes += [np.array([-a[1], a[0]]) for a in axes]
    for axis in axes:
        pa, pb = ca @ axis, cb @ axis
        if pa.max() <= pb.min() or pb.max() <= pa.min():
            return False
    return True


# ----------------------------------------------------------------------------- entry point
def validate_task(path: str | Path, overrides: list[str] | None = None,
                  map_loader: Callable[[str, str | None], RoadMap] = RoadMap.load) -> ValidationReport:
    """Validate a task file (or built-in task name): schema, observations, then map checks."""
    path = task_file(path)
    report = ValidationReport(path)
    try:
        sourced = merge_config(path, overrides)
    except ConfigError as exc:  # unreadable YAML, a malformed override, a plugin that fails: nothing else to check
        report.problems.extend(_problems(exc, path))
        return report
    report.sourced = sourced
    locate = sourced.where
    try:
        report.config = validate(sourced)
    except ConfigError as exc:
        report.problems.extend(_problems(exc, path))
    task = sourced.data.get("task") if isinstance(sourced.data.get("task"), dict) else {}
    map_name = task.get("map")
    if not isinstance(map_name, str):
        return report  # missing or mistyped: the schema reports it
    map_dir = ((sourced.data.get("env") or {}).get("world") or {}).get("map_dir")
    try:
        report.road_map = map_loader(map_name, map_dir if isinstance(map_dir, str) else None)
    except MapError as exc:
        report.problems.append(Problem(locate("task.map"), "task.map", str(exc)))
        return report
    report.problems.extend(MapChecker(report.road_map, task, locate).run())
    return report


def _problems(exc: ConfigError, path: Path) -> list[Problem]:
    """The problems a ConfigError holds, or the whole message as one problem of the file."""
    if exc.problems:
        return [Problem(where, key, message) for where, key, message in exc.problems]
    return [Problem(str(path), "file", str(exc))]
