"""Sight cones, relayed sight, shared intentions with errors, and a world with no routes."""
import numpy as np
import pytest
from conftest import ego_pose
from fake_world import StaticWorld

from cardreamer.geometry import box_corners
from cardreamer.observer import DEFAULT_OBSERVATIONS, Observer
from cardreamer.observer.intentions import IntentionChannel, route_ahead
from cardreamer.observer.visibility import Sight, visible_vehicles
from cardreamer.world.api import Pose

SMALL = np.array([[0.1, 0.1]])  # a nearly point-sized box


def test_sight_cone_and_range():
    sight = Sight(sight_range=30.0, fov_front=150.0, fov_rear=0.0)
    at = np.zeros((1, 2))
    ahead = np.radians([0, 70, 80, 180])  # inside, inside (< 75), outside, behind
    xy = np.stack([20 * np.cos(ahead), 20 * np.sin(ahead)], -1)
    corners = box_corners(xy, np.zeros(4), np.repeat(SMALL, 4, 0))
    assert sight.sees(at, np.zeros(1), corners)[0].tolist() == [True, True, False, False]
    with_rear = Sight(30.0, 150.0, 60.0)
    assert with_rear.sees(at, np.zeros(1), corners)[0].tolist() == [True, True, False, True]
    far = box_corners(np.array([[31.0, 0.0]]), np.zeros(1), SMALL)
    assert not sight.sees(at, np.zeros(1), far).any()
    # a long box whose centre is out of range but whose rear corner is in range is seen
    long_box = box_corners(np.array([[32.0, 0.0]]), np.zeros(1), np.array([[2.5, 1.0]]))
    assert sight.sees(at, np.zeros(1), long_box).all()
    # heading matters: turned around, the observer sees what was behind it
    assert sight.sees(at, np.array([np.pi]), corners)[0].tolist() == [False, False, False, True]


def test_relayed_sight_depth():
    sight = Sight(30.0, 150.0, 0.0)
    xy = np.array([[0.0, 0.0], [25.0, 0.0], [50.0, 0.0], [75.0, 0.0]])  # a chain, 25 m apart
    corners = box_corners(xy, np.zeros(4), np.repeat(SMALL, 4, 0))
    seen = [visible_vehicles(sight, xy, np.zeros(4), corners, 0, depth).tolist() for depth in (1, 2, 3)]
    assert seen == [[False, True, False, False], [False, True, True, False], [False, True, True, True]]


def test_intention_errors_shift_or_truncate_the_route(town04):
    world = town04.world
    sender = town04.others["ahead"]
    route, lo, hi = route_ahead(world, sender, 20.0)
    true_points = route.points[lo:hi]
    kinds = set()
    for seed in range(12):
        channel = IntentionChannel(error_rate=1.0, seed=seed)
        channel.reset()
        received = channel.received(world, sender, 20.0)
        error = channel.error_of(sender)
        kinds.add(error.kind)
        if error.kind == "shift":
            assert np.allclose(np.hypot(*(received - true_points).T), 3.5)
        else:
            assert 2 <= len(received) < len(true_points) and np.array_equal(received, true_points[:len(received)])
    assert kinds == {"shift", "truncate"}
    clean = IntentionChannel(error_rate=0.0, seed=0)
    clean.reset()
    assert np.array_equal(clean.received(world, sender, 20.0), true_points)


def test_intention_error_rate_is_respected_and_redrawn_per_episode():
    channel = IntentionChannel(error_rate=0.2, seed=7)
    rates, draws = [], []
    for _ in range(5):
        channel.reset()
        flags = [channel.error_of(actor) is not None for actor in range(400)]
        rates.append(np.mean(flags))
        draws.append(flags)
    assert np.mean(rates) == pytest.approx(0.2, abs=0.04)
    assert draws[0] != draws[1]  # a new episode draws again
    again = IntentionChannel(error_rate=0.2, seed=7)
    again.reset()
    assert [again.error_of(actor) is not None for actor in range(400)] == draws[0]


def test_every_observation_works_without_routes(town04):
    world = StaticWorld(town04.world.road_map)
    xy, yaw = ego_pose(town04.world, town04.ego)
    ego = world.spawn_vehicle(Pose(float(xy[0]), float(xy[1]), yaw), role="ego", speed=3.0)
    world.spawn_vehicle(Pose(float(xy[0]), float(xy[1]) - 10.0, yaw))
    observer = Observer(DEFAULT_OBSERVATIONS, list(DEFAULT_OBSERVATIONS))
    obs, _ = observer.reset(world, ego)
    for key, value in obs.items():
        assert observer.observation_space[key].contains(value), key
    assert obs["state"][0] == pytest.approx(3.0) and not obs["state"][1:].any()
    message = obs["message"].reshape(6, -1)
    assert message[0, 0] == 1 and not message[0, 6:].any()  # present, manoeuvre unknown
