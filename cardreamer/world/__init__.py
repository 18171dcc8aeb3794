"""World backends behind one interface (``cardreamer.world.api.World``)."""
from __future__ import annotations

from cardreamer.config import WorldConfig
from cardreamer.roadmap import RoadMap
from cardreamer.world.api import World, WorldError
from cardreamer.world.slot import current_slot


def make_world(config: WorldConfig, road_map: RoadMap, seed: int = 0) -> World:
    """Create the configured backend on ``road_map`` (``auto``: CARLA if a server answers); a CARLA world
    connects to the server of the env being built (``cardreamer.world.slot``)."""
    backend = config.backend
    if backend == "auto":
        from cardreamer.world.carla_backend import choose_backend

        backend = choose_backend(config)
    if backend == "embedded":
        from cardreamer.world.embedded import EmbeddedWorld

        return EmbeddedWorld(road_map, dt=config.dt, seed=seed)
    from cardreamer.world.carla_backend import CarlaProcessWorld, CarlaWorld

    server = config.carla.for_env(current_slot())  # this env's own server
    world_type = CarlaProcessWorld if server.isolate else CarlaWorld
    return world_type(server, str(road_map.source or road_map.name), dt=config.dt, seed=seed, road_map=road_map)


__all__ = ["World", "WorldError", "make_world"]
