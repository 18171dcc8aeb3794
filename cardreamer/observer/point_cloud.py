"""A ray-cast lidar's 3-D point cloud reduced to the 2-D scan of the lidar observation.

CARLA's ``sensor.lidar.ray_cast`` sends (N, 4) float32 rows x, y, z, intensity in the sensor's
frame: x forward, y right, z up (Unreal's left-handed axes, which are the ego frame's, so no axis
is flipped; a point on the left has y < 0). The scan keeps the points of a horizontal slice
between ``min_height`` and ``max_height`` above the ground under the vehicle (no road surface,
no bridge or canopy overhead), drops the points on the ego itself, and gives each angular bin
around the ego's centre its nearest point.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOX_MARGIN = 0.3  # m: a lidar return this close to a bounding box belongs to that vehicle


@dataclass(frozen=True)
class CloudSlice:
    """Where the sensor sits and which of its points count as obstacles.

    ``mount`` is the sensor's (x ahead of the vehicle centre, y right, z above the ground), metres.
    """

    mount: tuple[float, float, float]
    min_height: float
    max_height: float
    lidar_range: float

    def points(self, cloud: np.ndarray) -> np.ndarray:
        """(M, 2) ego-frame x, y of the points of ``cloud`` (N, 4) in the slice and within range."""
        cloud = np.asarray(cloud, dtype=np.float64).reshape(-1, 4)
        x, y, z = self.mount
        xy = cloud[:, :2] + (x, y)
        height = cloud[:, 2] + z
        keep = (height >= self.min_height) & (height <= self.max_height)
        keep &= np.hypot(xy[:, 0], xy[:, 1]) <= self.lidar_range
        return xy[keep]


def inside_boxes(xy: np.ndarray, centres: np.ndarray, yaws: np.ndarray, extents: np.ndarray,
                 margin: float = BOX_MARGIN) -> np.ndarray:
    """(M,) whether each point lies in any box (centre, yaw, half length and width) grown by ``margin``."""
    if not len(centres) or not len(xy):
        return np.zeros(len(xy), dtype=bool)
    c, s = np.cos(yaws), np.sin(yaws)
    rel = xy[:, None, :] - centres[None, :, :]                                   # (M, K, 2)
    along = rel[..., 0] * c + rel[..., 1] * s
    across = -rel[..., 0] * s + rel[..., 1] * c
    return ((np.abs(along) <= extents[:, 0] + margin) & (np.abs(across) <= extents[:, 1] + margin)).any(axis=1)


def nearest_per_ray(xy: np.ndarray, rays: int) -> tuple[np.ndarray, np.ndarray]:
    """Per ray, the distance of the nearest point in its bin (inf: none) and that point's index (-1: none).

    Ray k points 360 * k / rays degrees clockwise from the heading (x forward, y right); its bin
    spans half a ray spacing either side.
    """
    distance = np.full(rays, np.inf)
    index = np.full(rays, -1, dtype=np.int64)
    if not len(xy):
        return distance, index
    ray = np.rint(np.arctan2(xy[:, 1], xy[:, 0]) * (rays / (2 * np.pi))).astype(np.int64) % rays
    d = np.hypot(xy[:, 0], xy[:, 1])
    order = np.lexsort((d, ray))                                                 # by ray, nearest first
    first = np.r_[True, ray[order][1:] != ray[order][:-1]]
    distance[ray[order][first]] = d[order][first]
    index[ray[order][first]] = order[first]
    return distance, index
