"""Small gymnasium envs for the backbone tests."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest


class CueEnv(gym.Env):
    """A red square on the left or right of a 16x16 image (also given as a 2-vector); the action
    naming its side earns 1. A random policy earns half of ``length`` per episode. At episode end
    the info carries the driving keys: success (all hits), collision (a miss at the last step),
    route_completion (hit fraction) and mean_speed."""

    metadata = {"render_modes": []}

    def __init__(self, length: int = 16):
        self.length = length
        self.observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8),
            "cue": gym.spaces.Box(-1, 1, (2,), np.float32),
        })
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self):
        image = np.zeros((16, 16, 3), np.uint8)
        x = 2 if self.side == 0 else 10
        image[6:10, x:x + 4, 0] = 255
        return {"image": image, "cue": np.eye(2, dtype=np.float32)[self.side]}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.hits = 0, 0
        self.side = int(self.np_random.integers(2))
        return self._obs(), {}

    def step(self, action):
        hit = int(action) == self.side
        self.hits += hit
        self.t += 1
        self.side = int(self.np_random.integers(2))
        done = self.t >= self.length
        info = {}
        if done:
            info = {"success": self.hits == self.length, "collision": not hit,
                    "route_completion": self.hits / self.length, "mean_speed": 2.0 * self.hits / self.length}
        return self._obs(), float(hit), False, done, info


class DotEnv(gym.Env):
    """Deterministic: a dot moves one pixel right per step across a 16x16 image; actions are
    ignored; reward 1 when it wraps to the left edge; episodes last 40 steps."""

    def __init__(self):
        self.observation_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)})
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self):
        image = np.zeros((16, 16, 3), np.uint8)
        image[6:10, self.x:self.x + 2] = 255
        return {"image": image}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.x = 0, 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        self.x = (self.x + 1) % 15
        return self._obs(), float(self.x == 0), False, self.t >= 40, {}


@pytest.fixture
def cue_env_fn():
    return CueEnv


@pytest.fixture
def dot_env_fn():
    return DotEnv
