"""Scalar forms of ``cardreamer.geometry``'s box tests for the compiled tick (numba ``njit``).

Each function evaluates the same floating-point operations in the same order as its vectorized
counterpart in ``cardreamer.geometry``, so the compiled tick reproduces the numpy one bit for bit
(tests/world/test_geometry.py compares them).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def point_box_distance(px: float, py: float, bx: float, by: float, c: float, s: float, half_length: float,
                       half_width: float) -> float:
    """Distance from a point to a box with centre (bx, by), heading cosine/sine ``c``/``s`` (0 inside)."""
    rx = px - bx
    ry = py - by
    along = max(abs(rx * c + ry * s) - half_length, 0.0)
    across = max(abs(ry * c - rx * s) - half_width, 0.0)
    return math.sqrt(along * along + across * across)


@njit(cache=True, inline="always")
def corner_segment_distance(corners, ax: float, ay: float, bx: float, by: float) -> float:
    """Distance from the nearest of a box's corners (4, 2) to the segment a->b."""
    sx = bx - ax
    sy = by - ay
    length2 = max(sx * sx + sy * sy, 1e-12)
    best = math.inf
    for k in range(4):
        rx = corners[k, 0] - ax
        ry = corners[k, 1] - ay
        t = min(max((rx * sx + ry * sy) / length2, 0.0), 1.0)
        ox = rx - t * sx
        oy = ry - t * sy
        best = min(best, math.sqrt(ox * ox + oy * oy))
    return best


@njit(cache=True, inline="always")
def box_corners(out, x: float, y: float, c: float, s: float, half_length: float, half_width: float) -> None:
    """Write a box's corners (front-left, front-right, rear-right, rear-left) into ``out`` (4, 2)."""
    fx, fy = c * half_length, s * half_length
    rx, ry = -s * half_width, c * half_width
    out[0, 0], out[0, 1] = x + (fx - rx), y + (fy - ry)
    out[1, 0], out[1, 1] = x + (fx + rx), y + (fy + ry)
    out[2, 0], out[2, 1] = x + (-fx + rx), y + (-fy + ry)
    out[3, 0], out[3, 1] = x + (-fx - rx), y + (-fy - ry)


@njit(cache=True, inline="always")
def boxes_overlap(xa: float, ya: float, yaw_a: float, la: float, wa: float, xb: float, yb: float, yaw_b: float,
                  lb: float, wb: float) -> bool:
    """Whether two boxes (half lengths ``l``, half widths ``w``, margins already added) overlap (SAT)."""
    ca, sa = math.cos(yaw_a), math.sin(yaw_a)
    cb, sb = math.cos(yaw_b), math.sin(yaw_b)
    dx, dy = xb - xa, yb - ya
    cos_d = abs(ca * cb + sa * sb)
    sin_d = abs(sa * cb - ca * sb)
    if abs(dx * ca + dy * sa) > la + lb * cos_d + wb * sin_d:
        return False
    if abs(dy * ca - dx * sa) > wa + lb * sin_d + wb * cos_d:
        return False
    if abs(dx * cb + dy * sb) > lb + la * cos_d + wa * sin_d:
        return False
    return not abs(dy * cb - dx * sb) > wb + la * sin_d + wa * cos_d


@njit(cache=True)
def overlapping_pairs(xy, yaw, extent):
    """``cardreamer.geometry.overlapping_pairs`` without a margin: every overlapping pair (i < j), in
    the same order (i, then j, ascending)."""
    n = len(xy)
    radius = np.empty(n)
    for k in range(n):
        radius[k] = np.hypot(extent[k, 0], extent[k, 1])
    found_i, found_j = [], []
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = xy[i, 0] - xy[j, 0], xy[i, 1] - xy[j, 1]
            reach = radius[i] + radius[j]
            if dx * dx + dy * dy <= reach * reach and boxes_overlap(
                    xy[i, 0], xy[i, 1], yaw[i], extent[i, 0], extent[i, 1],
                    xy[j, 0], xy[j, 1], yaw[j], extent[j, 0], extent[j, 1]):
                found_i.append(i)
                found_j.append(j)
    return np.array(found_i, dtype=np.int64), np.array(found_j, dtype=np.int64)
