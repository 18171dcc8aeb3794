"""Vectorized ground-plane geometry shared by the worlds, the observer and the expert.

Frames are CARLA's (x forward/east, y right/south seen from above, metres; yaw in radians from +x
toward +y). A box is a vehicle's footprint: centre ``xy``, heading ``yaw`` and ``extent`` (half
length, half width). Corners are always ordered front-left, front-right, rear-right, rear-left.
"""
from __future__ import annotations

import numpy as np

_CORNER_SIGNS = np.array([1 - 1j, 1 + 1j, -1 + 1j, -1 - 1j])  # (forward, right) signs of each corner


def box_corners(xy: np.ndarray, yaw: np.ndarray, extent: np.ndarray) -> np.ndarray:
    """(N, 4, 2) corners of boxes (front-left, front-right, rear-right, rear-left)."""
    c, s = np.cos(yaw), np.sin(yaw)
    fwd = np.stack([c, s], -1) * extent[:, :1]
    right = np.stack([-s, c], -1) * extent[:, 1:]
    return xy[:, None, :] + np.stack([fwd - right, fwd + right, -fwd + right, -fwd - right], 1)


def box_corners_complex(xy: np.ndarray, yaw: np.ndarray, extent: np.ndarray,
                        similarity: np.ndarray | None = None) -> np.ndarray:
    """(N, 4) corners as complex numbers x + iy, optionally mapped by a (2, 3) rotation-and-scale affine.

    The renderers' form: complex arithmetic (centre + heading rotation x local corner) needs few
    numpy calls, and a similarity transform into an image is one complex multiply-add, ``a z + b``
    with ``a = m00 + i m10``. Its last bits can differ from ``box_corners`` (``exp(1j yaw)`` against
    ``cos``/``sin``), so each caller keeps the form it was built on.
    """
    local = extent[:, :1] * _CORNER_SIGNS.real + 1j * (extent[:, 1:] * _CORNER_SIGNS.imag)   # (N, 4)
    centre = np.ascontiguousarray(xy, dtype=np.float64).view(np.complex128)               # (N, 1)
    heading = np.exp(1j * yaw)[:, None]
    if similarity is None:
        return centre + heading * local
    a = complex(similarity[0, 0], similarity[1, 0])
    b = complex(similarity[0, 2], similarity[1, 2])
    return (a * centre + b) + (a * heading) * local


def complex_to_xy(z: np.ndarray) -> np.ndarray:
    """(..., 2) float view of complex points (..., )."""
    return z.view(np.float64).reshape(*z.shape, 2)


def to_ego_frame(xy: np.ndarray, ego_xy: np.ndarray, ego_yaw: float | np.ndarray) -> np.ndarray:
    """World points (..., 2) in the frame of an ego at ``ego_xy`` heading ``ego_yaw`` (x forward, y right).

    ``ego_xy`` (..., 2) and ``ego_yaw`` (...) broadcast against the points, so several egos can
    each see all points at once.
    """
    c, s = np.cos(ego_yaw), np.sin(ego_yaw)
    d = np.asarray(xy, dtype=np.float64) - ego_xy
    return np.stack([d[..., 0] * c + d[..., 1] * s, -d[..., 0] * s + d[..., 1] * c], axis=-1)


def from_ego_frame(local: np.ndarray, ego_xy: np.ndarray, ego_yaw: float | np.ndarray) -> np.ndarray:
    """Ego-frame points (..., 2) (x forward, y right) back in the world: the inverse of ``to_ego_frame``."""
    c, s = np.cos(ego_yaw), np.sin(ego_yaw)
    return ego_xy + np.stack([local[..., 0] * c - local[..., 1] * s, local[..., 0] * s + local[..., 1] * c], -1)


