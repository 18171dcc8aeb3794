"""Polylines: the geometry Lane and Route share (arc length, position and heading at s, projection)."""
from __future__ import annotations

import numpy as np


def polyline_arclength(points: np.ndarray) -> np.ndarray:
    """Cumulative distance along a (M, 2) polyline, starting at 0."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(seg)])


def project_onto_polyline(points: np.ndarray, s: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project query points (K, 2) onto a polyline; returns (s, signed lateral offset), vectorized.

    The lateral offset is positive to the right of the direction of travel in CARLA's
    left-handed frame (x forward, y to the right when looking down), as CARLA's waypoints are.
    """
    xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
    a = points[:-1]
    d = points[1:] - a
    seg_len2 = np.maximum((d * d).sum(axis=1), 1e-12)
    rel = xy[:, None, :] - a                                      # (K, M-1, 2)
    t = np.clip((rel * d).sum(axis=2) / seg_len2, 0.0, 1.0)       # (K, M-1)
    off = rel - t[..., None] * d                                  # query minus closest point
    best = np.argmin((off * off).sum(axis=2), axis=1)
    rows = np.arange(len(xy))
    seg_len = np.sqrt(seg_len2[best])
    dvec = d[best] / seg_len[:, None]
    offset = off[rows, best]
    lateral = dvec[:, 0] * offset[:, 1] - dvec[:, 1] * offset[:, 0]
    return s[best] + t[rows, best] * seg_len, lateral


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
