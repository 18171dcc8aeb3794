"""Fixtures: a stand-in CARLA server on Town04 and CarlaWorlds connected to it."""
from __future__ import annotations

import pytest
from carla_standin import SpawnCommand, StandInServer

from cardreamer.config import CarlaServer
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
