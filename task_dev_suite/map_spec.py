"""The map spec: a YAML description of a road network that `opendrive_writer` turns into OpenDRIVE.

A spec holds primitive elements -- ``roads`` (chains of line / arc / cubic segments with per-direction
lane counts) and ``junctions`` (3-5 road ends joined by one connecting road per movement) -- and
layouts that expand into primitives: ``intersections`` (a star of straight arms around one junction),
``roundabouts``, ``highways`` (with an optional on-ramp merge) and ``grids`` (NxM signalized junctions
closed by a ring road).  All coordinates are OpenDRIVE's: metres, y pointing left of x, headings in
degrees counter-clockwise from +x.  See docs/maps.md for the format with examples.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_LANE_WIDTH = 3.5
DEFAULT_GEO_REFERENCE = "+proj=tmerc +lat_0=0 +lon_0=0 +k=1 +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs"


class MapSpecError(ValueError):
    """A map spec that cannot be loaded or built; the message names the file and the offending key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Pose(_Model):
    """A position and heading (degrees, counter-clockwise from +x) in OpenDRIVE coordinates."""

    x: float
    y: float
    heading: float = 0.0


class Point(_Model):
    x: float
    y: float


# ---------------------------------------------------------------------------------------------- roads


class LineSegment(_Model):
    type: Literal["line"]
    length: float = Field(gt=0)


class ArcSegment(_Model):
    """A circular arc; positive curvature turns left."""

    type: Literal["arc"]
    length: float = Field(gt=0)
    curvature: float


class CubicSegment(_Model):
    """A cubic (paramPoly3) curve from the current pose to ``end``, tangent to both headings."""

    type: Literal["cubic"]
    end: Pose


Segment = Annotated[LineSegment | ArcSegment | CubicSegment, Field(discriminator="type")]


class Lanes(_Model):
    """Driving lanes of a road: ``right`` run along the road's direction, ``left`` against it."""

    right: int = Field(default=1, ge=0, le=6)
    left: int = Field(default=1, ge=0, le=6)
    width: float = Field(default=DEFAULT_LANE_WIDTH, gt=1.0, le=6.0)

    @model_validator(mode="after")
    def _some_lane(self) -> Lanes:
        if self.right + self.left == 0:
            raise ValueError("a road needs at least one lane (right + left >= 1)")
        return self


class RoadEnd(_Model):
    """One end of a road: ``contact`` is ``start`` (s = 0) or ``end`` (s = length)."""

    road: int
    contact: Literal["start", "end"]


class Taper(_Model):
    """The outermost right lane narrows to zero over the road's last ``length`` metres and then
    continues into its left neighbour on the successor road (an on-ramp merge)."""

    length: float = Field(gt=0)


class RoadSpec(_Model):
    id: int = Field(ge=1)
    start: Pose
    segments: list[Segment] = Field(min_length=1)
    lanes: Lanes = Lanes()
    speed_limit: float = Field(default=50.0, gt=0, description="km/h")
    kind: Literal["town", "motorway", "rural"] = "town"
    predecessor: RoadEnd | None = None
    successor: RoadEnd | None = None
    taper: Taper | None = None


# ------------------------------------------------------------------------------------------ junctions


class LaneRef(_Model):
    road: int
    lane: int

    @model_validator(mode="after")
    def _nonzero(self) -> LaneRef:
        if self.lane == 0:
            raise ValueError("lane 0 is the reference line, not a driving lane")
        return self


class Movement(_Model):
    """One connecting road through a junction: from an incoming lane to an outgoing lane."""

    from_: LaneRef = Field(alias="from")
    to: LaneRef


Control = Literal["none", "traffic_light", "stop"]


class JunctionSpec(_Model):
    """Road ends meeting at one junction.  Without ``movements``, every incoming lane is joined to the
    other arms by the usual lane rule (innermost lane turns left, outermost turns right)."""

    id: int = Field(ge=1)
    arms: list[RoadEnd] = Field(min_length=3, max_length=5)
    control: Control = "none"
    movements: list[Movement] | None = None


# ------------------------------------------------------------------------------------------- layouts


class Arm(_Model):
    heading: float = Field(description="degrees, direction pointing away from the junction")
    length: float = Field(gt=0)
    lanes_in: int = Field(default=1, ge=0, le=6)
    lanes_out: int = Field(default=1, ge=0, le=6)


