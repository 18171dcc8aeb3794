"""CarlaProcessWorld: the CARLA client in a worker process; a worker killed mid-tick is WorldLost, recover starts anew."""
from __future__ import annotations

import os
import signal
import threading

import carla
import numpy as np
import pytest
from carla_standin import StandInFactory

import cardreamer.env as env_module
from cardreamer.config import CarlaServer
from cardreamer.roadmap import RoadMap
from cardreamer.world.api import Pose, WorldError, WorldLost
from cardreamer.world.carla_backend.worker import CarlaProcessWorld


@pytest.fixture
def process_world(carla_maps_dir):
    """process_world(town, **kwargs): a CarlaProcessWorld on a stand-in server living in its worker (closed after)."""
    worlds = []

    def build(town: str = "Town01", tick_seconds: float = 0.0, **kwargs) -> CarlaProcessWorld:
        path = carla_maps_dir / f"{town}.xodr"
        road_map = kwargs.pop("road_map", None) or RoadMap.load(str(path))
        factory = StandInFactory(((town, str(path)),), tick_seconds=tick_seconds)
        worlds.append(CarlaProcessWorld(kwargs.pop("config", CarlaServer(timeout=1.0)), str(path), road_map=road_map,
                                        client_factory=factory, sensor_timeout=1.0, **kwargs))
        return worlds[-1]

    yield build
    for world in worlds:
        world.close()


def spawn_ego(world) -> int:
    points = world.road_map.spawn_points()
    return world.spawn_vehicle(Pose(float(points.xy[0, 0]), float(points.xy[0, 1]), float(points.yaw[0])), role="ego")


def kill_soon(pid: int, delay: float) -> threading.Timer:
    timer = threading.Timer(delay, os.kill, (pid, signal.SIGKILL))
    timer.start()
    return timer


def test_a_worker_killed_mid_tick_is_world_lost_and_recover_starts_a_fresh_one(process_world):
    world = process_world(tick_seconds=0.5)
    ego = spawn_ego(world)
    world.spawn_traffic(3)
    world.apply_control(ego, carla.VehicleControl(throttle=1.0))
    frame = world.tick()
    assert world.frame == frame and len(world.vehicles().ids) == 4
    pid = world.worker_pid
    kill_soon(pid, 0.2).join(0)  # while the worker is inside world.tick()
    with pytest.raises(WorldLost, match=rf"worker process \(pid {pid}\) for 127.0.0.1:2000 was killed by signal "
                                        r"SIGKILL during tick\. Call world.recover\(\)"):
        world.tick()
    with pytest.raises(WorldLost, match=r"call world.recover\(\) before reset"):
        world.reset(0)
    world.recover()
    assert world.worker_pid not in (None, pid)
    world.reset(1)
    ego = spawn_ego(world)
    world.apply_control(ego, carla.VehicleControl(throttle=1.0))
    for _ in range(3):
        world.tick()
    v = world.vehicles()
    assert v.ids.tolist() == [ego] and v.speed[0] > 0
    process = world._process
    world.close()
    assert process.exitcode == 0  # closed its world (Traffic Manager shut down, settings restored) and exited


def test_a_hung_worker_is_killed_after_the_call_timeout(process_world):
    # ticks of 30 s within a client timeout of 60 s: no libcarla time-out, the worker just does not answer
    world = process_world(tick_seconds=30.0, call_timeout=2.0, config=CarlaServer(timeout=60.0))
    process = world._process
    with pytest.raises(WorldLost, match=r"did not answer within 2 s, so it was killed during tick"):
        world.tick()
    assert not process.is_alive()
    world.close()


def test_errors_in_the_worker_reach_the_caller_as_one_line(process_world):
    with pytest.raises(WorldError, match="no vehicle blueprint 'vehicle.flying.car'"):
        process_world(vehicle_blueprint="vehicle.flying.car")
    world = process_world()
    with pytest.raises(WorldError, match="no vehicle with id 12345 was spawned by this world"):
        world.destroy(12345)
    ego = spawn_ego(world)
    background = world.spawn_traffic(1)[0]
    with pytest.raises(WorldError, match="driven by the Traffic Manager"):
        world.apply_control(background, carla.VehicleControl())
    world.tick()
    assert world.route_of(background) is not None and world.route_of(ego) is None


def test_an_env_whose_worker_is_killed_mid_step_truncates_and_resets_on_a_fresh_worker(process_world, lane_task,
                                                                                        monkeypatch):
    worlds = []

    def carla_world(config, road_map, seed=0):
        worlds.append(process_world("Town04", tick_seconds=0.3, road_map=road_map, dt=config.dt, seed=seed))
        return worlds[-1]

    monkeypatch.setattr(env_module, "make_world", carla_world)
    task = lane_task(4)
    env = env_module.make_env(str(task))
    env.reset(seed=3)
    env.step(env.action_space.sample())
    pid = worlds[0].worker_pid
    kill_soon(pid, 0.1)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert truncated and not terminated and reward == 0.0
    assert info["terminal_reason"] == "world_lost" and "killed by signal SIGKILL" in info["incident"]
    assert worlds[0].worker_pid not in (None, pid)  # the env recovered: a fresh worker
    obs, _ = env.reset(seed=4)
    assert obs["birdeye_wpt"].any() and len(env.world.vehicles().ids) == 5
    _, reward, *_ = env.step(env.action_space.sample())
    assert np.isfinite(reward)
    env.close()


def test_the_worker_is_replaced_by_a_fresh_one_every_n_resets(process_world):
    world = process_world(config=CarlaServer(timeout=1.0, restart_client_every=2))
    pids = []
    for episode in range(5):
        world.reset(episode)
        spawn_ego(world)
        world.tick()
        pids.append(world.worker_pid)
    assert pids[0] != pids[1] == pids[2] != pids[3] == pids[4]  # resets 2 and 4 start a fresh worker
    assert len(world.vehicles().ids) == 1
    old = world._process
    world.close()
    assert old.exitcode == 0


def test_a_server_restart_every_n_resets_needs_a_launch_command():
    with pytest.raises(ValueError, match="restart_server_every=5 needs launch_command"):
        CarlaServer(restart_server_every=5)
