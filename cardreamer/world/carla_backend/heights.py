"""Road-surface height on a lane or along a route, for spawn transforms and Traffic Manager paths.

CARLA matches locations to lanes in 3-D, so on maps where roads cross over each other (Town04's
highway overpasses) a location must carry the height of its own lane, not of the road below.
"""
from __future__ import annotations

import numpy as np

from cardreamer.roadmap import RoadMap, Route


class LaneHeights:
    """Heights of every lane of a road map, computed on first use."""

    def __init__(self, road_map: RoadMap):
        self.road_map = road_map
        self._z: list[np.ndarray] | None = None

    def _lanes(self) -> list[np.ndarray]:
        if self._z is None:
            # one implementation of lane elevations for both backends (see the lead's notes: move it to roadmap)
            from cardreamer.world.embedded.route_table import _lane_elevations

            self._z = _lane_elevations(self.road_map)
        return self._z

    def at(self, lane: int, s: float) -> float:
        """Height at arc length ``s`` of lane ``lane``."""
        return float(np.interp(s, self.road_map.lanes[lane].s, self._lanes()[lane]))

    def along(self, route: Route, s: np.ndarray) -> np.ndarray:
        """Heights at route arc lengths ``s``, each on the lane the route follows there.

        Within one run of route points on one lane, distance along the route is distance along the
        lane, so one projection per run places every point on its lane.
        """
        s = np.asarray(s, dtype=float)
        point = np.clip(np.searchsorted(route.s, s, side="right") - 1, 0, len(route.s) - 1)
        starts = np.flatnonzero(np.concatenate([[True], route.lanes[1:] != route.lanes[:-1]]))
        run = np.searchsorted(starts, point, side="right") - 1
        z = np.empty(len(s))
        for r in np.unique(run):
            first = starts[r]
            lane_index = int(route.lanes[first])
            lane = self.road_map.lanes[lane_index]
            lane_s0 = float(lane.project(route.points[first][None])[0][0])
            rows = run == r
            z[rows] = np.interp(lane_s0 + s[rows] - route.s[first], lane.s, self._lanes()[lane_index])
        return z