class IntersectionLayout(_Model):
    """A junction at ``center`` with straight arms; each arm starts ``radius`` metres from the centre."""

    center: Point
    radius: float = Field(default=15.0, gt=2.0)
    arms: list[Arm] = Field(min_length=3, max_length=5)
    control: Control = "traffic_light"
    lane_width: float = Field(default=DEFAULT_LANE_WIDTH, gt=1.0, le=6.0)
    speed_limit: float = Field(default=50.0, gt=0)


class RoundaboutArm(_Model):
    angle: float = Field(description="degrees, direction of the arm from the centre")
    length: float = Field(gt=0)


class RoundaboutLayout(_Model):
    """A one-lane counter-clockwise ring (lane centre at ``radius``) with two-way single-lane arms.
    Each arm meets the ring at an entry/exit junction spanning ``junction_angle`` degrees of ring."""

    center: Point
    radius: float = Field(ge=8.0)
    arms: list[RoundaboutArm] = Field(min_length=2, max_length=8)
    junction_angle: float = Field(default=40.0, gt=10.0, lt=120.0)
    arm_gap: float = Field(default=8.0, gt=2.0, description="metres from the ring's outer edge to the arm")
    lane_width: float = Field(default=DEFAULT_LANE_WIDTH, gt=1.0, le=6.0)
    speed_limit: float = Field(default=30.0, gt=0)


class OnRamp(_Model):
    """A single-lane ramp from ``start`` that joins the highway at distance ``at`` as an extra
    rightmost lane, runs ``accel_length`` metres and tapers into the rightmost lane over
    ``taper_length`` metres."""

    start: Pose
    at: float = Field(gt=0)
    accel_length: float = Field(default=120.0, gt=0)
    taper_length: float = Field(default=80.0, gt=0)


class HighwayLayout(_Model):
    """A straight multi-lane road from ``start`` (``lanes`` along it, ``opposite_lanes`` against it)
    with an optional on-ramp on the right."""

    start: Pose
    length: float = Field(gt=0)
    lanes: int = Field(default=4, ge=1, le=6)
    opposite_lanes: int = Field(default=0, ge=0, le=6)
    lane_width: float = Field(default=DEFAULT_LANE_WIDTH, gt=1.0, le=6.0)
    speed_limit: float = Field(default=100.0, gt=0)
    junction_length: float = Field(default=5.0, gt=0.5)
    on_ramp: OnRamp | None = None


class GridLayout(_Model):
    """``rows`` x ``cols`` junctions ``block`` metres apart, joined by two-way roads; the outer
    junctions' outward arms meet a ring road at T-junctions so that the network has no dead ends."""

    origin: Point
    rows: int = Field(ge=1, le=10)
    cols: int = Field(ge=1, le=10)
    block: float = Field(gt=20.0)
    lanes: int = Field(default=2, ge=1, le=4, description="lanes per direction")
    junction_radius: float = Field(default=15.0, gt=2.0)
    ring_margin: float = Field(default=60.0, gt=0, description="distance from outer junctions to the ring")
    ring_corner_radius: float = Field(default=25.0, gt=0)
    control: Control = "traffic_light"
    lane_width: float = Field(default=DEFAULT_LANE_WIDTH, gt=1.0, le=6.0)
    speed_limit: float = Field(default=50.0, gt=0)


