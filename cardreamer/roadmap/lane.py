"""A lane: a polyline with its width, markings and neighbours in the lane graph."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cardreamer.roadmap.polyline import Polyline

LaneKey = tuple[int, int, int]
"""OpenDRIVE identity of a lane: (road_id, section_id, lane_id)."""


@dataclass
class Lane(Polyline):
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

    def position(self, s: float | np.ndarray, lateral: float | np.ndarray = 0.0) -> np.ndarray:
        """World (x, y) at arc length ``s`` and lateral offset (positive to the right)."""
        s = np.asarray(s, dtype=np.float64)
        centre = super().position(s)
        h = self.heading_at(s)
        lateral = np.asarray(lateral, dtype=np.float64)
        return np.stack([centre[..., 0] - np.sin(h) * lateral, centre[..., 1] + np.cos(h) * lateral], axis=-1)

    def width_at(self, s: float | np.ndarray) -> np.ndarray:
        return np.interp(s, self.s, self.widths)

    def on_lane(self, xy: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Whether each world point lies within the lane's width (plus ``margin``) and length."""
        xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
        s, _ = self.project(xy)
        distance = np.linalg.norm(xy - self.position(s), axis=-1)
        return distance <= self.width_at(s) / 2 + margin
