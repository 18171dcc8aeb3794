"""Helpers shared by the embedded simulator's tests: poses on lanes, lanes by their ends."""
from __future__ import annotations

import numpy as np

from cardreamer.roadmap import RoadMap
from cardreamer.world.api import Pose


def pose_on_lane(road_map: RoadMap, lane_index: int, s: float) -> Pose:
    lane = road_map.lanes[lane_index]
    x, y = lane.position(s)
    return Pose(float(x), float(y), float(lane.heading_at(s)))


def lane_at(road_map: RoadMap, start_xy, end_xy) -> int:
    """Index of the lane whose polyline starts near ``start_xy`` and ends near ``end_xy``."""
    for lane in road_map.lanes:
        if np.allclose(lane.points[0], start_xy, atol=0.5) and np.allclose(lane.points[-1], end_xy, atol=0.5):
            return lane.index
    raise LookupError(f"no lane from {start_xy} to {end_xy} on {road_map.name}")
