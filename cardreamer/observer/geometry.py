"""The top-down (BEV) image transform of an ego-centred view, and (2, 3) affine helpers.

BEV image: the ego's heading points up, its right points right (the ego frame of
``cardreamer.geometry.to_ego_frame``: x forward, y right, metres).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The (2, 3) affine ``outer(inner(p))``."""
    return outer[:, :2] @ inner + np.concatenate([np.zeros((2, 2)), outer[:, 2:]], axis=1)


def apply_affine(matrix: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to points (..., 2)."""
    return xy @ matrix[:, :2].T + matrix[:, 2]


@dataclass(frozen=True)
class BevView:
    """Geometry of an ego-centred top-down image.

    ``obs_range`` metres span the image height; the ego sits ``ego_offset`` metres above the
    bottom edge, horizontally centred, heading up.
    """

    width: int
    height: int
    obs_range: float
    ego_offset: float

    @cached_property
    def pixels_per_meter(self) -> float:
        return self.height / self.obs_range

    @cached_property
    def ego_pixel(self) -> tuple[float, float]:
        """(col, row) of the ego's centre in the image."""
        return self.width / 2.0, self.height - self.ego_offset * self.pixels_per_meter

    @cached_property
    def radius(self) -> float:
        """Distance (m) from the ego to the farthest image corner: anything farther is out of view."""
        k = self.pixels_per_meter
        cu, cv = self.ego_pixel
        return float(np.hypot(max(cu, self.width - cu), max(cv, self.height - cv)) / k)

    def world_to_image(self, ego_xy: np.ndarray, ego_yaw: float) -> np.ndarray:
        """(2, 3) affine from world (x, y) to image (col, row) for an ego pose."""
        k = self.pixels_per_meter
        c, s = np.cos(ego_yaw), np.sin(ego_yaw)
        cu, cv = self.ego_pixel
        ex, ey = float(ego_xy[0]), float(ego_xy[1])
        # col = cu + k * (ego-frame y), row = cv - k * (ego-frame x)
        return np.array([[-k * s, k * c, cu - k * (-s * ex + c * ey)],
                         [-k * c, -k * s, cv + k * (c * ex + s * ey)]])
