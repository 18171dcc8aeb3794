"""A whole task on CarlaWorld (stand-in server): env reset and steps, task spawning, BEV observation, cleanup."""
from __future__ import annotations

import numpy as np
import pytest

import cardreamer.env as env_module
from cardreamer.observer.lidar import ROAD_EDGE
from cardreamer.world.carla_backend.world import CarlaWorld

TASK = """
task:
  name: four_lane_on_carla
  map: {map}
  ego:
    spawn: [{{x: 5.8, y: 100}}, {{x: 9.0, y: 100}}, {{x: 12.2, y: 100}}, {{x: 15.6, y: 100}}]
    route: [[5.8, -58]]
  traffic:
    background: 20
    behavior: {{desired_speed: [5.0, 9.0]}}
  desired_speed: 6.0
  rewards: {{waypoint: 1.0, speed: 1.0, collision: 30.0}}
  terminal: {{time_limit: 30}}
env:
  observation:
    enabled: [birdeye_wpt]
"""


@pytest.fixture
def carla_env(tmp_path, carla_maps_dir, make_world, monkeypatch):
    """Build the four-lane task on CarlaWorld (stand-in server); returns (make, worlds)."""
    worlds: list[CarlaWorld] = []

    def carla_world(config, road_map, seed=0):
        worlds.append(make_world(str(road_map.source), dt=config.dt, seed=seed, road_map=road_map))
        return worlds[-1]

    monkeypatch.setattr(env_module, "make_world", carla_world)

    def make(observations: str = "[birdeye_wpt]"):
        task_file = tmp_path / "four_lane_on_carla.yaml"
        task_file.write_text(TASK.format(map=carla_maps_dir / "Town04.xodr").replace("[birdeye_wpt]", observations))
        return env_module.make_env(str(task_file))

    return make, worlds


def test_four_lane_task_runs_on_the_carla_backend(carla_env, server):
    env = carla_env[0]()
    obs, info = env.reset(seed=3)
    assert obs["birdeye_wpt"].shape[-1] == 3 and obs["birdeye_wpt"].any()
    ego = env.ego_id
    assert len(server.live("vehicle.")) == 21 and server.actors[ego].attributes["role_name"] == "hero"
    steps, done = 0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert np.isfinite(reward)
        steps += 1
        done = terminated or truncated
    assert steps <= 30 and "terminal_reason" in info
    env.reset(seed=4)
    assert len(server.live("vehicle.")) == 21 and env.ego_id == ego  # the ego is kept, teleported to its start
    assert server.spawned["vehicle.tesla.model3"] == 41 and server.spawned["sensor.other.collision"] == 1
    env.close()
    assert server.live() == [] and server.world.settings["synchronous_mode"] is False


def test_a_lost_server_ends_the_episode_and_the_env_recovers(carla_env, server, monkeypatch):
    make, worlds = carla_env
    env = make()
    env.reset(seed=3)
    env.step(env.action_space.sample())
    reconnect = worlds[0].reconnect

    def relaunch_then_reconnect(*args, **kwargs):  # what a configured launch_command does
        server.restart()
        return reconnect(*args, **kwargs)

    monkeypatch.setattr(worlds[0], "reconnect", relaunch_then_reconnect)
    server.kill()
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert truncated and not terminated and reward == 0.0
    assert info["terminal_reason"] == "world_lost" and "time-out" in info["incident"]
    assert obs["birdeye_wpt"].shape[-1] == 3
    env.reset(seed=4)  # a fresh episode on the reconnected server
    assert len(server.live("vehicle.")) == 21
    _, reward, *_ = env.step(env.action_space.sample())
    assert np.isfinite(reward)
    env.close()


def test_the_camera_observation_is_the_real_sensor_on_carla(carla_env, server):
    env = carla_env[0]("[birdeye_wpt, camera]")
    obs, _ = env.reset(seed=3)
    cameras = server.live("sensor.camera.rgb")
    assert len(cameras) == 1 and cameras[0].attributes["image_size_x"] == "128"
    frame = env.world.frame
    obs, *_ = env.step(env.action_space.sample())
    assert env.world.frame == frame + 1
    assert obs["camera"].shape == (128, 128, 3) and obs["camera"].dtype == np.uint8
    assert np.array_equal(obs["camera"], env.world.sensor_data("camera"))
    env.close()


def test_the_lidar_observation_is_the_real_sensor_on_carla(carla_env, server):
    env = carla_env[0]("[birdeye_wpt, lidar]")
    obs, _ = env.reset(seed=3)
    lidars = server.live("sensor.lidar.ray_cast")
    assert len(lidars) == 1 and lidars[0].attributes["range"] == "32.0"
    assert float(lidars[0].attributes["rotation_frequency"]) == pytest.approx(10.0)
    for _ in range(3):
        obs, *_ = env.step(env.action_space.sample())
        assert env.observation_space["lidar"].contains(obs["lidar"])
        assert env.observation_space["lidar_points"].contains(obs["lidar_points"])
        # the rendered scan would stop rays at Town04's road edges; the stand-in's sensor sees no walls
        assert not np.any(obs["lidar_points"][:, 2] == ROAD_EDGE)
    env.close()
    assert server.live() == []
