"""The 2-D lidar: ray distances and hit kinds against boxes and road edges, and its image."""
import numpy as np
import pytest
from conftest import ego_pose, place_relative

from cardreamer.geometry import to_ego_frame
from cardreamer.observer import DEFAULT_OBSERVATIONS, build_handler
from cardreamer.observer.lidar import LIDAR_COLORS, NO_HIT, ROAD_EDGE, VEHICLE
from cardreamer.world.api import Pose


def scan(scene, **overrides):
    handler = build_handler("lidar", {**DEFAULT_OBSERVATIONS["lidar"], **overrides})
    handler.reset(scene.world, scene.ego)
    obs, _ = handler.step(scene.world, scene.ego)
    assert handler.observation_space()["lidar_points"].contains(obs["lidar_points"])
    return obs["lidar"], obs["lidar_points"]


def test_rays_hit_the_cars_ahead_and_beside(town04):
    image, points = scan(town04)
    assert points.shape == (240, 3) and points.dtype == np.float32
    ahead = points[0]
    assert ahead[2] == VEHICLE and ahead[0] == pytest.approx(10.0 - 2.4, abs=0.01) and ahead[1] == pytest.approx(0, abs=1e-6)
    v = town04.world.vehicles()
    xy, yaw = ego_pose(town04.world, town04.ego)
    right = to_ego_frame(v.xy[v.row(town04.others["right"])], xy, yaw)
    beside = points[60]  # 90 degrees clockwise: straight right
    assert beside[2] == VEHICLE
    assert beside[1] == pytest.approx(right[1] - 1.05, abs=0.05)
    # the hit pixel of the ray ahead: 7.6 m * 4 px/m above the ego
    assert tuple(image[round(80 - 7.6 * 4), 64]) == LIDAR_COLORS["vehicle"]


def test_left_ray_stops_at_the_road_edge(town04):
    _, points = scan(town04)
    left = points[180]  # 270 degrees clockwise: straight left
    assert left[2] == ROAD_EDGE
    assert -3.0 <= left[1] <= -2.0  # the lane's left edge is 2.13 m left of the ego (0.5 m steps)
    assert left[0] == pytest.approx(0, abs=1e-5)


def test_scan_turns_with_the_ego(town04):
    world = town04.world
    for vid in town04.others.values():
        world.destroy(vid)
    xy, yaw = ego_pose(world, town04.ego)
    world.move(town04.ego, Pose(float(xy[0]), float(xy[1]), yaw + 1.0))
    place_relative(world, town04.ego, 8.0, 0.0)
    _, points = scan(town04, rays=360)
    assert points[0, 2] == VEHICLE and points[0, 0] == pytest.approx(8.0 - 2.4, abs=0.01)
    assert points[90, 2] != VEHICLE


def test_no_hit_rays_lie_at_full_range(town04):
    _, points = scan(town04, lidar_range=2.0)
    far = points[points[:, 2] == NO_HIT]
    assert len(far) and np.allclose(np.hypot(far[:, 0], far[:, 1]), 2.0)


def test_points_are_optional(town04):
    handler = build_handler("lidar", {"handler": "lidar"})
    assert set(handler.observation_space()) == {"lidar"}
