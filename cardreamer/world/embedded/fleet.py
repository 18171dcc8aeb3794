"""Per-vehicle state of the embedded simulator as growable numpy arrays, one row per vehicle.

Rows ``0..n-1`` are live. Removing a vehicle moves the last row into its place, so every
vectorized operation works on the contiguous slice ``[:n]``. Route arrays have a second axis of
route points (``route_points``), grown when a longer route arrives.
"""
from __future__ import annotations

import numpy as np

# name -> (shape after the vehicle axis, dtype, fill value); "P" stands for the route-point axis.
VEHICLE_FIELDS: dict[str, tuple[tuple, type, float]] = {
    "ids": ((), np.int64, -1),
    "xy": ((2,), np.float64, 0.0),
    "z": ((), np.float64, 0.0),                 # road height under the vehicle (to tell bridges apart)
    "yaw": ((), np.float64, 0.0),
    "speed": ((), np.float64, 0.0),
    "accel": ((), np.float64, 0.0),             # longitudinal acceleration of the last tick
    "prev_velocity": ((2,), np.float64, 0.0),
    "velocity": ((2,), np.float64, 0.0),
    "steer": ((), np.float64, 0.0),             # road-wheel angle (rad)
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
    "v0": ((), np.float64, 8.0),
    "s0": ((), np.float64, 2.5),
    "headway": ((), np.float64, 1.2),
    "a_max": ((), np.float64, 2.5),
    "b_comf": ((), np.float64, 3.0),
    "politeness": ((), np.float64, 0.3),
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

ROUTE_FIELDS: dict[str, tuple[tuple, type, float]] = {
    "r_xy": (("P", 2), np.float64, 0.0),
    "r_heading": (("P",), np.float64, 0.0),
    "r_vcurve": (("P",), np.float64, 50.0),     # speed limit from path curvature (m/s)
    "r_lane": (("P",), np.int64, -1),
    "r_z": (("P",), np.float64, 0.0),           # road height (bridges)
    "r_stop_sig": (("P",), np.int64, -1),       # next stop line at/after this point: signal index
    "r_stop_s": (("P",), np.float64, np.inf),   # ... and its route s
    "r_junction": (("P",), np.int64, -1),       # next junction whose exit is after this point
    "r_junction_in": (("P",), np.float64, np.inf),
    "r_junction_out": (("P",), np.float64, np.inf),
    "r_junction_sign": (("P",), bool, False),   # that junction's approach has a stop sign
}


class Fleet:
    """Growable structure-of-arrays for all vehicles of a world."""

    def __init__(self, capacity: int = 64, route_points: int = 512):
        self.n = 0
        self.capacity = capacity
        self.route_points = route_points
        self.arrays: dict[str, np.ndarray] = {}
        for name, spec in {**VEHICLE_FIELDS, **ROUTE_FIELDS}.items():
            self.arrays[name] = self._alloc(spec, capacity, route_points)

    @staticmethod
    def _alloc(spec, capacity: int, route_points: int) -> np.ndarray:
        tail, dtype, fill = spec
        shape = (capacity,) + tuple(route_points if d == "P" else d for d in tail)
        return np.full(shape, fill, dtype=dtype)

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.__dict__["arrays"][name]
        except KeyError:
            raise AttributeError(name) from None

    def clear(self) -> None:
        for name, spec in {**VEHICLE_FIELDS, **ROUTE_FIELDS}.items():
            self.arrays[name][: self.n] = spec[2]
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
        specs = {**VEHICLE_FIELDS, **ROUTE_FIELDS}
        for name, arr in self.arrays.items():
            if row != last:
                arr[row] = arr[last]
            arr[last] = specs[name][2]
        self.n -= 1

    def ensure_route_points(self, count: int) -> None:
        if count > self.route_points:
            self._resize(self.capacity, int(2 ** np.ceil(np.log2(count))))

    def _resize(self, capacity: int, route_points: int) -> None:
        specs = {**VEHICLE_FIELDS, **ROUTE_FIELDS}
        for name, old in self.arrays.items():
            new = self._alloc(specs[name], capacity, route_points)
            if name in ROUTE_FIELDS:
                new[: self.n, : self.route_points] = old[: self.n]
                # extend each route's straight run-out past its old padding
                if name in ("r_xy",):
                    step = old[: self.n, -1] - old[: self.n, -2]
                    extra = np.arange(1, route_points - self.route_points + 1)[None, :, None]
                    new[: self.n, self.route_points:] = old[: self.n, -1:] + extra * step[:, None]
                elif self.route_points < route_points:
                    new[: self.n, self.route_points:] = old[: self.n, -1:]
            else:
                new[: self.n] = old[: self.n]
            self.arrays[name] = new
        self.capacity, self.route_points = capacity, route_points