class MapSpec(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    geo_reference: str = DEFAULT_GEO_REFERENCE
    roads: list[RoadSpec] = []
    junctions: list[JunctionSpec] = []
    intersections: list[IntersectionLayout] = []
    roundabouts: list[RoundaboutLayout] = []
    highways: list[HighwayLayout] = []
    grids: list[GridLayout] = []


# ---------------------------------------------------------------------------------------- loading


def load_spec(path: str | Path) -> MapSpec:
    """Read and check a map spec YAML file; errors name the file and the offending key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise MapSpecError(f"{path}: cannot read map spec ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise MapSpecError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise MapSpecError(
            f"{path}: a map spec must be a mapping with at least 'name', got {type(data).__name__}"
        )
    return parse_spec(data, source=str(path))


def parse_spec(data: dict, source: str = "<map spec>") -> MapSpec:
    """Check a spec given as a dict; ``source`` names it in error messages."""
    try:
        spec = MapSpec.model_validate(data)
    except ValidationError as err:
        raise MapSpecError(f"{source}: invalid map spec:\n" + _describe(err)) from None
    expand(spec, source)  # raises on dangling references
    return spec


def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        if e["type"] == "extra_forbidden":
            model = _model_at(e["loc"][:-1])
            names = sorted(f.alias or n for n, f in model.model_fields.items()) if model else []
            close = difflib.get_close_matches(str(e["loc"][-1]), names, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            valid = ", ".join(names) if names else "see docs/maps.md"
            lines.append(f"  {key}: unknown key ({hint}valid keys here: {valid})")
        elif e["type"] == "missing":
            lines.append(f"  {key}: required key missing")
        else:
            given = repr(e.get("input"))
            lines.append(
                f"  {key or '(top level)'}: {e['msg']} (got {given[:80] + '...' if len(given) > 80 else given})"
            )
    return "\n".join(lines)


_UNION_TAGS = {"line", "arc", "cubic"}


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model reached by following ``loc`` from MapSpec (for listing valid keys)."""
    model: type[BaseModel] | None = MapSpec
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        if part in _UNION_TAGS:
            model = {"line": LineSegment, "arc": ArcSegment, "cubic": CubicSegment}[part]
            continue
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model


def _inner_model(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------------------------------- expansion


class Network(_Model):
    """The primitive roads and junctions a spec expands to (ids unique across both)."""

    name: str
    geo_reference: str
    roads: list[RoadSpec]
    junctions: list[JunctionSpec]


def expand(spec: MapSpec, source: str = "<map spec>") -> Network:
    """Expand layouts into primitive roads and junctions and check every reference."""
    roads = list(spec.roads)
    junctions = list(spec.junctions)
    next_road = [max((r.id for r in roads), default=0) + 1]

    def new_road(**fields) -> RoadSpec:
        road = RoadSpec(id=next_road[0], **fields)
        next_road[0] += 1
        roads.append(road)
        return road

    generated: list[tuple[list[RoadEnd], Control, list[Movement] | None]] = []
    for layout in spec.intersections:
        generated += _expand_intersection(layout, new_road)
    for layout in spec.roundabouts:
        generated += _expand_roundabout(layout, new_road)
    for layout in spec.highways:
        generated += _expand_highway(layout, new_road)
    for layout in spec.grids:
        generated += _expand_grid(layout, new_road)

    used = {r.id for r in roads} | {j.id for j in junctions}
    first = 1000 * (max(used, default=0) // 1000 + 1)
    for k, (arms, control, movements) in enumerate(generated):
        junctions.append(JunctionSpec(id=first + k, arms=arms, control=control, movements=movements))
    network = Network(name=spec.name, geo_reference=spec.geo_reference, roads=roads, junctions=junctions)
    _check_references(network, source)
    return network


def _check_references(net: Network, source: str) -> None:
    road_ids = [r.id for r in net.roads]
    by_id = {r.id: r for r in net.roads}
    dupes = sorted({i for i in road_ids if road_ids.count(i) > 1})
    if dupes:
        raise MapSpecError(f"{source}: duplicate road ids {dupes}")
    junction_ids = [j.id for j in net.junctions]
    if len(set(junction_ids)) != len(junction_ids):
        raise MapSpecError(f"{source}: duplicate junction ids {sorted(junction_ids)}")
    clash = sorted(set(junction_ids) & set(road_ids))
    if clash:
        raise MapSpecError(
            f"{source}: junction ids {clash} equal road ids; CARLA would read them as roads, use other ids"
        )
    taken: dict[tuple[int, str], str] = {}

    def claim(end: RoadEnd, owner: str) -> None:
        if end.road not in by_id:
            raise MapSpecError(f"{source}: {owner} names road {end.road}, which does not exist")
        key = (end.road, end.contact)
        if key in taken:
            raise MapSpecError(
                f"{source}: the {end.contact} of road {end.road} is used by both {taken[key]} and {owner}"
            )
        taken[key] = owner

    for road in net.roads:
        if road.predecessor:
            claim(RoadEnd(road=road.id, contact="start"), f"road {road.id} predecessor")
            if road.predecessor.road not in by_id:
                raise MapSpecError(
                    f"{source}: roads[id={road.id}].predecessor names missing road {road.predecessor.road}"
                )
        if road.successor:
            claim(RoadEnd(road=road.id, contact="end"), f"road {road.id} successor")
            if road.successor.road not in by_id:
                raise MapSpecError(
                    f"{source}: roads[id={road.id}].successor names missing road {road.successor.road}"
                )
        if road.taper and (road.successor is None or road.lanes.right < 2):
            raise MapSpecError(
                f"{source}: roads[id={road.id}].taper needs a successor road and at least 2 right lanes"
            )
    for junction in net.junctions:
        for arm in junction.arms:
            claim(arm, f"junction {junction.id}")
        arm_roads = {a.road for a in junction.arms}
        for m in junction.movements or []:
            for ref in (m.from_, m.to):
                if ref.road not in arm_roads:
                    raise MapSpecError(
                        f"{source}: junction {junction.id} movement uses road {ref.road}, not one of its arms"
                    )
                lanes = by_id[ref.road].lanes
                if not (-lanes.right <= ref.lane <= lanes.left):
                    raise MapSpecError(
                        f"{source}: junction {junction.id} movement names lane {ref.lane} of road {ref.road}, "
                        f"which has lanes {-lanes.right}..{lanes.left}"
                    )
    for road in net.roads:  # a link must be returned by the other road, or left for the writer to add
        for end, link in (("start", road.predecessor), ("end", road.successor)):
            if link is None:
                continue
            other = by_id[link.road]
            back = other.predecessor if link.contact == "start" else other.successor
            expected = RoadEnd(road=road.id, contact=end)
            if back is None:  # the writer adds the link back; no other road or junction may take that end
                claim(RoadEnd(road=link.road, contact=link.contact), f"road {road.id} {end} link")
            elif back != expected:
                raise MapSpecError(
                    f"{source}: road {road.id} links its {end} to the {link.contact} of road {link.road}, "
                    f"but that end links to road {back.road}'s {back.contact}"
                )


def _line(start: Pose, length: float, lanes: Lanes, speed: float, kind: str = "town", **links) -> dict:
    return dict(
        start=start,
        segments=[LineSegment(type="line", length=length)],
        lanes=lanes,
        speed_limit=speed,
        kind=kind,
        **links,
    )


def _polar(center: Point, radius: float, angle_deg: float) -> tuple[float, float]:
    a = math.radians(angle_deg)
    return center.x + radius * math.cos(a), center.y + radius * math.sin(a)


def _expand_intersection(layout: IntersectionLayout, new_road):
    arms = []
    for arm in layout.arms:
        x, y = _polar(layout.center, layout.radius, arm.heading)
        lanes = Lanes(right=arm.lanes_out, left=arm.lanes_in, width=layout.lane_width)
        road = new_road(**_line(Pose(x=x, y=y, heading=arm.heading), arm.length, lanes, layout.speed_limit))
        arms.append(RoadEnd(road=road.id, contact="start"))
    return [(arms, layout.control, None)]


def _expand_roundabout(layout: RoundaboutLayout, new_road):
    w = layout.lane_width
    ref_radius = layout.radius - w / 2  # the ring's lane lies right of (outside) its reference line
    half = layout.junction_angle / 2
    angles = sorted(a.angle % 360 for a in layout.arms)
    arms_by_angle = {a.angle % 360: a for a in layout.arms}
    if len(set(angles)) != len(angles):
        raise MapSpecError(f"roundabout at {layout.center}: two arms share an angle")
    ring, spokes = [], []
    for i, angle in enumerate(angles):
        following = angles[(i + 1) % len(angles)] + (360 if i == len(angles) - 1 else 0)
        sweep = following - angle - 2 * half
        if sweep <= 5:
            raise MapSpecError(
                f"roundabout at {layout.center}: arms at {angle} and {following % 360} degrees "
                f"are too close for junction_angle {layout.junction_angle}"
            )
        x, y = _polar(layout.center, ref_radius, angle + half)
        ring.append(
            new_road(
                start=Pose(x=x, y=y, heading=angle + half + 90),
                segments=[
                    ArcSegment(type="arc", length=math.radians(sweep) * ref_radius, curvature=1 / ref_radius)
                ],
                lanes=Lanes(right=1, left=0, width=w),
                speed_limit=layout.speed_limit,
            )
        )
        x, y = _polar(layout.center, layout.radius + w / 2 + layout.arm_gap, angle)
        spokes.append(
            new_road(
                **_line(
                    Pose(x=x, y=y, heading=angle),
                    arms_by_angle[angle].length,
                    Lanes(right=1, left=1, width=w),
                    layout.speed_limit,
                )
            )
        )
    return [
        (
            [
                RoadEnd(road=ring[i - 1].id, contact="end"),
                RoadEnd(road=ring[i].id, contact="start"),
                RoadEnd(road=spokes[i].id, contact="start"),
            ],
            "none",
            None,
        )
        for i in range(len(angles))
    ]


def _expand_highway(layout: HighwayLayout, new_road):
    w, n, back, h = layout.lane_width, layout.lanes, layout.opposite_lanes, layout.start.heading
    lanes = Lanes(right=n, left=back, width=w)

    def along(s: float, t: float = 0.0) -> Pose:
        a = math.radians(h)
        return Pose(
            x=layout.start.x + s * math.cos(a) - t * math.sin(a),
            y=layout.start.y + s * math.sin(a) + t * math.cos(a),
            heading=h,
        )

    ramp = layout.on_ramp
    if ramp is None:
        new_road(**_line(layout.start, layout.length, lanes, layout.speed_limit, "motorway"))
        return []
    merge_start = ramp.at + layout.junction_length
    merge_length = ramp.accel_length + ramp.taper_length
    rest = layout.length - merge_start - merge_length
    if rest <= 1.0:
        raise MapSpecError(
            f"highway from {layout.start}: on_ramp.at + junction + merge ({merge_start + merge_length:.0f} m) "
            f"must be shorter than length {layout.length:.0f} m"
        )
    before = new_road(**_line(layout.start, ramp.at, lanes, layout.speed_limit, "motorway"))
    merge_id, after_id = before.id + 1, before.id + 2
    merge = new_road(
        **_line(
            along(merge_start),
            merge_length,
            Lanes(right=n + 1, left=back, width=w),
            layout.speed_limit,
            "motorway",
            successor=RoadEnd(road=after_id, contact="start"),
        ),
        taper=Taper(length=ramp.taper_length),
    )
    after = new_road(
        **_line(
            along(merge_start + merge_length),
            rest,
            lanes,
            layout.speed_limit,
            "motorway",
            predecessor=RoadEnd(road=merge_id, contact="end"),
        )
    )
    assert (merge.id, after.id) == (merge_id, after_id)
    ramp_road = new_road(
        start=ramp.start,
        segments=[CubicSegment(type="cubic", end=along(ramp.at, -n * w))],
        lanes=Lanes(right=1, left=0, width=w),
        speed_limit=layout.speed_limit * 0.6,
        kind="motorway",
    )
    movements = [
        Movement.model_validate(
            {"from": {"road": before.id, "lane": -k}, "to": {"road": merge.id, "lane": -k}}
        )
        for k in range(1, n + 1)
    ]
    movements += [
        Movement.model_validate({"from": {"road": merge.id, "lane": k}, "to": {"road": before.id, "lane": k}})
        for k in range(1, back + 1)
    ]
    movements.append(
        Movement.model_validate(
            {"from": {"road": ramp_road.id, "lane": -1}, "to": {"road": merge.id, "lane": -(n + 1)}}
        )
    )
    arms = [
        RoadEnd(road=before.id, contact="end"),
        RoadEnd(road=ramp_road.id, contact="end"),
        RoadEnd(road=merge.id, contact="start"),
    ]
    return [(arms, "none", movements)]


def _expand_grid(layout: GridLayout, new_road):
    """Junction (r, c) sits at origin + (c * block, r * block); the ring runs ``ring_margin`` outside."""
    b, rj, m, rho = layout.block, layout.junction_radius, layout.ring_margin, layout.ring_corner_radius
    lanes = Lanes(right=layout.lanes, left=layout.lanes, width=layout.lane_width)
    if b <= 2 * rj + 5 or m <= 2 * rj + 5 or m <= rho + rj + 1:
        raise MapSpecError(
            "grid: block and ring_margin must exceed the junction sizes "
            f"(block {b}, ring_margin {m}, junction_radius {rj}, ring_corner_radius {rho})"
        )
    ox, oy = layout.origin.x, layout.origin.y
    arms: dict[tuple, list[RoadEnd]] = {}  # junction key -> arms

    def road_between(key_a, key_b, start: Pose, length: float):
        road = new_road(**_line(start, length, lanes, layout.speed_limit))
        arms.setdefault(key_a, []).append(RoadEnd(road=road.id, contact="start"))
        arms.setdefault(key_b, []).append(RoadEnd(road=road.id, contact="end"))

    for r in range(layout.rows):
        for c in range(layout.cols):
            x, y = ox + c * b, oy + r * b
            if c + 1 < layout.cols:
                road_between(("g", r, c), ("g", r, c + 1), Pose(x=x + rj, y=y, heading=0), b - 2 * rj)
            if r + 1 < layout.rows:
                road_between(("g", r, c), ("g", r + 1, c), Pose(x=x, y=y + rj, heading=90), b - 2 * rj)
    # Spokes from the outer junctions to T-junctions on the ring.
    xmax, ymax = ox + (layout.cols - 1) * b, oy + (layout.rows - 1) * b
    for c in range(layout.cols):
        x = ox + c * b
        road_between(("g", 0, c), ("s", c), Pose(x=x, y=oy - rj, heading=-90), m - 2 * rj)
        road_between(("g", layout.rows - 1, c), ("n", c), Pose(x=x, y=ymax + rj, heading=90), m - 2 * rj)
    for r in range(layout.rows):
        y = oy + r * b
        road_between(("g", r, 0), ("w", r), Pose(x=ox - rj, y=y, heading=180), m - 2 * rj)
        road_between(("g", r, layout.cols - 1), ("e", r), Pose(x=xmax + rj, y=y, heading=0), m - 2 * rj)
    # The ring runs counter-clockwise: south side east-bound, east side north-bound, and so on.
    sides = [  # (T-junction keys in travel order, their positions, heading)
        ([("s", c) for c in range(layout.cols)], [(ox + c * b, oy - m) for c in range(layout.cols)], 0),
        ([("e", r) for r in range(layout.rows)], [(xmax + m, oy + r * b) for r in range(layout.rows)], 90),
        (
            [("n", c) for c in reversed(range(layout.cols))],
            [(ox + c * b, ymax + m) for c in reversed(range(layout.cols))],
            180,
        ),
        (
            [("w", r) for r in reversed(range(layout.rows))],
            [(ox - m, oy + r * b) for r in reversed(range(layout.rows))],
            270,
        ),
    ]
    for i, (keys, points, heading) in enumerate(sides):
        a = math.radians(heading)
        dx, dy = math.cos(a), math.sin(a)
        for k in range(len(keys) - 1):
            (x0, y0), (x1, y1) = points[k], points[k + 1]
            road_between(
                keys[k],
                keys[k + 1],
                Pose(x=x0 + rj * dx, y=y0 + rj * dy, heading=heading),
                math.hypot(x1 - x0, y1 - y0) - 2 * rj,
            )
        # Corner: from this side's last T-junction round to the next side's first one.
        next_keys = sides[(i + 1) % 4][0]
        x0, y0 = points[-1]
        straight = m - rj - rho
        road = new_road(
            start=Pose(x=x0 + rj * dx, y=y0 + rj * dy, heading=heading),
            segments=[
                LineSegment(type="line", length=straight),
                ArcSegment(type="arc", length=math.pi / 2 * rho, curvature=1 / rho),
                LineSegment(type="line", length=straight),
            ],
            lanes=lanes,
            speed_limit=layout.speed_limit,
        )
        arms.setdefault(keys[-1], []).append(RoadEnd(road=road.id, contact="start"))
        arms.setdefault(next_keys[0], []).append(RoadEnd(road=road.id, contact="end"))
    return [(arms[key], layout.control, None) for key in sorted(arms, key=_junction_order)]


def _junction_order(key: tuple) -> tuple:
    return ("gsenw".index(key[0]),) + key[1:]
