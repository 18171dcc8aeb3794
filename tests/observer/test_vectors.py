"""Vector observations: collision, state and message."""
import numpy as np
import pytest
from conftest import place_relative

from cardreamer.observer import DEFAULT_OBSERVATIONS, build_handler
from cardreamer.observer.intentions import MANOEUVRES, classify_manoeuvre, route_ahead
from cardreamer.observer.message import SLOT_FIELDS
from cardreamer.world.api import CollisionEvent


def observe(scene, name, **overrides):
    handler = build_handler(name, {**DEFAULT_OBSERVATIONS[name], **overrides})
    handler.reset(scene.world, scene.ego)
    obs, info = handler.step(scene.world, scene.ego)
    assert handler.observation_space()[name].contains(obs[name])
    return obs[name], info


def test_collision(town04):
    obs, info = observe(town04, "collision")
    assert obs.tolist() == [0.0, 0.0] and info["collision_ids"] == []
    town04.world.collision_events[town04.ego] = [CollisionEvent(1, town04.ego, 101, 4.0),
                                                 CollisionEvent(1, town04.ego, -1, 6.5)]
    obs, info = observe(town04, "collision")
    assert obs.tolist() == [1.0, 6.5] and info["collision_ids"] == [101, -1]


def test_state_relative_to_route(town04):
    obs, _ = observe(town04, "state")
    assert obs.shape == (3 + 2 * 10,)
    speed, heading_error, lateral = obs[:3]
    assert speed == pytest.approx(10.0)
    assert abs(heading_error) < 0.01
    assert lateral == pytest.approx(0.38, abs=0.02)  # the ego is 0.38 m right of its lane centre
    ahead = obs[3:].reshape(-1, 2)
    assert np.allclose(ahead[:, 0], 2.0 * np.arange(1, 11), atol=0.05)
    assert np.allclose(ahead[:, 1], -0.38, atol=0.05)


def test_message_lists_nearest_neighbours_with_intentions(town04):
    obs, info = observe(town04, "message")
    slots = obs.reshape(6, len(SLOT_FIELDS))
    field = {name: i for i, name in enumerate(SLOT_FIELDS)}
    ids = info["message_ids"].tolist()
    assert ids[0] == town04.others["right"]  # beside the ego: nearest
    distances = np.hypot(slots[:len(ids), field["x"]], slots[:len(ids), field["y"]])
    assert np.all(np.diff(distances) >= 0)
    ahead = slots[ids.index(town04.others["ahead"])]
    assert ahead[field["present"]] == 1 and ahead[field["x"]] == pytest.approx(10.0) and abs(ahead[field["y"]]) < 1e-6
    assert ahead[field["is_straight"]] == 1
    opposite = slots[ids.index(town04.others["opposite"])]
    assert opposite[field["cos_heading"]] == pytest.approx(-1.0, abs=0.01) and opposite[field["y"]] < -5
    changing = slots[ids.index(town04.others["changing"])]
    assert changing[field["is_lane_change"]] == 1 and changing[field["x"]] == pytest.approx(-12.0, abs=0.5)
    assert np.all(slots[len(ids):] == 0)  # empty slots


def test_message_range_and_left_turn(town10):
    route = town10.world.route_of(town10.ego)
    assert MANOEUVRES[classify_manoeuvre(town10.world.road_map, route, 0, len(route.points))] == "left"
    window = route_ahead(town10.world, town10.ego, 30.0)
    assert MANOEUVRES[classify_manoeuvre(town10.world.road_map, *window)] == "left"
    obs, info = observe(town10, "message", message_range=1.0)
    assert not obs.any() and len(info["message_ids"]) == 0


def test_message_sees_new_vehicle(town04):
    newcomer = place_relative(town04.world, town04.ego, 3.0, -0.5)
    _, info = observe(town04, "message")
    assert info["message_ids"][0] == newcomer
