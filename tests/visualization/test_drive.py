"""Keyboard driving: key → action mapping and the fixed-rate driving loop."""

import threading
import time

import gymnasium as gym
import numpy as np
import pytest
from conftest import FakeDrivingEnv, Viewer

from visualization.drive import KeyboardActions, drive
from visualization.protocol import VIEW_NAMESPACE
from visualization.publisher import Control, Publisher


def test_box_actions_follow_keys_within_bounds():
    actions = KeyboardActions.for_env(FakeDrivingEnv(), steer_fraction=0.5)
    np.testing.assert_allclose(actions.action({}), [0.0, 0.0])
    np.testing.assert_allclose(actions.action({"up": True, "left": True}), [3.0, -0.4])
    np.testing.assert_allclose(actions.action({"down": True, "right": True}), [-3.0, 0.4])
    np.testing.assert_allclose(actions.action({"up": True, "down": True}), [0.0, 0.0])
    assert actions.action({}).dtype == np.float32


def test_box_with_positive_only_range_uses_its_lower_bound_as_neutral():
    env = FakeDrivingEnv()
    env.action_space = gym.spaces.Box(np.array([0.0, -1.0], np.float32), np.array([1.0, 1.0], np.float32))
    actions = KeyboardActions.for_env(env, steer_fraction=1.0)
    np.testing.assert_allclose(actions.action({"down": True, "right": True}), [0.0, 1.0])
    np.testing.assert_allclose(actions.action({"up": True}), [1.0, 0.0])


def test_discrete_actions_pick_nearest_table_entry():
    env = FakeDrivingEnv(discrete=True)
    actions = KeyboardActions.for_env(env, steer_fraction=1.0)
    table = env.discrete_actions
    assert table[actions.action({})] == (0.0, 0.0)
    assert table[actions.action({"up": True, "right": True})] == (2.0, 0.5)
    assert table[actions.action({"down": True, "left": True})] == (-2.0, -0.5)


def test_unsupported_action_spaces_are_explained():
    env = FakeDrivingEnv(discrete=True)
    del env.discrete_actions
    with pytest.raises(ValueError, match="discrete_actions"):
        KeyboardActions.for_env(env)
    env.action_space = gym.spaces.Box(-1, 1, (3,))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        KeyboardActions.for_env(env)
    with pytest.raises(ValueError, match=r"shape \(9, 2\)"):
        KeyboardActions.for_env(FakeDrivingEnv(discrete=True), discrete_actions=[(0, 0)])


class ScriptedPublisher(Publisher):
    """Feeds scripted key states to the loop and records what it publishes."""

    def __init__(self, script):
        self.script = list(script)
        self.frames, self.steps, self.episodes = [], [], []

    def poll_control(self, env_index=0, max_age=1.0):
        return self.script.pop(0) if self.script else None

    def publish_frame(self, stream, image, env_index=0):
        self.frames.append(stream)

    def publish_step(self, info, env_index=0):
        self.steps.append(info)

    def publish_episode(self, metrics, env_index=0):
        self.episodes.append(metrics)


def test_loop_steps_at_rate_and_reports_episodes():
    env = FakeDrivingEnv(episode_length=5)
    script = [Control({"up": True}, False)] * 3 + [None, Control({}, True)] + [Control({"right": True}, False)] * 7
    publisher = ScriptedPublisher(script)
    start = time.monotonic()
    result = drive(env, None, publisher=publisher, hz=100.0, max_steps=12)
    elapsed = time.monotonic() - start
    assert result.steps == 12 and 0.1 <= elapsed < 1.0
    assert [a[0] for a in env.actions[:4]] == [3.0, 3.0, 3.0, 0.0]
    assert env.actions[-1][1] > 0  # steering right
    reasons = [e["terminal_reason"] for e in publisher.episodes]
    assert reasons == ["reset by user", "time limit"]
    assert publisher.episodes[0]["length"] == 4 and publisher.episodes[1]["length"] == 5
    assert set(publisher.frames) == {"birdeye_wpt"}
    assert {"speed", "r_speed", "reward", "action"} <= set(publisher.steps[0])


def test_browser_keys_drive_the_env_through_a_real_server(server):
    """A viewer's key events travel viewer → server → interactive publisher → driving loop."""
    env = FakeDrivingEnv()
    result = {}
    loop = threading.Thread(target=lambda: result.setdefault("r", drive(env, server["url"], run="drive-test",
                                                                         hz=50.0, max_steps=60)))
    loop.start()
    viewer = Viewer(server["base"], "drive-test")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not viewer.frames():
        time.sleep(0.02)
    assert viewer.frames("0/birdeye_wpt"), "no frame from the driving loop"
    viewer.client.emit("control", {"run": "drive-test", "env": 0, "keys": {"up": True, "left": True}},
                       namespace=VIEW_NAMESPACE)
    loop.join(timeout=10)
    viewer.close()
    assert result["r"].steps == 60
    driven = [a for a in env.actions if a[0] > 0]
    assert driven and np.allclose(driven[0], [3.0, -0.48])
    steps = viewer.steps()
    assert steps and isinstance(steps[-1]["info"]["speed"], float)
