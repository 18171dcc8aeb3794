"""Cleanup across thousands of resets, server loss, and reconnecting (with and without relaunch)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import carla
import numpy as np
import pytest

from cardreamer.config import CarlaServer
from cardreamer.world.api import Behavior, Pose, SensorSpec, WorldError
from cardreamer.world.carla_backend import CarlaServerLost


def ego_pose(world) -> Pose:
    lane, s, _ = world.road_map.locate(np.array([5.8, 100.0]))
    return Pose(5.8, 100.0, float(world.road_map.lanes[lane].heading_at(s)))


def test_nothing_is_left_behind_across_2000_resets(make_world, server):
    world = make_world()
    pose = ego_pose(world)
    for episode in range(2000):
        world.reset(episode)
        ego = world.spawn_vehicle(pose, role="ego")
        world.spawn_traffic(2, Behavior(on_route_end="destroy"), exclude_near=np.array([5.8, 100.0]),
                            exclude_radius=20)
        if episode % 100 == 0:
            world.attach_sensor("camera", SensorSpec("camera", width=4, height=4))
        world.apply_control(ego, carla.VehicleControl(throttle=1.0))
        world.tick()
    assert len(server.live()) == 5  # the ego, its 2 event sensors, 2 background vehicles
    # the ego is kept across resets; the fresh clients of resets 1000 and 2000 (restart_client_every) spawn it anew
    assert (server.spawned["sensor.other.collision"], server.spawned["sensor.camera.rgb"]) == (3, 20)
    world.reset(0)
    assert sorted(a.id for a in server.live()) == sorted([ego, *world._sensor_parent])
    assert world.vehicles().ids.size == 0
    assert len(world.shapes.shapes) <= len(server.actors)  # the shape cache holds live actors only
    assert (world._vehicles, world._pending, list(world._parked), len(world._sensor_parent)) == ({}, {}, [ego], 2)
    assert world.spawn_vehicle(pose, role="ego") == ego
    world.close()
    assert server.live() == []


def test_a_tick_that_times_out_on_a_live_server_is_a_loss_and_reconnect_goes_on_there(make_world, server):
    """A slow step (GPU load) times the tick out while the server lives and has stepped: the world is lost until
    reconnect, which continues on the same server with this world's old vehicles removed."""
    world = make_world(config=CarlaServer(timeout=0.2))
    world.spawn_vehicle(ego_pose(world), role="ego")
    world.spawn_traffic(2)
    world.tick()
    frame = server.world.frame
    server.tick_seconds = 0.3
    with pytest.raises(CarlaServerLost, match=r"during tick: time-out of 200ms while waiting for the simulator"):
        world.tick()
    assert server.world.frame == frame + 1  # the server did step
    server.tick_seconds = 0.0
    with pytest.raises(CarlaServerLost, match="call reconnect"):
        world.reset(0)
    world.reconnect()
    assert server.live("vehicle.") == []  # the old ego (kept vehicles included) and traffic are gone
    world.reset(1)
    ego = world.spawn_vehicle(ego_pose(world), role="ego")
    world.tick()
    assert world.vehicles().ids.tolist() == [ego] and server.world.settings["synchronous_mode"] is True


def test_server_loss_raises_a_specific_error_until_reconnect(make_world, server):
    world = make_world()
    world.spawn_vehicle(ego_pose(world), role="ego")
    server.kill()
    with pytest.raises(CarlaServerLost, match=r"stopped answering during tick: time-out .* Call world.reconnect\(\)"):
        world.tick()
    assert issubclass(CarlaServerLost, WorldError)
    server.restart()  # answering again, but this world must not pretend nothing happened
    with pytest.raises(CarlaServerLost, match="call reconnect"):
        world.reset(0)
    world.reconnect()
    assert server.world.settings["synchronous_mode"] is True
    world.reset(1)
    ids = world.spawn_traffic(3)  # the restarted server reuses the old ego's and its sensors' ids
    world.tick()
    assert sorted(world.vehicles().ids.tolist()) == sorted(ids)
    ego = world.spawn_vehicle(ego_pose(world), role="ego")
    world.apply_control(ego, carla.VehicleControl(throttle=1.0))
    for _ in range(5):
        world.tick()
    assert world.vehicles().speed[world.vehicles().row(ego)] > 0
    world.close()
    assert server.live() == []


def test_reconnect_to_a_surviving_server_removes_the_old_actors(make_world, server, monkeypatch):
    world = make_world()
    world.spawn_vehicle(ego_pose(world), role="ego")
    world.spawn_traffic(4)
    original_tick = server.world.tick
    monkeypatch.setattr(server.world, "tick", lambda *a: (_ for _ in ()).throw(RuntimeError(
        "time-out of 1000ms while waiting for the simulator")))
    with pytest.raises(CarlaServerLost):
        world.tick()
    monkeypatch.setattr(server.world, "tick", original_tick)
    assert len(server.live("vehicle.")) == 5
    world.reconnect(relaunch=False)
    assert server.live() == []


def test_refused_requests_are_not_mistaken_for_server_loss(make_world, server, monkeypatch):
    world = make_world()
    monkeypatch.setattr(server.world, "reset_all_traffic_lights",
                        lambda: (_ for _ in ()).throw(RuntimeError("rpc::rpc_error during call in function x")))
    with pytest.raises(RuntimeError, match="rpc_error") as err:
        world.reset(0)
    assert not isinstance(err.value, CarlaServerLost)


