"""A lane as a polyline with geometry queries (position at s, heading, width, local coordinates)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LaneKey = tuple[int, int, int]
"""OpenDRIVE identity of a lane: (road_id, section_id, lane_id)."""


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


@dataclass
class Lane:
    """One driving lane of one lane section, sampled every ~1 m along its direction of travel.

    Coordinates are CARLA's (metres, left-handed: y is OpenDRIVE's -y); headings are radians
    measured from +x toward +y, like CARLA's yaw.
    """

    index: int
    key: LaneKey
    points: np.ndarray
    headings: np.ndarray
    widths: np.ndarray
    is_junction: bool
    junction_id: int
    change_left: bool
    change_right: bool
    left_marking: list[str]
    right_marking: list[str]
    successors: list[int] = field(default_factory=list)
    predecessors: list[int] = field(default_factory=list)
    left: int | None = None
    right: int | None = None
    s: np.ndarray = field(init=False)
    _unwrapped: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.s = polyline_arclength(self.points)
        self._unwrapped = np.unwrap(self.headings)

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def position(self, s: float | np.ndarray, lateral: float | np.ndarray = 0.0) -> np.ndarray:
        """World (x, y) at arc length ``s`` and lateral offset (positive to the right)."""
        s = np.asarray(s, dtype=np.float64)
        x = np.interp(s, self.s, self.points[:, 0])
        y = np.interp(s, self.s, self.points[:, 1])
        h = self.heading_at(s)
        lateral = np.asarray(lateral, dtype=np.float64)
        return np.stack([x - np.sin(h) * lateral, y + np.cos(h) * lateral], axis=-1)

    def heading_at(self, s: float | np.ndarray) -> np.ndarray:
        """Heading (radians) at arc length ``s``, interpolated without wrap-around jumps."""
        return np.interp(s, self.s, self._unwrapped)

    def width_at(self, s: float | np.ndarray) -> np.ndarray:
        return np.interp(s, self.s, self.widths)

    def local_coordinates(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(s, lateral) of world points (K, 2) relative to this lane's centre line."""
        return project_onto_polyline(self.points, self.s, xy)

    def on_lane(self, xy: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Whether each world point lies within the lane's width (plus ``margin``) and length."""
        xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
        s, _ = self.local_coordinates(xy)
        distance = np.linalg.norm(xy - self.position(s), axis=-1)
        return distance <= self.width_at(s) / 2 + margin
