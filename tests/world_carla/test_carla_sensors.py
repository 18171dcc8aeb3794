"""Camera and lidar readings matched to the tick's frame: stale readings dropped, late ones awaited, missing ones timed out."""
from __future__ import annotations

import time

import carla
import numpy as np
import pytest
from carla_standin import VEHICLE_EXTENT

from cardreamer.world.api import Pose, SensorSpec, SensorWorld, WorldError, require_capability
from cardreamer.world.carla_backend import SensorTimeout


def test_camera_reading_is_rgb_of_the_current_frame(ego_world, server):
    world, _ = ego_world()
    assert require_capability(world, SensorWorld, "camera.source: 'sensor'") is world
    world.attach_sensor("camera", SensorSpec("camera", width=32, height=24))
    for _ in range(3):
        world.tick()
        image = world.sensor_data("camera")
        assert image.shape == (24, 32, 3) and image.dtype == np.uint8
        assert image[0, 0].tolist() == [200, 0, world.frame % 256]  # BGRA from the server flipped to RGB
    sensor = next(s for s in server.live("sensor.camera.rgb"))
    assert sensor.attributes["image_size_x"] == "32" and sensor.attributes["sensor_tick"] == "0.0"


def test_lidar_sweeps_once_per_tick_in_the_sensor_frame(ego_world, server, park_ahead):
    world, ego = ego_world(dt=0.05)
    park_ahead(world, ego, 10.0)
    world.attach_sensor("lidar", SensorSpec("lidar", channels=16, range=40.0, x=1.0, z=2.0))
    world.tick()
    points = world.sensor_data("lidar")
    assert points.shape[1] == 4 and points.dtype == np.float32
    ground = np.isclose(points[:, 2], -2.0, atol=1e-4)
    assert ground.any() and np.all(points[ground, 3] <= 1.0)
    car = points[~ground]  # x forward, y right, z up from the sensor, 1 m ahead of the ego's centre
    assert car[:, 0].min() == pytest.approx(10.0 - 2.4 - 1.0, abs=1e-3)
    assert np.abs(car[:, 1]).max() == pytest.approx(1.05, abs=1e-3)
    sensor = next(s for s in server.live("sensor.lidar.ray_cast"))
    assert float(sensor.attributes["rotation_frequency"]) == pytest.approx(20.0)
    assert sensor.attributes["channels"] == "16" and sensor.attributes["range"] == "40.0"
    assert sensor.attributes["dropoff_general_rate"] == "0.0" and sensor.attributes["dropoff_zero_intensity"] == "0.0"


def test_sensor_mounts_are_measured_from_the_bounding_box_centre(ego_world, server):
    world, ego = ego_world()
    server.actors[ego].bounding_box = carla.BoundingBox(carla.Location(x=0.4, y=-0.1, z=0.75), VEHICLE_EXTENT)
    world.shapes.remember([server.actors[ego]])  # what the server reports for a blueprint with an offset box
    world.attach_sensor("lidar", SensorSpec("lidar", x=1.0, y=0.2, z=2.0))
    location = next(s for s in server.live("sensor.lidar.ray_cast")).get_transform().location
    assert (location.x, location.y, location.z) == pytest.approx((1.4, 0.1, 2.0))


def test_stale_readings_are_discarded(ego_world, server):
    world, _ = ego_world()
    world.attach_sensor("camera", SensorSpec("camera", width=8, height=8))
    server.stale_readings = True  # every tick now also sends the previous frame's reading first
    for _ in range(3):
        world.tick()
        assert world.sensor_data("camera")[0, 0, 2] == world.frame % 256
    assert world.sensors.sensors["camera"].readings.empty()


def test_late_readings_are_awaited(ego_world, server):
    world, _ = ego_world()
    world.attach_sensor("camera", SensorSpec("camera", width=8, height=8))
    server.sensor_delay = 0.05  # delivered from another thread, after the tick returned
    start = time.monotonic()
    world.tick()
    assert time.monotonic() - start >= 0.04
    assert world.sensor_data("camera")[0, 0, 2] == world.frame % 256


def test_missing_reading_times_out_with_a_clear_error(ego_world, server):
    world, _ = ego_world(sensor_timeout=0.2)
    world.attach_sensor("lidar", SensorSpec("lidar"))
    server.drop_frames = {server.world.frame + 1}
    start = time.monotonic()
    with pytest.raises(SensorTimeout, match=rf"sensor 'lidar' \(lidar\) sent no reading for frame {server.world.frame + 1} "
                                            r"within 0.2 s"):
        world.tick()
    assert 0.15 < time.monotonic() - start < 1.0


def test_unknown_or_duplicate_sensor_names_are_errors(ego_world):
    world, ego = ego_world()
    world.attach_sensor("camera", SensorSpec("camera"))
    with pytest.raises(WorldError, match="no sensor named 'lidar'; attached sensors: camera"):
        world.sensor_data("lidar")
    with pytest.raises(WorldError, match="already attached"):
        world.attach_sensor("camera", SensorSpec("camera"), ego)
    with pytest.raises(WorldError, match="sensor kind 'radar' is not supported"):
        SensorSpec("radar")


def test_sensors_are_destroyed_with_their_vehicle_and_kept_with_the_ego_on_reset(ego_world, server):
    world, ego = ego_world()
    world.attach_sensor("camera", SensorSpec("camera", width=8, height=8))
    assert len(server.live("sensor.")) == 3  # camera + collision + lane invasion
    world.destroy(ego)
    assert server.live("sensor.") == [] and world.sensors.sensors == {}
    world.tick()  # no sensor left to wait for
    ego = world.spawn_vehicle(Pose(5.8, 60.0, -np.pi / 2), role="ego")
    world.attach_sensor("camera", SensorSpec("camera", width=8, height=8))
    world.reset(1)
    assert sorted(a.id for a in server.live()) == sorted([ego, *world._sensor_parent])  # kept for the next episode
    assert len(server.live("sensor.")) == 3
    world.close()
    assert server.live() == []
