"""Write a map spec as OpenDRIVE 1.4 text that CARLA's `carla.Map` reads.

What CARLA's reader needs (measured, see NOTES.md): each junction movement is its own single-lane
connecting road whose road-level predecessor/successor name the incoming/outgoing roads (elementType
"road") and whose lane carries lane-level predecessor/successor ids; junction ids differ from road
ids; an ``<arc>`` (never a spiral of constant curvature) and a ``<line>`` when |curvature| < 1e-5;
signals with explicit ``<validity>``; a tapered lane needs a successor.  Output is deterministic:
the same spec gives byte-identical text.
"""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cardreamer.atomic import write_atomic
from task_dev_suite.map_spec import (
    ArcSegment,
    CubicSegment,
    JunctionSpec,
    LineSegment,
    MapSpec,
    MapSpecError,
    Network,
    RoadEnd,
    RoadSpec,
    expand,
    load_spec,
)

MIN_CURVATURE = 1e-5  # below this an arc is written as a line (float32 precision in CARLA)
TURN_THRESHOLD = math.radians(30)  # a movement turning more than this is a left/right turn
TRAFFIC_LIGHT, STOP_SIGN = "1000001", "206"

_GAUSS_X, _GAUSS_W = np.polynomial.legendre.leggauss(16)
_TANGENT_FACTORS = np.linspace(0.3, 1.8, 61)  # candidate tangent lengths, times the chord
_CURVATURE_SAMPLES = np.linspace(0.0, 1.0, 81)


# ------------------------------------------------------------------------------------------ geometry


@dataclass(frozen=True)
class Pose2:
    x: float
    y: float
    h: float  # radians

    def moved(self, forward: float, left: float) -> Pose2:
        c, s = math.cos(self.h), math.sin(self.h)
        return Pose2(self.x + forward * c - left * s, self.y + forward * s + left * c, self.h)


@dataclass(frozen=True)
class Geometry:
    """One ``<geometry>`` record: a line, an arc or a normalized paramPoly3 (u, v coefficients)."""

    start: Pose2
    length: float
    curvature: float = 0.0
    poly: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    @property
    def kind(self) -> str:
        if self.poly is not None:
            return "paramPoly3"
        return "arc" if abs(self.curvature) >= MIN_CURVATURE else "line"

    def sample(self, n: int) -> np.ndarray:
        """``n`` points (x, y) along the geometry, ends included."""
        t = np.linspace(0.0, 1.0, n)
        if self.poly is not None:
            u, v = (np.polyval(c[::-1], t) for c in self.poly)
        elif self.kind == "arc":
            k = self.curvature
            a = t * self.length * k
            u, v = np.sin(a) / k, (1 - np.cos(a)) / k
        else:
            u, v = t * self.length, np.zeros_like(t)
        c, s = math.cos(self.start.h), math.sin(self.start.h)
        return np.stack([self.start.x + u * c - v * s, self.start.y + u * s + v * c], axis=1)

    def end(self) -> Pose2:
        if self.poly is not None:
            (_, bu, cu, du), (_, bv, cv, dv) = self.poly
            x, y = self.sample(2)[1]
            return Pose2(
                float(x), float(y), self.start.h + math.atan2(bv + 2 * cv + 3 * dv, bu + 2 * cu + 3 * du)
            )
        if self.kind == "arc":
            k, h = self.curvature, self.start.h + self.length * self.curvature
            return Pose2(
                self.start.x + (math.sin(h) - math.sin(self.start.h)) / k,
                self.start.y - (math.cos(h) - math.cos(self.start.h)) / k,
                h,
            )
        return self.start.moved(self.length, 0.0)


