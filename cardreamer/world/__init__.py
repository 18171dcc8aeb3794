"""World backends behind one interface (``cardreamer.world.api.World``)."""
from __future__ import annotations

from cardreamer.config import WorldConfig
from cardreamer.roadmap import RoadMap
from cardreamer.world.api import World, WorldError


def make_world(config: WorldConfig, road_map: RoadMap, seed: int = 0) -> World:
    """Create the configured backend on ``road_map``."""
    if config.backend == "embedded":
        from cardreamer.world.embedded import EmbeddedWorld

        return EmbeddedWorld(road_map, dt=config.dt, seed=seed)
    raise WorldError(f"env.world.backend={config.backend!r}: the CARLA server backend is not available in this "
                     f"release yet; use env.world.backend=embedded")


__all__ = ["World", "WorldError", "make_world"]
