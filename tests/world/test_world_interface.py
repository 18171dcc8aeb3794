"""What a world can do: the World interface every backend implements, and capability protocols
that only some backends have, checked once with one line naming who needs what."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import pytest
from world_helpers import lane_at, pose_on_lane

from cardreamer.config_loading import ConfigError
from cardreamer.observer import DEFAULT_OBSERVATIONS, Observer
from cardreamer.world.api import Behavior, CapabilityError, SensorWorld, World, require_capability
from cardreamer.world.carla_backend import CarlaWorld
from cardreamer.world.embedded import EmbeddedWorld


@runtime_checkable
class WeatherWorld(Protocol):
    """weather control (set_weather)"""

    def set_weather(self, preset: str) -> None: ...


@pytest.fixture
def highway(project_map):
    return EmbeddedWorld(project_map("highway"), seed=0)


def test_every_backend_implements_the_interface():
    assert "is_off_road" in World.__abstractmethods__
    for backend in (EmbeddedWorld, CarlaWorld):
        assert not backend.__abstractmethods__, backend


def test_real_sensors_are_a_declared_capability_of_the_carla_backend_only(highway):
    assert issubclass(CarlaWorld, SensorWorld)
    assert not isinstance(highway, SensorWorld)


def test_a_missing_capability_is_one_line_naming_the_need_and_the_backend(highway):
    with pytest.raises(CapabilityError) as error:
        require_capability(highway, WeatherWorld, "task 'rainy': weather", "drop weather or use the carla backend")
    assert str(error.value) == ("task 'rainy': weather needs a world with weather control (set_weather); "
                                "EmbeddedWorld has none; drop weather or use the carla backend")
    assert isinstance(error.value, ConfigError)


@pytest.mark.parametrize("name", ["camera", "lidar"])
def test_an_observation_that_needs_sensors_on_a_world_without_them(highway, name):
    road_map = highway.road_map
    ego = highway.spawn_vehicle(pose_on_lane(road_map, lane_at(road_map, (0, 5.2), (250, 5.2)), 20.0), role="ego")
    observer = Observer({name: {**DEFAULT_OBSERVATIONS[name], "source": "sensor"}}, [name])
    with pytest.raises(CapabilityError) as error:
        observer.reset(highway, ego)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{name}.source: 'sensor' needs a world with real sensors")
    assert "EmbeddedWorld has none" in message
    # auto falls back to CarDreamer's own rendering on the same world
    auto = Observer({name: {**DEFAULT_OBSERVATIONS[name], "source": "auto"}}, [name])
    obs, _ = auto.reset(highway, ego)
    assert name in obs


def test_ticking_adds_no_attributes_to_the_world(highway):
    """State the simulator keeps (e.g. the lane-change tables) is owned by objects made for it,
    not patched onto the world on first use."""
    highway.spawn_traffic(60, behavior=Behavior(desired_speed=20.0))
    before = set(vars(highway))
    for _ in range(40):  # lane changes are considered every 10 ticks
        highway.tick()
    assert set(vars(highway)) - before == set()
