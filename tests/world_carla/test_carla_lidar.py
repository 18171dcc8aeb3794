"""The lidar observation from CARLA's ray-cast lidar (stand-in server): geometry, filtering, frames, config."""
from __future__ import annotations

import carla
import numpy as np
import pytest

from cardreamer.observer import DEFAULT_OBSERVATIONS, ObservationConfigError, build_handler
from cardreamer.observer.lidar import LIDAR_COLORS, NO_HIT, ROAD_EDGE, VEHICLE
from cardreamer.world.api import Behavior, CapabilityError, Pose, VehicleArrays

HEIGHT = 2.0  # the handler's default mounting height


def lidar(**overrides):
    return build_handler("lidar", {**DEFAULT_OBSERVATIONS["lidar"], "source": "sensor", **overrides})


def observe(handler, world, ego):
    world.tick()
    obs, _ = handler.step(world, ego)
    for key, space in handler.observation_space().items():
        assert space.contains(obs[key]), key
    return obs["lidar"], obs["lidar_points"]


def test_returns_at_known_places_land_on_their_rays_and_pixels(ego_world, server, park_ahead):
    world, ego = ego_world()
    park_ahead(world, ego, 10.0)  # its rear face is 7.6 m straight ahead
    handler = lidar()
    handler.reset(world, ego)
    server.lidar_points = np.array([           # sensor frame: x forward, y right, z up from 2 m high
        [7.6, 0.0, 1.0 - HEIGHT],              # on the parked car's rear face: ray 0, a vehicle
        [12.0, 0.0, 1.0 - HEIGHT],             # behind it on the same ray: hidden by the nearer return
        [0.0, 5.0, 0.5 - HEIGHT],              # 5 m right: ray 60 (90 degrees clockwise), an obstacle
        [0.0, -6.0, 1.5 - HEIGHT],             # 6 m left (y < 0): ray 180
        [-4.0, 4.0, 0.1 - HEIGHT],             # road surface (0.1 m up): dropped, ray 210 sees nothing
        [-8.0, 0.0, 6.0 - HEIGHT],             # a bridge overhead (6 m up): dropped, ray 120 sees nothing
        [0.5, 0.3, 1.4 - HEIGHT],              # the ego's own roof: dropped, ray 21 sees nothing
        [0.0, -40.0, 1.0 - HEIGHT],            # beyond lidar_range 32 m
    ])
    image, points = observe(handler, world, ego)
    assert points[0].tolist() == pytest.approx([7.6, 0.0, VEHICLE], abs=1e-5)
    assert points[60].tolist() == pytest.approx([0.0, 5.0, ROAD_EDGE], abs=1e-5)
    assert points[180].tolist() == pytest.approx([0.0, -6.0, ROAD_EDGE], abs=1e-5)
    for ray in (120, 210, 21):
        assert points[ray, 2] == NO_HIT and np.hypot(*points[ray, :2]) == pytest.approx(32.0)
    assert np.count_nonzero(points[:, 2] != NO_HIT) == 3
    # 4 px/m, the ego at pixel (col 64, row 80), heading up, its right to the right
    assert tuple(image[80 - round(7.6 * 4), 64]) == LIDAR_COLORS["vehicle"]
    assert tuple(image[80, 64 + 5 * 4]) == LIDAR_COLORS["road_edge"]
    assert tuple(image[80, 64 - 6 * 4]) == LIDAR_COLORS["road_edge"]


