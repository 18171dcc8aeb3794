"""The forward camera: vehicles and road land where a pinhole camera puts them."""
import numpy as np
import pytest
from conftest import place_relative

from cardreamer.observer import DEFAULT_OBSERVATIONS, build_handler
from cardreamer.observer.camera import CAMERA_COLORS


def shoot(scene, **overrides):
    handler = build_handler("camera", {**DEFAULT_OBSERVATIONS["camera"], **overrides})
    handler.reset(scene.world, scene.ego)
    return handler.step(scene.world, scene.ego)[0]["camera"]


def vehicle_mask(image):
    """Shaded vehicle faces: the vehicle colour (R > G, no blue) times a brightness."""
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return (b == 0) & (r > g) & (r > 30)


def only(scene, *keep):
    for name, vid in scene.others.items():
        if name not in keep:
            scene.world.destroy(vid)


def expected_row(distance, z=1.6, pitch_deg=-8.0, focal=64.0, centre=64.0):
    """Image row of a ground point ``distance`` metres ahead of the camera (pinhole, pitched)."""
    p = np.radians(pitch_deg)
    depth = distance * np.cos(p) - z * np.sin(p)
    up = -distance * np.sin(p) - z * np.cos(p)
    return centre - focal * up / depth, depth


def test_sky_and_road(town04):
    image = shoot(town04)
    assert image.shape == (128, 128, 3)
    assert np.all(image[0] == CAMERA_COLORS["sky"])
    bottom = image[127, 64]
    assert bottom[0] == bottom[1] == bottom[2] and tuple(bottom) != CAMERA_COLORS["ground"]  # grey road


def test_car_ahead_is_centred_with_its_bottom_on_the_ground(town04):
    only(town04, "ahead")
    mask = vehicle_mask(shoot(town04))
    rows, cols = np.nonzero(mask)
    row, depth = expected_row(10.0 - 2.4 - 1.0)  # rear face: 10 m ahead, half length 2.4, camera 1 m ahead
    assert rows.max() == pytest.approx(row, abs=1.5)
    assert cols.mean() == pytest.approx(64, abs=1.0)
    assert np.ptp(cols) + 1 == pytest.approx(64 * 2.1 / depth, abs=2)


def test_right_is_right_and_far_is_small(town04):
    only(town04)
    place_relative(town04.world, town04.ego, 12.0, 3.5)
    cols = np.nonzero(vehicle_mask(shoot(town04)))[1]
    assert cols.min() > 64 and cols.mean() > 64 + 10
    world = town04.world
    for vid in list(world.vehicles().ids):
        if vid != town04.ego:
            world.destroy(int(vid))
    near = place_relative(world, town04.ego, 12.0, 0.0)
    near_area = vehicle_mask(shoot(town04)).sum()
    world.destroy(near)
    place_relative(world, town04.ego, 30.0, 0.0)
    far_rows = np.nonzero(vehicle_mask(shoot(town04)))[0]
    assert 0 < len(far_rows) < near_area / 4
    assert far_rows.max() < expected_row(12.0 - 2.4 - 1.0)[0] - 5


def test_behind_is_invisible_and_beside_is_clipped(town04):
    only(town04)
    place_relative(town04.world, town04.ego, -12.0, 0.0)
    assert not vehicle_mask(shoot(town04)).any()
    place_relative(town04.world, town04.ego, 1.5, 2.8)  # straddles the near plane, to the right
    cols = np.nonzero(vehicle_mask(shoot(town04)))[1]
    assert len(cols) > 100 and cols.min() > 64


def test_custom_size_and_mounting(town04):
    image = shoot(town04, width=160, height=96, pitch=0.0)
    assert image.shape == (96, 160, 3)
    assert np.all(image[47] == CAMERA_COLORS["sky"])  # level camera: the horizon is the middle row
    assert not np.all(image[49] == CAMERA_COLORS["sky"])
