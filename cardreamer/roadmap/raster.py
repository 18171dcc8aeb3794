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
