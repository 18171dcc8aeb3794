import gymnasium
import numpy as np
import pytest

from cardreamer.config_loading import ConfigError
from cardreamer.observer import (
    DEFAULT_OBSERVATIONS,
    HANDLERS,
    Handler,
    HandlerConfig,
    ObservationConfigError,
    Observer,
    build_handler,
    get_handler,
    register_handler,
    registered_handlers,
)
from cardreamer.registry import RegistryError


def test_builtin_handlers_are_registered():
    assert {"birdeye", "spectator", "camera", "lidar", "collision", "message", "state"} <= set(registered_handlers())


def test_every_default_observation_builds_and_matches_its_space(town04):
    observer = Observer(DEFAULT_OBSERVATIONS, list(DEFAULT_OBSERVATIONS))
    obs, _ = observer.reset(town04.world, town04.ego)
    assert isinstance(observer.observation_space, gymnasium.spaces.Dict)
    assert set(obs) == set(observer.observation_space.spaces)
    assert {"birdeye_wpt", "camera", "lidar", "lidar_points", "collision", "spectator", "message", "state"} <= set(obs)
    for key, value in obs.items():
        assert observer.observation_space[key].contains(value), key
    again, _ = observer.step(town04.world, town04.ego)
    for key in obs:
        assert np.array_equal(obs[key], again[key]), f"{key} is not deterministic"


def test_user_handler_plugs_in_without_core_changes(town04):
    @register_handler("test_ego_speed")
    class EgoSpeed(Handler):
        class Config(HandlerConfig):
            scale: float = 1.0

        def observation_space(self):
            return {self.name: gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float32)}

        def step(self, world, ego_id):
            v = world.vehicles()
            return {self.name: np.array([v.speed[v.row(ego_id)] * self.config.scale], np.float32)}, {"seen": True}

    assert get_handler("test_ego_speed") is EgoSpeed and HANDLERS["test_ego_speed"] is EgoSpeed
    config = {"speed_kmh": {"handler": "test_ego_speed", "scale": 3.6}, **DEFAULT_OBSERVATIONS}
    observer = Observer(config, ["birdeye_wpt", "speed_kmh"])
    obs, info = observer.reset(town04.world, town04.ego)
    assert obs["speed_kmh"][0] == pytest.approx(36.0)
    assert info["seen"] is True
    assert set(observer.observation_space.spaces) == {"birdeye_wpt", "speed_kmh"}


def test_unknown_config_key_names_the_key_and_the_valid_ones():
    with pytest.raises(ObservationConfigError) as err:
        build_handler("birdeye_wpt", {"handler": "birdeye", "obs_rnage": 40})
    message = str(err.value)
    assert "'obs_rnage'" in message and "did you mean 'obs_range'" in message
    with pytest.raises(ObservationConfigError) as err:
        build_handler("birdeye_wpt", {"handler": "birdeye", "zoom": 2})
    message = str(err.value)
    assert "unknown key 'zoom'; valid keys:" in message and "entities" in message and "ego_offset" in message


def test_bad_values_are_named():
    with pytest.raises(ObservationConfigError, match="entities"):
        build_handler("bev", {"handler": "birdeye", "entities": ["roadmap", "pedestrians"]})
    with pytest.raises(ObservationConfigError, match="ego_offset"):
        build_handler("bev", {"handler": "birdeye", "obs_range": 10, "ego_offset": 12})
    with pytest.raises(ObservationConfigError, match="shape"):
        build_handler("bev", {"handler": "birdeye", "shape": [64, 64, 1]})


def test_unknown_handler_and_unknown_entry_are_named():
    with pytest.raises(ConfigError, match=r"^unknown handler 'birdseye' \(did you mean 'birdeye'\?\)$"):
        build_handler("x", {"handler": "birdseye"})
    with pytest.raises(ConfigError, match=r"^unknown handler 'thermal'; valid handlers: birdeye, camera, "):
        build_handler("x", {"handler": "thermal"})
    with pytest.raises(ObservationConfigError, match="'birdeye_wtp'.*did you mean 'birdeye_wpt'"):
        Observer(DEFAULT_OBSERVATIONS, ["birdeye_wtp"])
    with pytest.raises(ObservationConfigError, match="list of names"):
        Observer(DEFAULT_OBSERVATIONS, "camera")


def test_entry_name_defaults_to_handler_name():
    handler = build_handler("camera", {"width": 160, "height": 96})
    assert handler.observation_space()["camera"].shape == (96, 160, 3)


def test_registering_another_class_under_a_taken_name_fails():
    class Other(Handler):
        def observation_space(self):
            return {}

        def step(self, world, ego_id):
            return {}, {}

    with pytest.raises(ValueError, match="already registered"):
        register_handler("birdeye")(Other)
    with pytest.raises(TypeError, match="Handler subclass"):
        register_handler("not_a_handler")(object)


def test_a_taken_handler_name_is_refused_and_a_non_handler_too():
    class OtherBirdeye(Handler):
        def observation_space(self):
            return {}

        def step(self, world, ego_id):
            return {}, {}

    with pytest.raises(RegistryError, match=r"^handler 'birdeye' is already registered by cardreamer.observer.birdeye"):
        register_handler("birdeye")(OtherBirdeye)
    with pytest.raises(TypeError, match="needs a Handler subclass"):
        register_handler("not_a_handler")(dict)
    assert "not_a_handler" not in HANDLERS
