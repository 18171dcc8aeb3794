"""The road network of one OpenDRIVE map: lanes, their connections, signals and spawn points.

The map is parsed offline by the ``carla`` client wheel (``carla.Map(name, xodr_text)``); the CARLA
server backend hands over the server's ``carla.Map`` instead, so everything built here is shared.
"""
from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import carla
import networkx as nx
import numpy as np

from cardreamer.roadmap.errors import MapError
from cardreamer.roadmap.lane import Lane, LaneKey
from cardreamer.roadmap.preflight import check_with_carla
from cardreamer.roadmap.xodr_file import read_xodr

BUILTIN_MAP_DIR = Path(__file__).resolve().parent.parent / "maps"
CARLA_MAP_DIR_ENV = "CARDREAMER_CARLA_MAPS"
TRAFFIC_LIGHT_TYPE = "1000001"
STOP_SIGN_TYPE = "206"
SAMPLE_SPACING = 1.0
STUB_LENGTH = 0.5
"""Metres: a non-driving section of a lane shorter than this, between driving ones, counts as driving."""
STUB_STEP = 0.05


@dataclass(frozen=True)
class Signal:
    """A traffic light or stop sign, resolved to the lane it controls and the stop line on it."""

    id: str
    kind: str  # "traffic_light" | "stop_sign"
    location: np.ndarray  # (x, y) of the signal itself
    lane: int  # index of the controlled lane
    stop_s: float  # arc length of the stop line on that lane
    junction_id: int  # junction the lane leads into (-1 if none)


@dataclass(frozen=True)
class SpawnPoints:
    """Candidate spawn poses on driving lanes, away from junctions: arrays of equal length."""

    xy: np.ndarray
    yaw: np.ndarray  # radians
    lane: np.ndarray
    s: np.ndarray


def builtin_map_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_MAP_DIR.glob("*.xodr"))


def resolve_map_path(name: str, map_dir: str | os.PathLike | None = None) -> Path:
    """Find a map by built-in name, CARLA town name (in ``map_dir`` or $CARDREAMER_CARLA_MAPS), or path."""
    candidate = Path(name).expanduser()
    if candidate.suffix == ".xodr" or candidate.exists():
        if not candidate.is_file():
            raise MapError(f"map file {candidate} does not exist")
        return candidate
    if (BUILTIN_MAP_DIR / f"{name}.xodr").is_file():
        return BUILTIN_MAP_DIR / f"{name}.xodr"
    search = [d for d in (map_dir, os.environ.get(CARLA_MAP_DIR_ENV)) if d]
    for directory in search:
        path = Path(directory).expanduser() / f"{name}.xodr"
        if path.is_file():
            return path
    where = (f"not in {', '.join(str(d) for d in search)}" if search
             else f"and no town folder is set (env.world.map_dir or ${CARLA_MAP_DIR_ENV})")
    raise MapError(
        f"map {name!r} not found: not a built-in map ({', '.join(builtin_map_names())}), "
        f"not a .xodr path, {where}; for a CARLA town point env.world.map_dir at CARLA's "
        f"CarlaUE4/Content/Carla/Maps/OpenDrive folder"
    )


def map_sha256(name: str, map_dir: str | os.PathLike | None = None) -> str:
    """The SHA-256 of the OpenDRIVE file a map name resolves to (see :func:`resolve_map_path`)."""
    return hashlib.sha256(resolve_map_path(name, map_dir).read_bytes()).hexdigest()


