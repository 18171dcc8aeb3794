"""Static raster of a whole road map: road surface, lane markings and junction areas.

The layers are drawn once per (map, pixels per metre) and cached; observation handlers then cut
ego-centred views out of them with a single ``cv2.warpAffine`` / ``cv2.warpPerspective``.

CARLA's frame is x right and y down when seen from above, so world -> pixel is a plain scale and
translation: ``col = (x - origin_x) * ppm``, ``row = (y - origin_y) * ppm``. Pixel coordinates
follow OpenCV's convention: pixel (i, j) is centred on integer coordinates, so the pixel under
a point is the rounded coordinate.

All layers are packed into one ``uint8`` label image, one bit per layer (``ROAD``, ``SOLID``,
``BROKEN``, ``JUNCTION``), so that one warp of ``labels`` yields every layer of a view at once;
``layer(name)`` unpacks one of them as a boolean mask.
"""
from __future__ import annotations

import weakref

import cv2
import numpy as np

from cardreamer.roadmap.lane import Lane
from cardreamer.roadmap.road_map import RoadMap

ROAD, SOLID, BROKEN, JUNCTION = 1, 2, 4, 8
LAYER_BITS = {"road": ROAD, "solid": SOLID, "broken": BROKEN, "junction": JUNCTION}

MARGIN_M = 20.0          # empty border around the map's lanes, metres
DASH_M = 3.0             # broken markings: painted and gap lengths, metres
MARKING_WIDTH_M = 0.15   # painted line width (drawn at least one pixel wide)
SHIFT = 3                # fixed-point bits for sub-pixel polygon / line coordinates
_CACHE: weakref.WeakKeyDictionary[RoadMap, dict[float, RoadRaster]] = weakref.WeakKeyDictionary()


def marking_kind(marking: str) -> int:
    """Layer bit of a CARLA lane-marking type name: SOLID, BROKEN or 0 (no painted line).

    Double and mixed lines ('SolidSolid', 'SolidBroken', 'BrokenSolid') count as solid: they may
    not be crossed from at least one side.
    """
    if "Solid" in marking:
        return SOLID
    if "Broken" in marking:
        return BROKEN
    return 0