def test_the_sensor_sees_the_vehicles_the_rendered_scan_sees(ego_world, park_ahead):
    world, ego = ego_world()
    park_ahead(world, ego, 10.0)
    v = world.vehicles()
    yaw = float(v.yaw[v.row(ego)])
    heading, right = np.array([np.cos(yaw), np.sin(yaw)]), np.array([-np.sin(yaw), np.cos(yaw)])
    beside = v.xy[v.row(ego)] + 3.2 * right - 2.0 * heading  # in the next lane, a little behind
    world.spawn_vehicle(Pose(float(beside[0]), float(beside[1]), yaw), behavior=Behavior(desired_speed=0.0))
    sensor, render = lidar(), lidar(source="render")
    sensor.reset(world, ego)
    render.reset(world, ego)
    _, seen = observe(sensor, world, ego)
    _, drawn = render.step(world, ego)[0].values()
    on_cars = drawn[:, 2] == VEHICLE
    assert on_cars.sum() > 20
    assert np.all(seen[on_cars, 2] == VEHICLE)
    assert np.abs(np.hypot(*seen[on_cars, :2].T) - np.hypot(*drawn[on_cars, :2].T)).max() < 0.15
    # a sensor ray's bin reaches half a ray spacing either side: it may catch a car's edge its centre line misses
    extra = np.flatnonzero((seen[:, 2] == VEHICLE) & ~on_cars)
    assert np.all(on_cars[(extra - 1) % 240] | on_cars[(extra + 1) % 240])
    assert not np.any(seen[:, 2] == ROAD_EDGE)  # the stand-in's scene has no walls or kerbs


def test_each_observation_is_the_sweep_of_its_own_tick(ego_world, server, park_ahead):
    world, ego = ego_world()
    other = park_ahead(world, ego, 12.0)
    handler = lidar()
    handler.reset(world, ego)
    server.stale_readings = True  # every tick also sends a sweep of the previous tick's scene, first
    gaps = []
    for _ in range(6):
        world.apply_control(ego, carla.VehicleControl(throttle=1.0))
        _, points = observe(handler, world, ego)
        v = world.vehicles()
        gap = np.linalg.norm(v.xy[v.row(other)] - v.xy[v.row(ego)]) - 2.4
        assert points[0, 2] == VEHICLE and points[0, 0] == pytest.approx(gap, abs=0.01)
        gaps.append(gap)
    assert gaps[0] - gaps[-1] > 0.5  # the ego closed in: a stale sweep would be off by a tick's travel


def test_a_beam_too_sparse_for_the_rays_is_a_clear_error(ego_world):
    world, ego = ego_world()
    with pytest.raises(ObservationConfigError, match=r"lidar.points_per_second: 50000 gives each of the 32 beams "
                                                     r"156 points per 0.1 s sweep, fewer than its 240 rays; "
                                                     r"use at least 76800"):
        lidar(points_per_second=50_000).reset(world, ego)


@pytest.mark.parametrize("overrides, message", [
    ({"lower_fov": 10.0, "upper_fov": 5.0}, r"lower_fov \(10.0\) must be below upper_fov \(5.0\)"),
    ({"min_height": 3.0}, r"min_height \(3.0\) must be below max_height \(2.5\)"),
    ({"source": "camera"}, r"source = 'camera'"),
])
def test_bad_sensor_settings_are_refused(overrides, message):
    with pytest.raises(ObservationConfigError, match=message):
        lidar(**overrides)


@pytest.mark.parametrize("name", ["camera", "lidar"])
def test_source_sensor_needs_a_world_with_sensors(name, town04):
    from cardreamer.world.embedded import EmbeddedWorld

    world = EmbeddedWorld(town04, dt=0.1, seed=0)
    handler = build_handler(name, {**DEFAULT_OBSERVATIONS[name], "source": "sensor"})
    with pytest.raises(CapabilityError) as error:
        handler.reset(world, 0)
    assert str(error.value) == (f"{name}.source: 'sensor' needs a world with real sensors mounted on vehicles "
                                f"(attach_sensor, sensor_data; the carla backend has them); EmbeddedWorld has none; "
                                f"use 'render' or 'auto'")


def test_sensor_scan_of_an_empty_cloud_is_all_free():
    handler = lidar(rays=8)
    vehicles = VehicleArrays(ids=np.array([7]), xy=np.zeros((1, 2)), yaw=np.zeros(1), speed=np.zeros(1),
                             velocity=np.zeros((1, 2)), acceleration=np.zeros((1, 2)),
                             extent=np.array([[2.4, 1.05]]), is_ego=np.array([True]))
    distance, kind = handler.sensor_scan(np.zeros((0, 4), dtype=np.float32), vehicles, 0)
    assert kind.tolist() == [NO_HIT] * 8 and distance.tolist() == [32.0] * 8