class RoadMap:
    """Lanes of an OpenDRIVE map as polylines, the lane graph, signals and spawn points."""

    def __init__(self, carla_map: carla.Map, name: str, source: Path | None = None,
                 on_stage: Callable[[str], None] | None = None):
        """``on_stage(step)`` is told each step of the construction before it starts."""
        stage = on_stage or (lambda _: None)
        self.carla_map = carla_map
        self.name = name
        self.source = source
        self.geometry_owner: RoadMap = self  # maps derived with extra signals share their owner's geometry
        self._spawn_cache: dict[tuple[float, float], SpawnPoints] = {}
        self.lanes: list[Lane] = []
        self._index: dict[LaneKey, int] = {}
        self._start_wp: dict[int, carla.Waypoint] = {}  # lane index -> its first waypoint
        self._build_lanes(stage)
        self.graph = self._build_graph()
        stage("resolving signals")
        self.signals = self._resolve_signals()
        points = np.concatenate([lane.points for lane in self.lanes])
        self.bounds = (points.min(axis=0), points.max(axis=0))

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, name: str, map_dir: str | os.PathLike | None = None) -> RoadMap:
        """Load a built-in map, a CARLA town from ``map_dir``, or any ``.xodr`` path."""
        path = resolve_map_path(name, map_dir)
        return _load_cached(str(path.resolve()), path.stat().st_mtime_ns)

    @classmethod
    def from_file(cls, path: Path) -> RoadMap:
        """Check the file's XML, then that CARLA reads it in a child process (cached by content),
        and only then read it in this process: a file CARLA crashes on is a MapFileError."""
        text, _ = read_xodr(path)
        check_with_carla(path, text)
        return cls.from_xodr_text(text, path)

    @classmethod
    def from_xodr_text(cls, text: str, path: Path, on_stage: Callable[[str], None] | None = None) -> RoadMap:
        """The road map of OpenDRIVE ``text`` read by CARLA in this process (no safety checks)."""
        stage = on_stage or (lambda _: None)
        stage("parsing the file")
        carla_map = carla.Map(path.stem, text)
        stage("walking the topology")
        if not carla_map.get_topology():
            raise MapError(f"{path}: the map has no driving lanes connected into a topology")
        return cls(carla_map, path.stem, path, on_stage)

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _key(wp: carla.Waypoint) -> LaneKey:
        return (wp.road_id, wp.section_id, wp.lane_id)

    def _build_lanes(self, stage: Callable[[str], None]) -> None:
        topology = [(a, b) for a, b in self.carla_map.get_topology() if a.lane_type == carla.LaneType.Driving]
        starts: dict[LaneKey, carla.Waypoint] = {}
        for a, b in topology:
            starts.setdefault(self._key(a), a)
            if b.lane_type == carla.LaneType.Driving:
                starts.setdefault(self._key(b), b)
        edges: list[tuple[LaneKey, LaneKey]] = []
        for a, b in topology:
            for c in [b] if b.lane_type == carla.LaneType.Driving else self._across_stub(b):
                starts.setdefault(self._key(c), c)
                if self._key(a) != self._key(c):  # offline carla lists an unlinked lane as an edge to itself
                    edges.append((self._key(a), self._key(c)))
        ends = {}
        for a, c in edges:
            ends.setdefault(a, starts[c])
        stage("generating waypoints")
        self._add_unlinked_lane_starts(starts)
        road = None
        for key in sorted(starts):
            if key[0] != road:
                road = key[0]
                stage(f"reading lanes of road {road}")
            self._add_lane(key, starts[key], ends.get(key))
        for a, b in edges:
            ia, ib = self._index[a], self._index[b]
            if ib not in self.lanes[ia].successors:
                self.lanes[ia].successors.append(ib)
                self.lanes[ib].predecessors.append(ia)
        stage("finding neighbouring lanes")
        for lane in self.lanes:
            lane.left = self._neighbour(lane, "left")
            lane.right = self._neighbour(lane, "right")

    def _across_stub(self, wp: carla.Waypoint) -> list[carla.Waypoint]:
        """The driving lanes' first waypoints past a non-driving lane stretch that starts at ``wp``,
        if it is shorter than STUB_LENGTH (a RoadRunner artefact: a driving lane that is type
        "none" for a few centimetres); none if it is longer or leads nowhere."""
        frontier, found, travelled = [wp], {}, 0.0
        while frontier and travelled < STUB_LENGTH:
            ahead = [n for w in frontier for n in w.next(STUB_STEP)]
            travelled += STUB_STEP
            for n in ahead:
                if n.lane_type == carla.LaneType.Driving:
                    found.setdefault(self._key(n), n)
            frontier = [n for n in ahead if n.lane_type != carla.LaneType.Driving]
        return list(found.values())

    def _add_unlinked_lane_starts(self, starts: dict[LaneKey, carla.Waypoint]) -> None:
        """Offline ``get_topology`` omits some lanes of roads linked to nothing (e.g. a lone road);
        find their first waypoint in the driving direction among the map's generated waypoints."""
        first: dict[LaneKey, carla.Waypoint] = {}
        for wp in self.carla_map.generate_waypoints(SAMPLE_SPACING):
            key = self._key(wp)
            if key in starts or wp.lane_type != carla.LaneType.Driving:
                continue
            best = first.get(key)
            # lanes with negative ids drive along increasing s, positive ids against it
            if best is None or (wp.s < best.s if wp.lane_id < 0 else wp.s > best.s):
                first[key] = wp
        starts.update(first)

    def _add_lane(self, key: LaneKey, start: carla.Waypoint, end: carla.Waypoint | None) -> None:
        """Sample lane ``key`` from ``start``; its polyline runs on to ``end``, its successor's first
        waypoint, when that lies at most a sample spacing (plus a stub) beyond its last sample."""
        wps = self._lane_waypoints(key, start)
        if end is not None and 1e-3 < wps[-1].transform.location.distance(end.transform.location) \
                <= SAMPLE_SPACING + STUB_LENGTH:
            wps.append(end)
        if len(wps) < 2:  # a lane shorter than the spacing: close it with its successor's start
            wps = [start] + start.next(max(start.lane_width * 0.1, 0.2))[:1]
        points = np.array([[w.transform.location.x, w.transform.location.y] for w in wps])
        if not np.isfinite(points).all():
            raise MapError(f"{self.source or self.name}: CARLA computes non-finite positions on road {key[0]} "
                           f"lane {key[2]} (geometry it cannot evaluate, e.g. a spiral of constant curvature)")
        keep = np.concatenate([[True], np.linalg.norm(np.diff(points, axis=0), axis=1) > 1e-3])
        wps = [w for w, k in zip(wps, keep) if k]
        points = points[keep]
        if len(points) < 2:
            return
        lc = start.lane_change
        lane = Lane(
            index=len(self.lanes),
            key=key,
            points=points,
            headings=np.angle(np.exp(1j * np.radians([w.transform.rotation.yaw for w in wps]))),
            widths=np.array([w.lane_width for w in wps]),
            is_junction=start.is_junction,
            junction_id=start.junction_id if start.is_junction else -1,
            change_left=lc in (carla.LaneChange.Left, carla.LaneChange.Both),
            change_right=lc in (carla.LaneChange.Right, carla.LaneChange.Both),
            left_marking=[_marking_type(w.left_lane_marking) for w in wps],
            right_marking=[_marking_type(w.right_lane_marking) for w in wps],
        )
        self._index[key] = lane.index
        self.lanes.append(lane)
        self._start_wp[lane.index] = start

    def _lane_waypoints(self, key: LaneKey, start: carla.Waypoint) -> list[carla.Waypoint]:
        """``start`` and waypoints every SAMPLE_SPACING metres along its lane to the lane's end."""
        try:
            return [start] + [w for w in start.next_until_lane_end(SAMPLE_SPACING) if self._key(w) == key]
        except RuntimeError:  # "distance > 0.0": on long lanes rounding can leave no distance to the end
            pass
        wps, forward = [start], key[2] < 0  # negative lane ids drive along increasing s
        while True:
            ahead = [w for w in wps[-1].next(SAMPLE_SPACING) if self._key(w) == key]
            if not ahead or (ahead[0].s > wps[-1].s) != forward:
                return wps
            wps.append(ahead[0])

    def _neighbour(self, lane: Lane, side: str) -> int | None:
        """Index of the adjacent same-direction driving lane on ``side``, if any."""
        start = self._start_wp[lane.index]
        wp = start.get_left_lane() if side == "left" else start.get_right_lane()
        if wp is None or wp.lane_type != carla.LaneType.Driving or wp.lane_id * start.lane_id <= 0:
            return None
        return self._index.get(self._key(wp))

    def _build_graph(self) -> nx.DiGraph:
        """Lane graph: 'follow' edges to successors, 'change' edges to permitted neighbours."""
        graph = nx.DiGraph()
        for lane in self.lanes:
            graph.add_node(lane.index)
            for succ in lane.successors:
                graph.add_edge(lane.index, succ, kind="follow", weight=lane.length)
            for side, allowed in (("left", lane.change_left), ("right", lane.change_right)):
                target = getattr(lane, side)
                if allowed and target is not None and not lane.is_junction:
                    graph.add_edge(lane.index, target, kind=side, weight=LANE_CHANGE_COST)
        return graph

    def _resolve_signals(self) -> list[Signal]:
        signals: list[Signal] = []
        for kind, type_id in (("traffic_light", TRAFFIC_LIGHT_TYPE), ("stop_sign", STOP_SIGN_TYPE)):
            for landmark in self.carla_map.get_all_landmarks_of_type(type_id):
                loc = landmark.transform.location
                for lane_index, stop_s in self._controlled_lanes(landmark):
                    signals.append(Signal(
                        id=str(landmark.id), kind=kind, location=np.array([loc.x, loc.y]),
                        lane=lane_index, stop_s=stop_s,
                        junction_id=self._junction_ahead(lane_index)))
        return signals

    def _controlled_lanes(self, landmark: carla.Landmark) -> list[tuple[int, float]]:
        out = []
        lane_ids = set()
        for lo, hi in landmark.get_lane_validities():
            lane_ids.update(i for i in range(min(lo, hi), max(lo, hi) + 1) if i != 0)
        for lane_id in sorted(lane_ids):
            wp = self.carla_map.get_waypoint_xodr(landmark.road_id, lane_id, landmark.s)
            if wp is None or wp.lane_type != carla.LaneType.Driving:
                continue
            index = self._index.get(self._key(wp))
            if index is None:
                continue
            lane = self.lanes[index]
            s, _ = lane.project(np.array([[wp.transform.location.x, wp.transform.location.y]]))
            out.append((index, float(s[0])))
        return out

    def with_stop_signs(self, points: list[tuple[float, float]]) -> RoadMap:
        """This map plus stop signs at world locations (for maps whose OpenDRIVE lacks them).

        The result shares lanes, graph and rasters with this map but has its own signal list, so a
        task's signs never leak into other users of the cached map.
        """
        if not points:
            return self
        derived = copy.copy(self)
        derived.signals = list(self.signals)
        for x, y in points:
            derived.add_stop_sign(np.array([x, y], dtype=float), sign_id=f"task-stop-{x:.1f}-{y:.1f}")
        return derived

    def add_stop_sign(self, xy: np.ndarray, sign_id: str) -> Signal:
        """Register a stop sign at a world location on this map object (see ``with_stop_signs``)."""
        lane, s, _ = self.locate(np.asarray(xy, dtype=float))
        signal = Signal(id=sign_id, kind="stop_sign", location=np.asarray(xy, dtype=float), lane=lane,
                        stop_s=s, junction_id=self._junction_ahead(lane))
        self.signals.append(signal)
        return signal

    def _junction_ahead(self, lane_index: int) -> int:
        """The junction a lane is in, or else the one it leads into (-1 if none)."""
        if self.lanes[lane_index].is_junction:
            return self.lanes[lane_index].junction_id
        for succ in self.lanes[lane_index].successors:
            if self.lanes[succ].is_junction:
                return self.lanes[succ].junction_id
        return -1

    # ------------------------------------------------------------------ queries
    def lane(self, key: LaneKey) -> Lane:
        return self.lanes[self._index[key]]

    def index_of(self, key: LaneKey) -> int | None:
        """The index of the driving lane with OpenDRIVE identity ``key``, None when the map has none."""
        return self._index.get(key)

    def locate(self, xy: np.ndarray, max_distance: float = 3.0, z: float = 0.0) -> tuple[int, float, float]:
        """The driving lane under a world point at height ``z``: (lane index, s on it, lateral offset).

        Where roads cross over each other (Town04's overpasses), ``z`` picks the deck: the map matches
        locations to lanes in 3-D. Raises MapError if no driving lane is within ``max_distance`` metres.
        """
        x, y = float(xy[0]), float(xy[1])
        wp = self.carla_map.get_waypoint(carla.Location(x=x, y=y, z=float(z)), project_to_road=True,
                                         lane_type=carla.LaneType.Driving)
        index = None if wp is None else self._index.get(self._key(wp))
        if index is not None:
            lane = self.lanes[index]
            s, lateral = lane.project(np.array([[x, y]]))
            distance = float(np.linalg.norm(np.array([x, y]) - lane.position(s[0])))
            if distance <= max_distance + lane.width_at(s[0]) / 2:
                return index, float(s[0]), float(lateral[0])
        raise MapError(f"location ({x:.1f}, {y:.1f}) is not on a driving lane of map {self.name!r} "
                       f"(no lane within {max_distance} m); map bounds are "
                       f"x {self.bounds[0][0]:.0f}..{self.bounds[1][0]:.0f}, "
                       f"y {self.bounds[0][1]:.0f}..{self.bounds[1][1]:.0f}")

    def spawn_points(self, spacing: float = 10.0, margin: float = 5.0) -> SpawnPoints:
        """Poses every ``spacing`` metres on driving lanes outside junctions, ``margin`` from lane ends.

        Only points that ``locate`` resolves to a lane are kept (where roads overlap, e.g. under
        Town04's junction ramps, a lane point can resolve to none). Computed once per argument pair.
        """
        key = (float(spacing), float(margin))
        if key not in self._spawn_cache:
            xy, yaw, lanes, ss = [], [], [], []
            for lane in self.lanes:
                if lane.is_junction or lane.length < 2 * margin:
                    continue
                s = np.arange(margin, lane.length - margin + 1e-9, spacing)
                xy.append(lane.position(s))
                yaw.append(lane.heading_at(s))
                lanes.append(np.full(len(s), lane.index))
                ss.append(s)
            if not xy:  # no lane long enough: no spawn points
                xy, yaw, lanes, ss = [np.empty((0, 2))], [np.empty(0)], [np.empty(0, int)], [np.empty(0)]
            points = SpawnPoints(np.concatenate(xy), np.concatenate(yaw), np.concatenate(lanes), np.concatenate(ss))
            keep = np.array([self._locatable(p) for p in points.xy], dtype=bool)
            self._spawn_cache[key] = SpawnPoints(points.xy[keep], points.yaw[keep], points.lane[keep], points.s[keep])
        return self._spawn_cache[key]

    def _locatable(self, xy: np.ndarray) -> bool:
        try:
            self.locate(xy, max_distance=0.0)
        except MapError:
            return False
        return True


def _marking_type(marking: carla.LaneMarking | None) -> str:
    """CARLA's name of a marking type; carla gives None for a lane without ``<roadMark>``: no marking."""
    return str(carla.LaneMarkingType.NONE) if marking is None else str(marking.type)


LANE_CHANGE_COST = 20.0
"""Route cost, in metres, of one lane change: routes change lanes only when it saves distance."""


_CACHE: dict[tuple[str, int], RoadMap] = {}


def _load_cached(path: str, mtime: int) -> RoadMap:
    key = (path, mtime)
    if key not in _CACHE:
        _CACHE[key] = RoadMap.from_file(Path(path))
    return _CACHE[key]