class RoadRaster:
    """Packed label image of a map plus its world <-> pixel transform; build with ``for_map``."""

    def __init__(self, road_map: RoadMap, pixels_per_meter: float):
        if pixels_per_meter <= 0:
            raise ValueError(f"pixels_per_meter must be > 0, got {pixels_per_meter}")
        self.map_name = road_map.name
        self.pixels_per_meter = float(pixels_per_meter)
        lo, hi = road_map.bounds
        self.origin = np.asarray(lo, dtype=np.float64) - MARGIN_M
        size = np.ceil((np.asarray(hi) + MARGIN_M - self.origin) * self.pixels_per_meter).astype(int) + 1
        self.width, self.height = int(size[0]), int(size[1])
        k = self.pixels_per_meter
        self.world_to_pixel = np.array([[k, 0.0, -k * self.origin[0]], [0.0, k, -k * self.origin[1]]])
        """(2, 3) affine matrix mapping world (x, y, 1) to pixel (col, row)."""
        self.pixel_to_world = np.array([[1 / k, 0.0, self.origin[0]], [0.0, 1 / k, self.origin[1]]])
        """(2, 3) affine matrix mapping pixel (col, row, 1) to world (x, y)."""
        self.labels = np.zeros((self.height, self.width), dtype=np.uint8)
        self._draw(road_map.lanes)
        self._colored: dict[bytes, np.ndarray] = {}

    @classmethod
    def for_map(cls, road_map: RoadMap, pixels_per_meter: float = 4.0) -> RoadRaster:
        """The raster of ``road_map`` at this resolution, built on first use and cached."""
        per_map = _CACHE.setdefault(road_map.geometry_owner, {})
        key = float(pixels_per_meter)
        if key not in per_map:
            per_map[key] = cls(road_map, key)
        return per_map[key]

    # ------------------------------------------------------------------ queries
    def to_pixel(self, xy: np.ndarray) -> np.ndarray:
        """Float pixel (col, row) of world points (..., 2)."""
        return (np.asarray(xy, dtype=np.float64) - self.origin) * self.pixels_per_meter

    def colored(self, palette: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 image of the labels through a (16, 3) palette; built on first use, cached.

        Views warped from it need no per-step colouring (3 bytes per pixel: 41 MB for Town04).
        """
        palette = np.asarray(palette, dtype=np.uint8)
        key = palette.tobytes()
        if key not in self._colored:
            self._colored[key] = palette[self.labels]
        return self._colored[key]

    def layer(self, name: str) -> np.ndarray:
        """Boolean mask of one layer: 'road', 'solid', 'broken' or 'junction'."""
        if name not in LAYER_BITS:
            raise KeyError(f"unknown raster layer {name!r}; valid: {', '.join(LAYER_BITS)}")
        return (self.labels & LAYER_BITS[name]) > 0

    def is_road(self, xy: np.ndarray) -> np.ndarray:
        """Whether world points (..., 2) lie on the drivable surface (False outside the raster)."""
        px = np.rint(self.to_pixel(xy)).astype(np.int64)
        inside = (px[..., 0] >= 0) & (px[..., 0] < self.width) & (px[..., 1] >= 0) & (px[..., 1] < self.height)
        col = np.clip(px[..., 0], 0, self.width - 1)
        row = np.clip(px[..., 1], 0, self.height - 1)
        return inside & ((self.labels[row, col] & ROAD) > 0)

    # ------------------------------------------------------------------ drawing
    def _fixed(self, xy: np.ndarray) -> np.ndarray:
        return np.round(self.to_pixel(xy) * (1 << SHIFT)).astype(np.int32)

    def _draw(self, lanes: list[Lane]) -> None:
        surfaces, junctions = [], []
        lines: dict[int, list[np.ndarray]] = {SOLID: [], BROKEN: []}
        for lane in lanes:
            left, right = _lane_edges(lane)
            polygon = self._fixed(np.concatenate([left, right[::-1]]))
            (junctions if lane.is_junction else surfaces).append(polygon)
            for edge, markings in ((left, lane.left_marking), (right, lane.right_marking)):
                for bit, run in _marking_runs(edge, lane.s, markings):
                    lines[bit].append(self._fixed(run))
        # One fillPoly call per lane: a single call over overlapping polygons (junction lanes
        # cross each other) fills with the even-odd rule and would leave holes.
        road = np.zeros_like(self.labels)
        junction = np.zeros_like(self.labels)
        for polygon in surfaces:
            cv2.fillPoly(road, [polygon], 1, lineType=cv2.LINE_8, shift=SHIFT)
        for polygon in junctions:
            cv2.fillPoly(road, [polygon], 1, lineType=cv2.LINE_8, shift=SHIFT)
            cv2.fillPoly(junction, [polygon], 1, lineType=cv2.LINE_8, shift=SHIFT)
        thickness = max(1, round(MARKING_WIDTH_M * self.pixels_per_meter))
        masks = {ROAD: road, JUNCTION: junction}
        for bit, polylines in lines.items():
            mask = np.zeros_like(self.labels)
            cv2.polylines(mask, polylines, False, 1, thickness=thickness, lineType=cv2.LINE_8, shift=SHIFT)
            masks[bit] = mask
        for bit, mask in masks.items():
            self.labels |= mask * np.uint8(bit)


def _lane_edges(lane: Lane) -> tuple[np.ndarray, np.ndarray]:
    """Left and right boundary polylines of a lane (centre -/+ half width along the normal)."""
    right_normal = np.stack([-np.sin(lane.headings), np.cos(lane.headings)], axis=-1)
    half = (lane.widths / 2)[:, None]
    return lane.points - right_normal * half, lane.points + right_normal * half


def _marking_runs(edge: np.ndarray, s: np.ndarray, markings: list[str]):
    """Yield (layer bit, polyline) for each painted stretch of one lane edge.

    A segment takes the marking type of its start point; broken lines are cut into DASH_M dashes
    with DASH_M gaps, measured along the lane.
    """
    kinds = np.array([marking_kind(m) for m in markings[:-1]])
    dash_on = (np.floor(s[:-1] / DASH_M) % 2) == 0
    painted = np.where((kinds == BROKEN) & ~dash_on, 0, kinds)
    change = np.flatnonzero(np.diff(painted)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(painted)]])
    for a, b in zip(starts, ends):
        if painted[a]:
            yield int(painted[a]), edge[a:b + 1]


def _nice_length(at_least: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``at_least``."""
    power = 10.0 ** np.floor(np.log10(max(at_least, 1e-9)))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= at_least))


