"""Progress of many vehicles along their own routes, projected in one vectorized step.

Each vehicle is projected onto a window of its route starting a little behind its last progress
(routes are sampled about every metre, so the window spans about ``WINDOW`` metres ahead), and its
progress never decreases.
"""
from __future__ import annotations

import numpy as np

from cardreamer.roadmap import Route

WINDOW = 64   # route points per window
BEHIND = 5.0  # m behind the last progress where the window starts


def advance_progress(routes: list[Route], progress: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """New progress (m) of vehicles at ``xy`` (N, 2) along ``routes``, given their last ``progress`` (N,)."""
    n = len(routes)
    points = np.empty((n, WINDOW, 2))
    arc = np.empty((n, WINDOW))
    for k, route in enumerate(routes):
        start = max(int(np.searchsorted(route.s, progress[k] - BEHIND)) - 1, 0)
        index = np.minimum(np.arange(start, start + WINDOW), len(route.s) - 1)
        points[k], arc[k] = route.points[index], route.s[index]
    a = points[:, :-1]
    d = points[:, 1:] - a
    length2 = np.maximum(np.einsum("nij,nij->ni", d, d), 1e-12)
    t = np.clip(np.einsum("nij,nij->ni", xy[:, None, :] - a, d) / length2, 0.0, 1.0)
    distance2 = np.sum((a + t[..., None] * d - xy[:, None, :]) ** 2, axis=-1)
    best = np.argmin(distance2, axis=1)
    rows = np.arange(n)
    s = arc[rows, best] + t[rows, best] * np.sqrt(length2[rows, best]) * (length2[rows, best] > 1e-12)
    return np.maximum(progress, s)