def boxes_overlap(xy_a, yaw_a, ext_a, xy_b, yaw_b, ext_b, margin: float = 0.0) -> np.ndarray:
    """Whether oriented boxes a[k] and b[k] overlap, for arrays of pairs (separating axis theorem).

    ``ext`` holds half length and half width; ``margin`` inflates both boxes. Touching boxes with
    a gap of exactly 0 count as overlapping; any positive gap on one axis separates them.
    """
    ca, sa = np.cos(yaw_a), np.sin(yaw_a)
    cb, sb = np.cos(yaw_b), np.sin(yaw_b)
    la, wa = ext_a[:, 0] + margin, ext_a[:, 1] + margin
    lb, wb = ext_b[:, 0] + margin, ext_b[:, 1] + margin
    dx, dy = xy_b[:, 0] - xy_a[:, 0], xy_b[:, 1] - xy_a[:, 1]
    cos_d = np.abs(ca * cb + sa * sb)   # |cos| of the angle between the two headings
    sin_d = np.abs(sa * cb - ca * sb)   # |sin| of it
    # axes of a (forward, lateral), then of b: |centre offset| <= sum of projected half sizes
    separated = (np.abs(dx * ca + dy * sa) > la + lb * cos_d + wb * sin_d)
    separated |= (np.abs(dy * ca - dx * sa) > wa + lb * sin_d + wb * cos_d)
    separated |= (np.abs(dx * cb + dy * sb) > lb + la * cos_d + wa * sin_d)
    separated |= (np.abs(dy * cb - dx * sb) > wb + la * sin_d + wa * cos_d)
    return ~separated


def bounding_radius(extent: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Radius of the circle around each box once ``margin`` inflates it (``boxes_overlap``'s
    margin): boxes whose centres are farther apart than the sum of their radii cannot overlap."""
    extent = np.asarray(extent)
    return np.hypot(extent[..., 0] + margin, extent[..., 1] + margin)


_PAIRS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def overlapping_pairs(xy: np.ndarray, yaw: np.ndarray, extent: np.ndarray, margin: float = 0.0):
    """All pairs (i < j) of boxes that overlap: broad phase on bounding circles, then SAT."""
    n = len(xy)
    if n not in _PAIRS:
        _PAIRS[n] = np.triu_indices(n, 1)
    i, j = _PAIRS[n]
    radius = bounding_radius(extent, margin)
    dx = xy[i, 0] - xy[j, 0]
    dy = xy[i, 1] - xy[j, 1]
    reach = radius[i] + radius[j]
    close = np.flatnonzero(dx * dx + dy * dy <= reach * reach)
    if not len(close):
        return close, close
    i, j = i[close], j[close]
    hit = boxes_overlap(xy[i], yaw[i], extent[i], xy[j], yaw[j], extent[j], margin)
    return i[hit], j[hit]


def point_box_distance(points: np.ndarray, box_xy: np.ndarray, box_yaw: np.ndarray, box_ext: np.ndarray) -> np.ndarray:
    """Distance from points (P, K, 2) to boxes (P,) (0 inside), broadcasting boxes over K."""
    c, s = np.cos(box_yaw)[:, None], np.sin(box_yaw)[:, None]
    rx = points[..., 0] - box_xy[:, 0, None]
    ry = points[..., 1] - box_xy[:, 1, None]
    along = np.maximum(np.abs(rx * c + ry * s) - box_ext[:, 0, None], 0.0)
    across = np.maximum(np.abs(ry * c - rx * s) - box_ext[:, 1, None], 0.0)
    return np.sqrt(along * along + across * across)


def corner_segment_distance(corners: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """(P, K) distance from the nearest of each box's corners (P, 4, 2) to segments start->end (P, K, 2).

    Together with ``point_box_distance`` at the segment ends this gives the exact distance from a
    polyline to a box whose corner reaches in between two of its points.
    """
    seg = end - start                                                    # (P, K, 2)
    rel = corners[:, None, :, :] - start[:, :, None, :]                  # (P, K, 4, 2)
    length2 = np.maximum(np.einsum("pkc,pkc->pk", seg, seg), 1e-12)
    t = np.clip(np.einsum("pkjc,pkc->pkj", rel, seg) / length2[..., None], 0.0, 1.0)
    off = rel - t[..., None] * seg[:, :, None, :]
    return np.sqrt(np.einsum("pkjc,pkjc->pkj", off, off)).min(axis=2)
