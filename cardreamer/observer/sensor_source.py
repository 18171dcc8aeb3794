"""Where a sensor observation comes from: CarDreamer's own rendering, or the world's real sensor.

The camera and the lidar handlers share one config key, ``source``:

- ``render``: computed from the world state by CarDreamer (works on every backend);
- ``sensor``: read from a real sensor the world mounts on the ego (a ``SensorWorld``: the carla
  backend's ``sensor.camera.rgb`` / ``sensor.lidar.ray_cast``); an error on a world without sensors;
- ``auto`` (default): the real sensor where the world has sensors, else ``render``.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cardreamer.world.api import SensorWorld, World, require_capability

SensorSource = Literal["auto", "render", "sensor"]


def source_field() -> Any:
    """The ``source`` config field of a handler that can read a real sensor."""
    return Field("auto", description="render: CarDreamer's own view from the world state; sensor: the world's "
                                     "real sensor (CARLA); auto: the real sensor where the world has sensors")


def uses_sensor(name: str, source: SensorSource, world: World) -> bool:
    """Whether handler ``name`` reads the world's real sensor (the handler then mounts one on the ego)."""
    if source == "sensor":
        require_capability(world, SensorWorld, f"{name}.source: 'sensor'", "use 'render' or 'auto'")
    return source != "render" and isinstance(world, SensorWorld)