def hermite(start: Pose2, end: Pose2) -> tuple[Geometry, float]:
    """The cubic from ``start`` to ``end`` tangent to both headings, with the tangent length that
    minimises the peak curvature; returns the geometry and that peak |curvature|."""
    c, s = math.cos(start.h), math.sin(start.h)
    dx, dy = end.x - start.x, end.y - start.y
    x1, y1 = dx * c + dy * s, -dx * s + dy * c  # end point in the start's frame
    dh = end.h - start.h
    chord = math.hypot(x1, y1)
    if chord < 1e-6:
        raise MapSpecError(f"cubic from {start} to {end}: the two ends coincide")
    # All candidate tangent lengths at once: coefficients (F, 1), derivatives (F, P).
    m = chord * _TANGENT_FACTORS[:, None]
    cu, du = 3 * x1 - 2 * m - m * math.cos(dh), -2 * x1 + m + m * math.cos(dh)
    cv, dv = 3 * y1 - m * math.sin(dh), -2 * y1 + m * math.sin(dh)
    p = _CURVATURE_SAMPLES[None, :]
    u1, v1 = m + 2 * cu * p + 3 * du * p**2, 2 * cv * p + 3 * dv * p**2
    u2, v2 = 2 * cu + 6 * du * p, 2 * cv + 6 * dv * p
    speed = np.hypot(u1, v1)
    with np.errstate(divide="ignore", invalid="ignore"):
        peaks = np.max(np.abs(u1 * v2 - v1 * u2) / speed**3, axis=1)
    peaks[speed.min(axis=1) < 1e-6] = np.inf  # a cusp
    best = int(np.argmin(peaks + 1e-9 * np.abs(_TANGENT_FACTORS - 1.0)))  # ties (straight) go to the chord
    u = (0.0, float(m[best, 0]), float(cu[best, 0]), float(du[best, 0]))
    v = (0.0, 0.0, float(cv[best, 0]), float(dv[best, 0]))
    return Geometry(start=start, length=_poly_length(u, v), poly=(u, v)), float(peaks[best])


def _derivatives(u, v, p):
    du = u[1] + 2 * u[2] * p + 3 * u[3] * p**2
    dv = v[1] + 2 * v[2] * p + 3 * v[3] * p**2
    return du, dv


def _poly_length(u, v) -> float:
    edges = np.linspace(0.0, 1.0, 9)
    total = 0.0
    for a, b in itertools.pairwise(edges):
        p = (a + b) / 2 + (b - a) / 2 * _GAUSS_X
        total += (b - a) / 2 * float(np.sum(_GAUSS_W * np.hypot(*_derivatives(u, v, p))))
    return total


def _pose(p) -> Pose2:
    return Pose2(p.x, p.y, math.radians(p.heading))


def road_geometries(road: RoadSpec) -> list[Geometry]:
    pose, out = _pose(road.start), []
    for seg in road.segments:
        if isinstance(seg, LineSegment):
            g = Geometry(start=pose, length=seg.length)
        elif isinstance(seg, ArcSegment):
            g = Geometry(start=pose, length=seg.length, curvature=seg.curvature)
        else:
            assert isinstance(seg, CubicSegment)
            g, _ = hermite(pose, _pose(seg.end))
        out.append(g)
        pose = _pose(seg.end) if isinstance(seg, CubicSegment) else g.end()
    return out


# ------------------------------------------------------------------------------------------ network


@dataclass
class Road:
    """A road as written: geometry, lanes (right ids -1..-right, left 1..left), links."""

    id: int
    geometries: list[Geometry]
    right: int
    left: int
    width: float
    speed_limit: float
    kind: str
    junction: int = -1
    predecessor: tuple[str, int, str | None] | None = None  # (elementType, id, contactPoint)
    successor: tuple[str, int, str | None] | None = None
    lane_predecessors: dict[int, int] = field(default_factory=dict)
    lane_successors: dict[int, int] = field(default_factory=dict)
    taper_length: float = 0.0
    signals: list[dict] = field(default_factory=list)

    @property
    def length(self) -> float:
        return sum(g.length for g in self.geometries)

    def end_pose(self, contact: str) -> Pose2:
        """The pose at one end, heading into the road's s direction."""
        return self.geometries[0].start if contact == "start" else self.geometries[-1].end()

    def lane_centre(self, contact: str, lane: int) -> Pose2:
        """Centre of ``lane`` at one end, heading in the lane's driving direction."""
        pose = self.end_pose(contact)
        offset = (abs(lane) - 0.5) * self.width * (1 if lane > 0 else -1)
        centre = pose.moved(0.0, offset)
        return centre if lane < 0 else Pose2(centre.x, centre.y, centre.h + math.pi)

    def lanes_into(self, contact: str) -> list[int]:
        """Lanes driving towards this end, innermost first."""
        return [-k for k in range(1, self.right + 1)] if contact == "end" else list(range(1, self.left + 1))

    def lanes_out_of(self, contact: str) -> list[int]:
        return self.lanes_into("start" if contact == "end" else "end")


