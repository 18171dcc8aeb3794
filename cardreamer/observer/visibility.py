"""Which vehicles a driver can see: a sight range and a front (and optional rear) viewing cone.

A vehicle is seen when any corner of its box lies within ``sight_range`` and inside the front
cone (half opening ``fov_front / 2`` around the heading) or the rear cone. Occlusion is not
modelled. ``recursive`` sight shares what visible vehicles see (V2V perception relay).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sight:
    sight_range: float  # metres
    fov_front: float    # degrees, full opening angle of the front cone
    fov_rear: float     # degrees, full opening angle of the rear cone (0: none)

    def sees(self, xy: np.ndarray, yaw: np.ndarray, corners: np.ndarray) -> np.ndarray:
        """(M, N) bool: whether observer m (at ``xy[m]``, heading ``yaw[m]``) sees box n (``corners[n]``)."""
        d = corners[None, :, :, :] - xy[:, None, None, :]                       # (M, N, 4, 2)
        c, s = np.cos(yaw)[:, None, None], np.sin(yaw)[:, None, None]
        forward = d[..., 0] * c + d[..., 1] * s
        side = -d[..., 0] * s + d[..., 1] * c
        dist = np.hypot(forward, side)
        angle = np.abs(np.arctan2(side, forward))                               # 0 ahead, pi behind
        in_cone = angle <= np.radians(self.fov_front) / 2
        if self.fov_rear > 0:
            in_cone |= (np.pi - angle) <= np.radians(self.fov_rear) / 2
        return np.any(in_cone & (dist <= self.sight_range), axis=-1)


def visible_vehicles(sight: Sight, xy: np.ndarray, yaw: np.ndarray, corners: np.ndarray, ego_row: int,
                     depth: int = 1) -> np.ndarray:
    """(N,) bool: vehicles the ego sees directly (depth 1) or through a chain of up to ``depth``
    observers (depth 2: also what the vehicles the ego sees can see). The ego itself is False."""
    visible = sight.sees(xy[ego_row:ego_row + 1], yaw[ego_row:ego_row + 1], corners)[0]
    visible[ego_row] = False
    frontier = visible
    for _ in range(depth - 1):
        if not frontier.any():
            break
        seen = sight.sees(xy[frontier], yaw[frontier], corners).any(axis=0)
        frontier = seen & ~visible
        frontier[ego_row] = False
        visible = visible | frontier
    return visible
