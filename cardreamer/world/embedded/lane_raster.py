"""A grid of lane indices over the map, for off-road tests and lane-invasion detection.

Each 0.5 m cell holds the index of the driving lane covering it (-1: off road). Lanes inside
junctions are drawn first so that ordinary lanes, which never overlap each other, win where a
junction lane overhangs them.
"""
from __future__ import annotations

import cv2
import numpy as np
from numba import njit

from cardreamer.roadmap import RoadMap
from cardreamer.world.embedded.compiled_geometry import box_corners

RESOLUTION = 0.5  # m per cell
SHIFT = 3         # fixed-point bits of the sub-cell polygon coordinates


class LaneRaster:
    def __init__(self, road_map: RoadMap, resolution: float = RESOLUTION):
        self.resolution = resolution
        lo, hi = road_map.bounds
        self.origin = np.asarray(lo, dtype=float) - 10.0
        size = np.ceil((np.asarray(hi) - self.origin + 10.0) / resolution).astype(int)
        self.grid = np.full((size[1], size[0]), -1, dtype=np.int32)
        order = sorted(road_map.lanes, key=lambda lane: (not lane.is_junction, lane.index))
        for lane in order:
            half = lane.widths / 2.0
            left = lane.position(lane.s, -half)
            right = lane.position(lane.s, half)
            polygon = np.concatenate([left, right[::-1]])
            # cell (i, j) covers [i, i + 1) * resolution and is centred on pixel coordinate i + 0.5
            pixels = np.round(((polygon - self.origin) / resolution - 0.5) * (1 << SHIFT)).astype(np.int32)
            cv2.fillPoly(self.grid, [pixels], int(lane.index), shift=SHIFT)
        self.junction = np.array([lane.is_junction for lane in road_map.lanes], dtype=bool)

    def lanes_at(self, xy: np.ndarray) -> np.ndarray:
        """Lane index under each world point (..., 2); -1 off the road or off the grid."""
        cell = np.floor((xy - self.origin) / self.resolution).astype(np.int64)
        h, w = self.grid.shape
        valid = (cell[..., 0] >= 0) & (cell[..., 0] < w) & (cell[..., 1] >= 0) & (cell[..., 1] < h)
        out = np.full(cell.shape[:-1], -1, dtype=np.int64)
        out[valid] = self.grid[cell[..., 1][valid], cell[..., 0][valid]]
        return out

    def lanes_under_boxes(self, xy: np.ndarray, yaw: np.ndarray, extent: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For boxes (N,): their corners (N, 4, 2) as ``geometry.box_corners`` gives them, the lane
        under each corner (N, 4) and the lane under each centre (N,) as ``lanes_at`` gives them."""
        return _lanes_under_boxes(self.grid, self.origin, self.resolution, xy, yaw, extent)


@njit(cache=True)
def _lane_cell(grid, origin, resolution, x, y):
    i = np.int64(np.floor((x - origin[0]) / resolution))
    j = np.int64(np.floor((y - origin[1]) / resolution))
    if 0 <= i < grid.shape[1] and 0 <= j < grid.shape[0]:
        return np.int64(grid[j, i])
    return np.int64(-1)


@njit(cache=True)
def _lanes_under_boxes(grid, origin, resolution, xy, yaw, extent):
    n = len(xy)
    corners = np.empty((n, 4, 2))
    lanes = np.empty((n, 4), dtype=np.int64)
    centre = np.empty(n, dtype=np.int64)
    for k in range(n):
        box_corners(corners[k], xy[k, 0], xy[k, 1], np.cos(yaw[k]), np.sin(yaw[k]), extent[k, 0], extent[k, 1])
        for c in range(4):
            lanes[k, c] = _lane_cell(grid, origin, resolution, corners[k, c, 0], corners[k, c, 1])
        centre[k] = _lane_cell(grid, origin, resolution, xy[k, 0], xy[k, 1])
    return corners, lanes, centre