def test_reconnect_relaunches_with_the_launch_command(make_world, server):
    command = f"{sys.executable} -c \"import time; time.sleep(60)\""
    world = make_world(config=CarlaServer(timeout=1.0, launch_command=command))
    server.kill()
    with pytest.raises(CarlaServerLost):
        world.reset(0)
    server.restart()
    world.reconnect()  # launch_command set: a new server process is started first
    process = world._launched
    assert process is not None and process.poll() is None
    world.reset(0)
    world.close()
    assert process.poll() is not None  # a server this world started is stopped with it


def test_close_after_server_loss_does_not_raise(make_world, server):
    world = make_world()
    server.kill()
    with pytest.raises(CarlaServerLost):
        world.tick()
    world.close()
    world.close()
    assert server.traffic_managers == {}  # shut down although its server is gone: no later tick reaches it


PRELUDE = """
import atexit, sys
from pathlib import Path
sys.path.insert(0, {here!r})
from carla_standin import SpawnCommand, StandInServer, TRAFFIC_MANAGERS
from cardreamer.config import CarlaServer
from cardreamer.world.carla_backend import CarlaServerLost, world as world_module

server = StandInServer({{"Town04": Path({town04!r})}})
AFTER_EXIT = []  # run after the world's own exit handler
atexit.register(lambda: [report() for report in AFTER_EXIT])
world_module.SpawnActor = SpawnCommand
world = world_module.CarlaWorld(CarlaServer(timeout=1.0), "Town04", client_factory=server.client)
"""


def run_script(body: str, carla_maps_dir: Path) -> subprocess.CompletedProcess:
    """Run ``body`` after PRELUDE (a stand-in server on Town04 and a CarlaWorld on it) in a fresh interpreter."""
    script = PRELUDE.format(here=str(Path(__file__).parent), town04=str(carla_maps_dir / "Town04.xodr")) + body
    return subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=180)


def test_a_client_that_exits_without_close_leaves_the_server_clean(carla_maps_dir):
    done = run_script("""
AFTER_EXIT.append(lambda: print("after exit:", server.world.settings["synchronous_mode"], len(server.live())))
world.spawn_traffic(3)
print("running:", server.world.settings["synchronous_mode"], len(server.live()))
""", carla_maps_dir)
    assert done.returncode == 0, done.stderr
    assert "running: True 3" in done.stdout and "after exit: False 0" in done.stdout


def test_reconnect_shuts_the_dead_traffic_manager_down_so_the_next_tick_does_not_terminate(carla_maps_dir):
    """CARLA ticks every TM of the process after world.tick() and inside apply_settings(); one made for a server
    that is gone throws in its own thread: std::terminate, which no Python code can catch."""
    done = run_script("""
old_port = world.tm_port
server.kill()
try:
    world.tick()
except CarlaServerLost:
    print("lost")
server.restart()
world.reconnect(relaunch=False)
world.reset(1)
world.tick()
print("ticking again; old TM registered:", old_port in TRAFFIC_MANAGERS)
world.close()
print("after close:", sorted(TRAFFIC_MANAGERS))
""", carla_maps_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["lost", "ticking", "again;", "old", "TM", "registered:", "False", "after",
                                   "close:", "[]"]


@pytest.mark.parametrize("message", [
    "time-out of 10000ms while waiting for the simulator, make sure the simulator is ready and connected to x:2000",
    "failed to connect to newly created map",
    ("trying to access an expired episode; a new episode was started in the simulation but an object tried "
     "accessing the old one."),
    "read: End of file [asio.misc:2]",
    "connect: Connection refused [system:111]",
])
def test_every_server_loss_message_of_libcarla_is_server_lost(make_world, server, message):
    world = make_world()
    server.kill(message)
    with pytest.raises(CarlaServerLost, match="stopped answering during tick"):
        world.tick()


def test_a_map_loaded_by_another_client_expires_the_episode_and_reconnect_recovers(make_world, server):
    world = make_world()
    world.spawn_vehicle(ego_pose(world), role="ego")
    server.client("127.0.0.1", 2000).load_world("Town01")
    with pytest.raises(CarlaServerLost, match="trying to access an expired episode"):
        world.tick()
    world.reconnect(relaunch=False)
    assert server.world.carla_map.name.endswith("Town04")
    world.reset(1)
    world.spawn_vehicle(ego_pose(world), role="ego")
    world.tick()
    assert world.vehicles().ids.size == 1


def _cache_sizes(world, server, episodes: int) -> list[int]:
    """Entries of the client's actor cache after each of ``episodes`` episodes (ego and 2 background vehicles)."""
    pose = ego_pose(world)
    sizes = []
    for episode in range(episodes):
        world.reset(episode)
        world.spawn_vehicle(pose, role="ego")
        world.spawn_traffic(2, exclude_near=np.array([5.8, 100.0]), exclude_radius=20)
        world.tick()
        sizes.append(len(server.last_client.actor_cache))
    return sizes


def test_a_fresh_client_every_n_resets_bounds_the_client_actor_cache(make_world, server):
    """libcarla's client caches every actor it fetched or spawned and never drops one (CachedActorList; only a map
    load clears it): each episode adds its 2 background vehicles for good (the ego and its sensors are kept)."""
    growing = make_world(config=CarlaServer(timeout=1.0, restart_client_every=0))
    sizes = _cache_sizes(growing, server, 40)
    assert sizes[-1] - sizes[9] == 30 * 2
    growing.close()
    bounded = make_world(config=CarlaServer(timeout=1.0, restart_client_every=10))
    bounded_sizes = _cache_sizes(bounded, server, 40)
    assert max(bounded_sizes) <= sizes[9] and bounded_sizes[-1] < bounded_sizes[-2]  # emptied every 10 resets
    assert len(server.live()) == 5  # the fresh client's world destroyed the old one's actors
    bounded.close()
    assert server.live() == []
