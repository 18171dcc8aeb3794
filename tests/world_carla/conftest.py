"""Fixtures: a stand-in CARLA server on Town04, CarlaWorlds connected to it, an ego on Town04's four-lane road."""
from __future__ import annotations

import numpy as np
import pytest
from carla_standin import SpawnCommand, StandInServer

from cardreamer.config import CarlaServer
from cardreamer.world.api import Behavior, Pose
from cardreamer.world.carla_backend import world as world_module
from cardreamer.world.carla_backend.world import CarlaWorld


@pytest.fixture
def server(carla_maps_dir):
    return StandInServer({"Town04": carla_maps_dir / "Town04.xodr", "Town01": carla_maps_dir / "Town01.xodr"})


@pytest.fixture
def make_world(server, monkeypatch):
    """Build CarlaWorlds on the stand-in server (closed at the end of the test)."""
    monkeypatch.setattr(world_module, "SpawnActor", SpawnCommand)
    worlds = []

    def build(map_name: str = "Town04", **kwargs) -> CarlaWorld:
        config = kwargs.pop("config", CarlaServer(timeout=1.0))
        world = CarlaWorld(config, map_name, client_factory=server.client, **kwargs)
        worlds.append(world)
        return world

    yield build
    for world in worlds:
        world.close()


@pytest.fixture
def ego_world(make_world):
    """ego_world(**world_kwargs): a CarlaWorld and an ego at (5.8, 100) on Town04, heading along its lane."""
    def build(**kwargs):
        world = make_world(**kwargs)
        lane, s, _ = world.road_map.locate(np.array([5.8, 100.0]))
        ego = world.spawn_vehicle(Pose(5.8, 100.0, float(world.road_map.lanes[lane].heading_at(s))), role="ego")
        return world, ego
    return build


@pytest.fixture
def park_ahead():
    """park_ahead(world, ego, distance): a vehicle standing that far straight ahead of the ego, heading the same way."""
    def park(world, ego: int, distance: float) -> int:
        v = world.vehicles()
        xy, yaw = v.xy[v.row(ego)], float(v.yaw[v.row(ego)])
        x, y = xy + distance * np.array([np.cos(yaw), np.sin(yaw)])
        return world.spawn_vehicle(Pose(float(x), float(y), yaw), behavior=Behavior(desired_speed=0.0))
    return park


@pytest.fixture
def lane_task(tmp_path, carla_maps_dir):
    """lane_task(background): a task file driving Town04's lane x = 5.8 from y = 100 to -58 for 30 steps."""
    def write(background: int):
        task = tmp_path / "lane_on_carla.yaml"
        task.write_text(f"""
task:
  name: lane_on_carla
  map: {carla_maps_dir / "Town04.xodr"}
  ego:
    spawn: [{{x: 5.8, y: 100}}]
    route: [[5.8, -58]]
  traffic: {{background: {background}}}
  terminal: {{time_limit: 30}}
env:
  observation: {{enabled: [birdeye_wpt]}}
""")
        return task

    return write
