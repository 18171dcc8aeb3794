"""Polylines: the geometry Lane and Route share (arc length, position and heading at s, projection)."""
from __future__ import annotations

import numpy as np
from numba import njit


def polyline_arclength(points: np.ndarray) -> np.ndarray:
    """Cumulative distance along a (M, 2) polyline, starting at 0."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(seg)])


def project_onto_polyline(points: np.ndarray, s: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project query points (K, 2) onto a polyline (M >= 2 points); returns (s, signed lateral offset).

    Each query takes the closest point of the segment nearest to it (the first of equally near
    ones). The lateral offset is positive to the right of the direction of travel in CARLA's
    left-handed frame (x forward, y to the right when looking down), as CARLA's waypoints are.
    Compiled; the same operations in the same order as the vectorized numpy form it replaced
    (tests/roadmap/test_polyline_projection.py keeps that form and compares them bit for bit).
    """
    points = np.asarray(points, dtype=np.float64)
    if len(points) < 2:
        raise ValueError(f"projecting onto a polyline needs at least 2 points, got {len(points)}")
    xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
    return _project(points, np.asarray(s, dtype=np.float64), xy)


@njit(cache=True)
def _project(points, s, xy):
    k_count, m = len(xy), len(points) - 1
    s_out = np.empty(k_count)
    lateral = np.empty(k_count)
    for k in range(k_count):
        x, y = xy[k, 0], xy[k, 1]
        best, best_d2, best_t, best_ox, best_oy, best_len2 = -1, np.inf, 0.0, 0.0, 0.0, 0.0
        for i in range(m):
            ax, ay = points[i, 0], points[i, 1]
            dx, dy = points[i + 1, 0] - ax, points[i + 1, 1] - ay
            seg_len2 = max(dx * dx + dy * dy, 1e-12)
            rx, ry = x - ax, y - ay
            t = min(max((rx * dx + ry * dy) / seg_len2, 0.0), 1.0)
            ox, oy = rx - t * dx, ry - t * dy
            d2 = ox * ox + oy * oy
            if d2 < best_d2 or best < 0:
                best, best_d2, best_t, best_ox, best_oy, best_len2 = i, d2, t, ox, oy, seg_len2
        seg_len = np.sqrt(best_len2)
        dx, dy = points[best + 1, 0] - points[best, 0], points[best + 1, 1] - points[best, 1]
        lateral[k] = (dx / seg_len) * best_oy - (dy / seg_len) * best_ox
        s_out[k] = s[best] + best_t * seg_len
    return s_out, lateral


class Polyline:
    """A path sampled along its direction of travel: ``points`` (M, 2) and ``headings`` (M,) radians
    (CARLA's yaw), with the arc length ``s`` (M,) of each point.

    The base of the dataclasses Lane and Route: they declare ``points`` and ``headings`` as fields
    and inherit ``__post_init__``, which measures the arc lengths.
    """

    points: np.ndarray
    headings: np.ndarray
    s: np.ndarray

    def __post_init__(self) -> None:
        self.s = polyline_arclength(self.points)
        self._unwrapped = np.unwrap(self.headings)

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def position(self, s: float | np.ndarray) -> np.ndarray:
        """World (x, y) at arc length ``s``."""
        return np.stack([np.interp(s, self.s, self.points[:, 0]), np.interp(s, self.s, self.points[:, 1])], -1)

    def heading_at(self, s: float | np.ndarray) -> np.ndarray:
        """Heading (radians) at arc length ``s``, interpolated without wrap-around jumps."""
        return np.interp(s, self.s, self._unwrapped)

    def project(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(s along the polyline, lateral offset, positive right) of world points (K, 2)."""
        return project_onto_polyline(self.points, self.s, xy)