def with_world_axes(image: np.ndarray, origin, pixels_per_meter: float, ink=(0, 0, 0),
                    paper=(255, 255, 255), tick_spacing_px: float = 90.0) -> np.ndarray:
    """``image`` (pixel = (world - origin) * pixels_per_meter) framed by world-coordinate ticks in
    metres, x along the top and y down the left as CARLA's frame has them, with a scale bar in
    its bottom-left corner. Returns a new, larger image."""
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1
    k, (ox, oy) = float(pixels_per_meter), (float(origin[0]), float(origin[1]))
    height, width = image.shape[:2]
    step = _nice_length(tick_spacing_px / k)
    xs = np.arange(np.ceil(ox / step) * step, ox + width / k, step)
    ys = np.arange(np.ceil(oy / step) * step, oy + height / k, step)

    def text_w(text: str) -> int:
        return cv2.getTextSize(text, font, scale, thick)[0][0]

    def metres(v: float) -> str:
        return f"{round(float(v), 6) + 0.0:g}"  # + 0.0 turns -0 into 0

    corner = "x, y (m)"
    left = max([text_w(metres(v)) for v in ys] + [text_w(corner)]) + 14
    top = cv2.getTextSize("0", font, scale, thick)[0][1] + 16
    out = np.empty((height + top + 8, width + left + 24, 3), np.uint8)
    out[:] = paper
    out[top:top + height, left:left + width] = image
    cv2.rectangle(out, (left - 1, top - 1), (left + width, top + height), ink, 1)
    cv2.putText(out, corner, (4, top - 8), font, scale, ink, thick, cv2.LINE_AA)
    for v in xs:
        col = round(left + (v - ox) * k)
        cv2.line(out, (col, top - 6), (col, top - 1), ink, 1)
        label = metres(v)
        x = col - text_w(label) // 2
        if x > text_w(corner) + 8 and x + text_w(label) < out.shape[1]:
            cv2.putText(out, label, (x, top - 9), font, scale, ink, thick, cv2.LINE_AA)
    for v in ys:
        row = round(top + (v - oy) * k)
        cv2.line(out, (left - 6, row), (left - 1, row), ink, 1)
        label = metres(v)
        cv2.putText(out, label, (left - 9 - text_w(label), row + 4), font, scale, ink, thick, cv2.LINE_AA)
    bar = _nice_length(min(width / 4, 150.0) / k / 2.5)
    length_px = round(bar * k)
    x0, y0 = left + 12, top + height - 14
    label = f"{bar:g} m"
    cv2.rectangle(out, (x0 - 6, y0 - 24), (x0 + max(length_px, text_w(label)) + 6, y0 + 8), paper, -1)
    cv2.line(out, (x0, y0), (x0 + length_px, y0), ink, 2)
    for x in (x0, x0 + length_px):
        cv2.line(out, (x, y0 - 5), (x, y0 + 5), ink, 1)
    cv2.putText(out, label, (x0, y0 - 9), font, scale, ink, thick, cv2.LINE_AA)
    return out
