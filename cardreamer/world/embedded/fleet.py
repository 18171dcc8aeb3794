"""Per-vehicle state of the embedded simulator as growable numpy arrays, one row per vehicle.

Rows ``0..n-1`` are live. Removing a vehicle moves the last row into its place, so every
vectorized operation works on the contiguous slice ``[:n]``. The route array has a second axis of
route points (``route_points``), grown when a longer route arrives, and a third of annotations.
"""
from __future__ import annotations

import numpy as np

# name -> (shape after the vehicle axis, dtype, fill value)
VEHICLE_FIELDS: dict[str, tuple[tuple, type, float]] = {
    "ids": ((), np.int64, -1),
    "xy": ((2,), np.float64, 0.0),
    "z": ((), np.float64, 0.0),                 # road height under the vehicle (to tell bridges apart)
    "yaw": ((), np.float64, 0.0),
    "speed": ((), np.float64, 0.0),
    "prev_velocity": ((2,), np.float64, 0.0),
    "velocity": ((2,), np.float64, 0.0),
    "extent": ((2,), np.float64, 0.0),
    "wheelbase": ((), np.float64, 2.9),
    "is_ego": ((), bool, False),
    # ego controls
    "throttle": ((), np.float64, 0.0),
    "steer_cmd": ((), np.float64, 0.0),
    "brake": ((), np.float64, 0.0),
    "reverse": ((), bool, False),
    "hand_brake": ((), bool, False),
    # behaviour of autopilot vehicles
    "behavior": ((6,), np.float64, 0.0),        # columns B_V0 ... B_POLITENESS below
    "ignore_lights": ((), bool, False),
    "ignore_signs": ((), bool, False),
    "ignore_vehicles": ((), bool, False),
    "auto_lane_change": ((), bool, False),
    "destroy_at_end": ((), bool, False),
    # route following
    "has_route": ((), bool, False),
    "route_s": ((), np.float64, 0.0),           # arc length of the vehicle centre along its route
    "route_length": ((), np.float64, 0.0),
    "sign_cleared_s": ((), np.float64, -np.inf),  # route s of the last stop sign already obeyed
    "sign_wait": ((), np.float64, 0.0),         # seconds stopped at the current stop line
    # lane tracking (ego): lane index under each box corner, -1 off road
    "corner_lanes": ((4,), np.int64, -1),
    "off_road": ((), bool, False),
}

# columns of "behavior": IDM desired speed, standstill gap, time headway, acceleration, comfortable
# deceleration; MOBIL politeness
B_V0, B_S0, B_HEADWAY, B_A_MAX, B_B_COMF, B_POLITENESS = range(6)

# The route of each vehicle: one (capacity, route_points, ROUTE_COLUMNS) float array, so that one
# fancy-indexing gather fetches every annotation of a route point at once.
(R_X, R_Y, R_HEADING, R_VCURVE, R_STOP_S, R_STOP_SIG, R_JUNCTION, R_JUNCTION_IN, R_JUNCTION_OUT,
 R_JUNCTION_SIGN, R_LANE, R_Z) = range(12)
ROUTE_COLUMNS = 12
ROUTE_DEFAULTS = np.array([
    0.0, 0.0, 0.0,   # x, y, heading of the point
    50.0,            # speed limit from path curvature (m/s)
    np.inf, -1.0,    # next stop line at/after this point: its route s, its road_map.signals row
    -1.0, np.inf, np.inf, 0.0,  # next junction whose exit lies beyond this point: id, entry s, exit s,
                                # whether its approach has a stop sign
    -1.0, 0.0,       # lane index, road height (bridges)
])


class Fleet:
    """Growable structure-of-arrays for all vehicles of a world."""

    def __init__(self, capacity: int = 64, route_points: int = 512):
        self.n = 0
        self.capacity = capacity
        self.route_points = route_points
        self.arrays: dict[str, np.ndarray] = {name: self._alloc(spec, capacity) for name, spec in VEHICLE_FIELDS.items()}
        self.route = np.empty((capacity, route_points, ROUTE_COLUMNS))
        self.route[:] = ROUTE_DEFAULTS

    @staticmethod
    def _alloc(spec, capacity: int) -> np.ndarray:
        tail, dtype, fill = spec
        return np.full((capacity,) + tail, fill, dtype=dtype)

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.__dict__["arrays"][name]
        except KeyError:
            raise AttributeError(name) from None

    def clear(self) -> None:
        for name, spec in VEHICLE_FIELDS.items():
            self.arrays[name][: self.n] = spec[2]
        self.route[: self.n] = ROUTE_DEFAULTS
        self.n = 0

    def add(self) -> int:
        """Append a row with default values and return its index."""
        if self.n == self.capacity:
            self._resize(self.capacity * 2, self.route_points)
        self.n += 1
        return self.n - 1

    def remove(self, row: int) -> None:
        """Delete a row by moving the last row into it."""
        last = self.n - 1
        for name, arr in self.arrays.items():
            if row != last:
                arr[row] = arr[last]
            arr[last] = VEHICLE_FIELDS[name][2]
        if row != last:
            self.route[row] = self.route[last]
        self.route[last] = ROUTE_DEFAULTS
        self.n -= 1

    def points(self, rows, index) -> np.ndarray:
        """Route points ``index`` of vehicles ``rows`` (broadcast together), with every annotation.

        ``np.take`` on the flattened array is several times faster than 3-D fancy indexing.
        """
        flat = np.asarray(rows) * self.route_points + index
        return np.take(self.route.reshape(-1, ROUTE_COLUMNS), flat, axis=0)

    def ensure_route_points(self, count: int) -> None:
        if count > self.route_points:
            self._resize(self.capacity, int(2 ** np.ceil(np.log2(count))))

    def _resize(self, capacity: int, route_points: int) -> None:
        for name, old in self.arrays.items():
            new = self._alloc(VEHICLE_FIELDS[name], capacity)
            new[: self.n] = old[: self.n]
            self.arrays[name] = new
        old = self.route
        route = np.empty((capacity, route_points, ROUTE_COLUMNS))
        route[:] = ROUTE_DEFAULTS
        route[: self.n, : self.route_points] = old[: self.n]
        if route_points > self.route_points:  # longer rows: continue each route's straight run-out
            route[: self.n, self.route_points:] = old[: self.n, -1:]
            step = old[: self.n, -1, :2] - old[: self.n, -2, :2]
            extra = np.arange(1, route_points - self.route_points + 1)[None, :, None]
            route[: self.n, self.route_points:, :2] = old[: self.n, -1:, :2] + extra * step[:, None]
        self.route = route
        self.capacity, self.route_points = capacity, route_points
