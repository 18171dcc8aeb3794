"""A grid of lane indices over the map, for off-road tests and lane-invasion detection.

Each 0.5 m cell holds the index of the driving lane covering it (-1: off road). Lanes inside
junctions are drawn first so that ordinary lanes, which never overlap each other, win where a
junction lane overhangs them.
"""
from __future__ import annotations

import cv2
import numpy as np

from cardreamer.roadmap import RoadMap

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
