"""Small gymnasium envs for the training and backbone tests."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class ReachEnv(gym.Env):
    """A cell on a track of 8 cells, moved left or right (or kept) by the action; every step spent
    on the rightmost cell earns 1. Episodes last 20 steps from a random cell, so going right at once
    earns 16.5 on average and a random policy about 3. Observations: the track as a 16x16 image and/or the
    position as a one-hot vector. Episode-end info has the driving keys: success (goal reached),
    collision (pushed into the left wall), route_completion (furthest cell / 7), mean_speed,
    terminal_reason (always time_limit)."""

    def __init__(self, image: bool = True, vector: bool = True, length: int = 20):
        self.length, self.use_image, self.use_vector = length, image, vector
        spaces = {}
        if image:
            spaces["image"] = gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)
        if vector:
            spaces["position"] = gym.spaces.Box(0, 1, (8,), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Discrete(3)

    def _obs(self):
        obs = {}
        if self.use_image:
            image = np.zeros((16, 16, 3), np.uint8)
            image[6:10, 2 * self.x:2 * self.x + 2] = (255, 128, 0)
            obs["image"] = image
        if self.use_vector:
            obs["position"] = np.eye(8, dtype=np.float32)[self.x]
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = self.moved = 0
        self.x = self.best = int(self.np_random.integers(8))
        self.bumped = False
        return self._obs(), {}

    def step(self, action):
        dx = int(action) - 1
        self.bumped |= self.x + dx < 0
        new = int(np.clip(self.x + dx, 0, 7))
        self.moved += abs(new - self.x)
        self.x, self.t = new, self.t + 1
        self.best = max(self.best, self.x)
        done = self.t >= self.length
        info = {}
        if done:
            info = {"success": self.best == 7, "collision": self.bumped, "route_completion": self.best / 7,
                    "mean_speed": self.moved / self.t, "terminal_reason": "time_limit"}
        return self._obs(), float(self.x == 7), False, done, info


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