@dataclass
class Junction:
    id: int
    connections: list[tuple[int, int, int, int]]  # (incoming road, connecting road, from lane, to lane)
    controllers: list[int]


def build_network(net: Network) -> tuple[list[Road], list[Junction], list[tuple[int, list[str]]]]:
    """Roads (incl. connecting roads), junctions and controllers (id, signal ids) for ``net``."""
    roads = {
        r.id: Road(
            id=r.id,
            geometries=road_geometries(r),
            right=r.lanes.right,
            left=r.lanes.left,
            width=r.lanes.width,
            speed_limit=r.speed_limit,
            kind=r.kind,
            taper_length=r.taper.length if r.taper else 0.0,
        )
        for r in net.roads
    }
    for spec in net.roads:
        _link_roads(roads, spec)
    used = set(roads) | {j.id for j in net.junctions}
    next_id = 1000 * (max(used) // 1000 + 1)
    signal_id, controller_id = 1, 1
    junctions, controllers = [], []
    for spec in net.junctions:
        for arm in spec.arms:
            link = ("junction", spec.id, None)
            if arm.contact == "start":
                roads[arm.road].predecessor = link
            else:
                roads[arm.road].successor = link
        junction = Junction(id=spec.id, connections=[], controllers=[])
        for (src, from_lane), (dst, to_lane) in _movements(roads, spec):
            connector = _connector(roads, next_id, spec.id, src, from_lane, dst, to_lane)
            roads[connector.id] = connector
            junction.connections.append((src.road, connector.id, from_lane, to_lane))
            next_id += 1
        if spec.control != "none":
            for arm in spec.arms:
                road = roads[arm.road]
                lanes = road.lanes_into(arm.contact)
                if not lanes:
                    continue
                road.signals.append(_signal(road, arm.contact, lanes, spec.control, signal_id))
                if spec.control == "traffic_light":
                    controllers.append((controller_id, [str(signal_id)]))
                    junction.controllers.append(controller_id)
                    controller_id += 1
                signal_id += 1
        junctions.append(junction)
    return list(roads.values()), junctions, controllers


def _link_roads(roads: dict[int, Road], spec: RoadSpec) -> None:
    """Road-to-road links of ``spec`` (and the other road's link back, when it gives none)."""
    for end, link in (("start", spec.predecessor), ("end", spec.successor)):
        if link is None:
            continue
        _link(roads[spec.id], end, roads[link.road], link.contact)
        other = roads[link.road]
        if (other.predecessor if link.contact == "start" else other.successor) is None:
            _link(other, link.contact, roads[spec.id], end)
    if spec.taper:
        outer = -roads[spec.id].right
        roads[spec.id].lane_successors[outer] = outer + 1  # the tapered lane continues in its left neighbour


def _link(road: Road, end: str, other: Road, other_contact: str) -> None:
    """Link ``road``'s ``end`` to ``other``; lanes keep their id when the roads run on, else flip."""
    runs_on = (end == "end") == (other_contact == "start")  # s directions agree
    lanes = {}
    for lane in [*range(-road.right, 0), *range(1, road.left + 1)]:
        target = lane if runs_on else -lane
        if -other.right <= target <= other.left:
            lanes[lane] = target
    if end == "start":
        road.predecessor, road.lane_predecessors = ("road", other.id, other_contact), lanes
    else:
        road.successor = ("road", other.id, other_contact)
        road.lane_successors = {**lanes, **road.lane_successors}  # keep a taper's successor


def _movements(roads: dict[int, Road], spec: JunctionSpec):
    """((incoming end, lane), (outgoing end, lane)) pairs of the junction, in a fixed order."""
    arm_of = {a.road: a for a in spec.arms}
    if spec.movements is not None:
        for m in spec.movements:
            into = roads[m.from_.road].lanes_into(arm_of[m.from_.road].contact)
            out_of = roads[m.to.road].lanes_out_of(arm_of[m.to.road].contact)
            if m.from_.lane not in into or m.to.lane not in out_of:
                raise MapSpecError(
                    f"junction {spec.id}: movement from road {m.from_.road} lane {m.from_.lane} to road "
                    f"{m.to.road} lane {m.to.lane} must start on a lane driving into the junction "
                    f"({into}) and end on one driving out of it ({out_of})"
                )
        return [
            ((arm_of[m.from_.road], m.from_.lane), (arm_of[m.to.road], m.to.lane)) for m in spec.movements
        ]
    out = []
    for src in spec.arms:
        incoming = roads[src.road].lanes_into(src.contact)
        if not incoming:
            continue
        heading_in = roads[src.road].lane_centre(src.contact, incoming[0]).h
        turns = []
        for dst in spec.arms:
            outgoing = roads[dst.road].lanes_out_of(dst.contact)
            if dst is src or not outgoing:
                continue
            heading_out = roads[dst.road].lane_centre(dst.contact, outgoing[0]).h
            turns.append((_wrap(heading_out - heading_in), dst, outgoing))
        has_left = any(t > TURN_THRESHOLD for t, _, _ in turns)
        for turn, dst, outgoing in sorted(turns, key=lambda item: item[0]):
            if turn > TURN_THRESHOLD:  # left: innermost lane to innermost lane
                pairs = [(incoming[0], outgoing[0])]
            elif turn < -TURN_THRESHOLD:  # right: outermost to outermost
                pairs = [(incoming[-1], outgoing[-1])]
            else:  # straight: lane by lane; the innermost lane is kept for left turns when there are some
                first = 1 if has_left and len(incoming) > 1 else 0
                pairs = [
                    (incoming[i], outgoing[min(i, len(outgoing) - 1)]) for i in range(first, len(incoming))
                ]
            out += [((src, a), (dst, b)) for a, b in pairs]
    return out


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def _connector(roads, road_id, junction_id, src: RoadEnd, from_lane, dst: RoadEnd, to_lane) -> Road:
    """A single-lane connecting road; its reference line is the lane's left border."""
    a, b = roads[src.road], roads[dst.road]
    start = a.lane_centre(src.contact, from_lane)
    end = b.lane_centre(dst.contact, to_lane)
    start, end = start.moved(0.0, a.width / 2), end.moved(0.0, b.width / 2)
    geometry, peak = hermite(start, end)
    width = a.width
    if peak * width >= 1.0:
        raise MapSpecError(
            f"junction {junction_id}: the movement from road {src.road} lane {from_lane} to road {dst.road} "
            f"lane {to_lane} bends too sharply (peak curvature {peak:.3f} 1/m x lane width {width} m = "
            f"{peak * width:.2f} >= 1, the lane would fold); make the junction larger"
        )
    return Road(
        id=road_id,
        geometries=[geometry],
        right=1,
        left=0,
        width=width,
        speed_limit=min(a.speed_limit, b.speed_limit),
        kind=a.kind,
        junction=junction_id,
        predecessor=("road", src.road, src.contact),
        successor=("road", dst.road, dst.contact),
        lane_predecessors={-1: from_lane},
        lane_successors={-1: to_lane},
    )


def _signal(road: Road, contact: str, lanes: list[int], control: str, signal_id: int) -> dict:
    """A traffic light or stop sign at the road's side, 1 m before the junction, valid for ``lanes``."""
    at_end = contact == "end"
    side = road.right if at_end else road.left
    light = control == "traffic_light"
    return {
        "id": str(signal_id),
        "s": road.length - 1.0 if at_end else 1.0,
        "t": -(side * road.width + 1.0) if at_end else side * road.width + 1.0,
        "orientation": "+" if at_end else "-",
        "dynamic": "yes" if light else "no",
        "type": TRAFFIC_LIGHT if light else STOP_SIGN,
        "name": ("TrafficLight" if light else "StopSign") + f"_{signal_id}",
        "zOffset": 3.0 if light else 2.0,
        "height": 1.0,
        "width": 0.5 if light else 0.8,
        "validity": (min(lanes), max(lanes)),
    }


# ---------------------------------------------------------------------------------------------- XML


def _num(value: float) -> str:
    value = 0.0 if abs(value) < 1e-12 else value
    return format(float(value), ".12g")


def _sub(parent: ET.Element, tag: str, **attrs) -> ET.Element:
    return ET.SubElement(
        parent, tag, {k: _num(v) if isinstance(v, float) else str(v) for k, v in attrs.items()}
    )


def network_to_xodr(net: Network) -> str:
    roads, junctions, controllers = build_network(net)
    points = np.concatenate([g.sample(max(2, int(g.length / 5) + 2)) for r in roads for g in r.geometries])
    root = ET.Element("OpenDRIVE")
    header = _sub(
        root,
        "header",
        revMajor=1,
        revMinor=4,
        name=net.name,
        version="1.00",
        north=float(points[:, 1].max()),
        south=float(points[:, 1].min()),
        east=float(points[:, 0].max()),
        west=float(points[:, 0].min()),
        vendor="CarDreamer",
    )
    ET.SubElement(header, "geoReference").text = net.geo_reference
    for road in roads:
        _write_road(root, road)
    for cid, signal_ids in controllers:
        controller = _sub(root, "controller", id=cid, name=f"Controller_{cid}", sequence=0)
        for sid in signal_ids:
            _sub(controller, "control", signalId=sid, type="0")
    for junction in junctions:
        j = _sub(root, "junction", id=junction.id, name=f"Junction_{junction.id}")
        for k, (incoming, connecting, from_lane, to_lane) in enumerate(junction.connections):
            c = _sub(
                j, "connection", id=k, incomingRoad=incoming, connectingRoad=connecting, contactPoint="start"
            )
            _sub(c, "laneLink", **{"from": from_lane, "to": -1})
        for seq, cid in enumerate(junction.controllers):
            _sub(j, "controller", id=cid, type="0", sequence=seq)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _write_road(root: ET.Element, road: Road) -> None:
    r = _sub(root, "road", name=f"Road_{road.id}", length=road.length, id=road.id, junction=road.junction)
    link = _sub(r, "link")
    for tag, target in (("predecessor", road.predecessor), ("successor", road.successor)):
        if target is not None:
            kind, target_id, contact = target
            attrs = {"elementType": kind, "elementId": target_id}
            if contact is not None:
                attrs["contactPoint"] = contact
            _sub(link, tag, **attrs)
    road_type = _sub(r, "type", s=0.0, type=road.kind)
    _sub(road_type, "speed", max=float(road.speed_limit), unit="km/h")
    plan = _sub(r, "planView")
    s = 0.0
    for g in road.geometries:
        geom = _sub(plan, "geometry", s=s, x=g.start.x, y=g.start.y, hdg=g.start.h, length=g.length)
        if g.kind == "paramPoly3":
            (au, bu, cu, du), (av, bv, cv, dv) = g.poly
            _sub(
                geom,
                "paramPoly3",
                aU=au,
                bU=bu,
                cU=cu,
                dU=du,
                aV=av,
                bV=bv,
                cV=cv,
                dV=dv,
                pRange="normalized",
            )
        elif g.kind == "arc":
            _sub(geom, "arc", curvature=g.curvature)
        else:
            _sub(geom, "line")
        s += g.length
    _sub(_sub(r, "elevationProfile"), "elevation", s=0.0, a=0.0, b=0.0, c=0.0, d=0.0)
    _sub(r, "lateralProfile")
    lanes = _sub(r, "lanes")
    taper_start = road.length - road.taper_length
    if road.taper_length:
        _write_section(lanes, road, 0.0, taper_start, first=True, last=False)
        _write_section(lanes, road, taper_start, road.taper_length, first=False, last=True)
    else:
        _write_section(lanes, road, 0.0, road.length, first=True, last=True)
    signals = _sub(r, "signals")
    for sig in road.signals:
        el = _sub(
            signals,
            "signal",
            s=sig["s"],
            t=sig["t"],
            id=sig["id"],
            name=sig["name"],
            dynamic=sig["dynamic"],
            orientation=sig["orientation"],
            zOffset=sig["zOffset"],
            country="OpenDRIVE",
            type=sig["type"],
            subtype="-1",
            value=-1.0,
            height=sig["height"],
            width=sig["width"],
            hOffset=0.0,
            pitch=0.0,
            roll=0.0,
        )
        _sub(el, "validity", fromLane=sig["validity"][0], toLane=sig["validity"][1])


def _write_section(lanes_el, road: Road, s: float, length: float, first: bool, last: bool) -> None:
    """One lane section; between two sections of a road every lane links to the same id."""
    section = _sub(lanes_el, "laneSection", s=s)
    connecting = road.junction != -1
    two_way = road.right > 0 and road.left > 0
    if road.left:
        left = _sub(section, "left")
        for lane in range(road.left, 0, -1):
            _write_lane(
                left, road, lane, first, last, "solid" if lane == road.left else "broken", connecting, 0.0
            )
    center = _sub(section, "center")
    c = _sub(center, "lane", id=0, type="none", level="false")
    _mark(
        c, "none" if connecting else ("solid solid" if two_way else "solid"), "yellow" if two_way else "white"
    )
    if road.right:
        right = _sub(section, "right")
        tapering = bool(road.taper_length) and not first
        for lane in range(-1, -road.right - 1, -1):
            taper = length if tapering and lane == -road.right else 0.0
            _write_lane(
                right,
                road,
                lane,
                first,
                last,
                "solid" if lane == -road.right else "broken",
                connecting,
                taper,
            )


def _write_lane(
    parent, road: Road, lane: int, first: bool, last: bool, mark: str, connecting: bool, taper_length: float
) -> None:
    el = _sub(parent, "lane", id=lane, type="driving", level="false")
    link = _sub(el, "link")
    pred = road.lane_predecessors.get(lane) if first else lane
    succ = road.lane_successors.get(lane) if last else lane
    if pred is not None:
        _sub(link, "predecessor", id=pred)
    if succ is not None:
        _sub(link, "successor", id=succ)
    w = road.width
    if taper_length:  # smooth cubic from full width to zero
        _sub(el, "width", sOffset=0.0, a=w, b=0.0, c=-3 * w / taper_length**2, d=2 * w / taper_length**3)
    else:
        _sub(el, "width", sOffset=0.0, a=w, b=0.0, c=0.0, d=0.0)
    _mark(el, "none" if connecting else mark, "white")


def _mark(lane_el, kind: str, color: str) -> None:
    if kind == "none":
        _sub(
            lane_el,
            "roadMark",
            sOffset=0.0,
            type="none",
            weight="standard",
            color="standard",
            width=0.0,
            laneChange="both",
        )
        return
    change = "both" if kind == "broken" else "none"
    _sub(
        lane_el,
        "roadMark",
        sOffset=0.0,
        type=kind,
        weight="standard",
        color=color,
        width=0.15,
        laneChange=change,
    )


# ---------------------------------------------------------------------------------------------- API


def spec_to_xodr(spec: MapSpec, source: str = "<map spec>") -> str:
    """The OpenDRIVE text of ``spec`` (deterministic)."""
    return network_to_xodr(expand(spec, source))


def build_map(spec_path: str | Path, out_path: str | Path) -> Path:
    """Build the OpenDRIVE file for the spec at ``spec_path`` and write it atomically to ``out_path``."""
    spec = load_spec(spec_path)
    try:
        text = spec_to_xodr(spec, str(spec_path))
    except MapSpecError as err:
        message = str(err)
        raise MapSpecError(
            message if message.startswith(str(spec_path)) else f"{spec_path}: {message}"
        ) from None
    write_atomic(out_path, text)
    return Path(out_path)
