"""The backends the World contract runs against, each on CARLA's Town04.

- ``embedded``: the project's simulator (skipped only while ``cardreamer.world.embedded`` cannot be imported);
- ``carla-standin``: CarlaWorld on the stand-in server of tests/world_carla (the backend's own
  translation of the API, with the stand-in's simple motion);
- ``carla-live``: CarlaWorld on a real server at $CARDREAMER_CARLA_HOST:$CARDREAMER_CARLA_PORT
  (default port 2000), skipped, saying so, when no server answers there.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cardreamer.config import CarlaServer
from cardreamer.world.api import World

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "world_carla"))  # the stand-in server


@dataclass
class Backend:
    name: str
    build: Callable[[], World]
    deterministic: bool  # promises: same seed and calls, same states


def _embedded(town04) -> Backend:
    try:
        from cardreamer.world.embedded import EmbeddedWorld
    except ImportError as exc:
        pytest.skip(f"embedded backend not importable yet: {exc}")
    return Backend("embedded", lambda: EmbeddedWorld(town04, dt=0.1, seed=0), deterministic=True)


def _standin(carla_maps_dir, monkeypatch) -> Backend:
    from carla_standin import SpawnCommand, StandInServer

    from cardreamer.world.carla_backend import world as world_module
    from cardreamer.world.carla_backend.world import CarlaWorld

    monkeypatch.setattr(world_module, "SpawnActor", SpawnCommand)
    server = StandInServer({"Town04": carla_maps_dir / "Town04.xodr"})
    return Backend("carla-standin", lambda: CarlaWorld(CarlaServer(timeout=1.0), "Town04",
                                                        client_factory=server.client), deterministic=True)


def _live() -> Backend:
    from cardreamer.world.carla_backend import CarlaConnectionError, CarlaWorld, connect

    host = os.environ.get("CARDREAMER_CARLA_HOST")
    port = int(os.environ.get("CARDREAMER_CARLA_PORT", "2000"))
    if not host:
        pytest.skip("no CARLA server: set CARDREAMER_CARLA_HOST (and CARDREAMER_CARLA_PORT) to run the contract "
                    "against a live server")
    config = CarlaServer(host=host, port=port, timeout=20.0)
    try:
        connect(config, timeout=3.0)
    except CarlaConnectionError as exc:
        pytest.skip(f"no CARLA server answered at {host}:{port} ({exc})")
    return Backend("carla-live", lambda: CarlaWorld(config, "Town04"), deterministic=False)


@pytest.fixture(scope="module", params=["embedded", "carla-standin", "carla-live"])
def backend(request, carla_maps_dir, town04):
    monkeypatch = pytest.MonkeyPatch()
    if request.param == "embedded":
        chosen = _embedded(town04)
    elif request.param == "carla-standin":
        chosen = _standin(carla_maps_dir, monkeypatch)
    else:
        chosen = _live()
    yield chosen
    monkeypatch.undo()


@pytest.fixture(scope="module")
def shared_world(backend):
    world = backend.build()
    yield world
    world.close()


@pytest.fixture
def world(shared_world):
    """The backend's world, reset: every test starts from an empty world."""
    shared_world.reset(0)
    return shared_world
