import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenes

from cardreamer.world.api import Pose


@pytest.fixture
def town04():
    return scenes.town04_straight()


@pytest.fixture
def town10():
    return scenes.town10_junction()


def ego_pose(world, ego_id) -> tuple[np.ndarray, float]:
    v = world.vehicles()
    i = v.row(ego_id)
    return v.xy[i].copy(), float(v.yaw[i])


def place_relative(world, ego_id, forward: float, right: float, yaw_offset: float = 0.0, **kwargs) -> int:
    """Spawn a vehicle at (forward, right) metres in the ego's frame."""
    xy, yaw = ego_pose(world, ego_id)
    c, s = np.cos(yaw), np.sin(yaw)
    x = xy[0] + forward * c - right * s
    y = xy[1] + forward * s + right * c
    return world.spawn_vehicle(Pose(float(x), float(y), yaw + yaw_offset), **kwargs)


def color_pixels(image: np.ndarray, color) -> np.ndarray:
    """(K, 2) (col, row) of pixels with exactly this RGB colour."""
    rows, cols = np.nonzero(np.all(image == np.array(color, dtype=np.uint8), axis=-1))
    return np.stack([cols, rows], axis=-1)
