"""Manual driving: keys held in the browser page steer a Gymnasium env stepped at a fixed rate.

The page sends the held arrow/WASD keys over Socket.IO; the server forwards them to this loop's
publisher (an *interactive* publisher), and the loop turns them into an action every tick:

- ``up``/``down`` ask for full acceleration/braking, ``left``/``right`` for steering (negative
  steering is left, as in CARLA), scaled by ``steer_fraction``;
- a ``Box`` action space is taken as ``[acceleration, steering]`` within its bounds;
- a ``Discrete`` action space needs a table of ``(acceleration, steering)`` pairs, one per action
  index, given as ``discrete_actions`` or exposed by the env as ``env.unwrapped.discrete_actions``;
  the nearest entry is chosen.

Image observations (HxWx3 uint8) are published as video streams, the step info (speed, reward,
``r_*`` terms, terminal reason) as live step info, and each finished episode to the episode table.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from visualization.publisher import Publisher, make_publisher
from visualization.wrapper import publish_observation


@dataclass
class KeyboardActions:
    """Turns held keys into actions of a Box([acceleration, steering]) or Discrete action space."""

    space: gym.Space
    discrete_actions: np.ndarray | None = None  # (n, 2) table of (acceleration, steering)
    steer_fraction: float = 0.6

    @classmethod
    def for_env(cls, env: gym.Env, discrete_actions: Sequence[Sequence[float]] | None = None,
                steer_fraction: float = 0.6) -> KeyboardActions:
        space = env.action_space
        if isinstance(space, gym.spaces.Box):
            if space.shape != (2,):
                raise ValueError(f"keyboard driving needs a Box action of shape (2,) = [acceleration, steering], "
                                 f"got shape {space.shape}")
            return cls(space, None, steer_fraction)
        if isinstance(space, gym.spaces.Discrete):
            table = discrete_actions if discrete_actions is not None else getattr(env.unwrapped, "discrete_actions",
                                                                                  None)
            if table is None:
                raise ValueError("keyboard driving of a Discrete action space needs its (acceleration, steering) "
                                 "pairs: pass discrete_actions=... or expose env.unwrapped.discrete_actions")
            table = np.asarray(table, dtype=np.float64)
            if table.shape != (space.n, 2):
                raise ValueError(f"discrete_actions must have shape ({space.n}, 2) for Discrete({space.n}), "
                                 f"got {table.shape}")
            return cls(space, table, steer_fraction)
        raise ValueError(f"keyboard driving supports Box(2,) and Discrete action spaces, got {space}")

    @staticmethod
    def intent(keys: dict[str, bool]) -> tuple[float, float]:
        """Requested (acceleration, steering), each in [-1, 1]."""
        acceleration = float(bool(keys.get("up"))) - float(bool(keys.get("down")))
        steering = float(bool(keys.get("right"))) - float(bool(keys.get("left")))
        return acceleration, steering

    def action(self, keys: dict[str, bool]) -> Any:
        acceleration, steering = self.intent(keys)
        steering *= self.steer_fraction
        if self.discrete_actions is None:
            low, high = self.space.low.astype(np.float64), self.space.high.astype(np.float64)
            neutral = np.clip(0.0, low, high)
            wanted = np.array([acceleration, steering])
            value = np.where(wanted >= 0, neutral + wanted * (high - neutral), neutral + wanted * (neutral - low))
            return value.astype(self.space.dtype)
        table = self.discrete_actions
        span = np.maximum(np.abs(table).max(axis=0), 1e-9)
        # Scale the request to the table's own range, then take the nearest entry.
        target = np.array([acceleration, steering]) * span
        return int(np.argmin((((table - target) / span) ** 2).sum(axis=1)))


@dataclass
class DriveResult:
    steps: int
    episodes: int


def _episode_summary(info: dict[str, Any], episode_return: float, length: int, reason: str | None) -> dict[str, Any]:
    reason = reason or info.get("terminal_reason")
    text = str(reason or "").lower()
    return {
        "return": episode_return,
        "length": length,
        "success": bool(info.get("success", "success" in text or "reached" in text)),
        "collision": bool(info.get("collision", "collision" in text)),
        "terminal_reason": reason,
    }


def drive(env: gym.Env, server_url: str | None, token: str | None = None, run: str = "drive", hz: float = 10.0,
          seed: int | None = None, streams: Sequence[str] | None = None, max_steps: int | None = None,
          discrete_actions: Sequence[Sequence[float]] | None = None, publisher: Publisher | None = None,
          control_timeout: float = 1.0) -> DriveResult:
    """Step ``env`` at ``hz`` with the keys held in the browser until ``max_steps`` (or Ctrl-C).

    Opens an interactive publisher for ``run`` on ``server_url`` unless ``publisher`` is given.
    Keys count as released when the page has sent nothing for ``control_timeout`` seconds, so the
    car coasts when the tab closes or loses focus. ``R`` in the page ends the episode and resets.
    """
    actions = KeyboardActions.for_env(env, discrete_actions)
    own_publisher = publisher is None
    if publisher is None:
        publisher = make_publisher(server_url, token, run, interactive=True, max_fps=max(30.0, hz))
    period = 1.0 / hz
    steps = episodes = 0
    try:
        obs, info = env.reset(seed=seed)
        publish_observation(publisher, obs, streams)
        episode_return, length = 0.0, 0
        next_tick = time.monotonic()
        while max_steps is None or steps < max_steps:
            control = publisher.poll_control(max_age=control_timeout)
            if control is not None and control.reset and length > 0:
                publisher.publish_episode(_episode_summary(info, episode_return, length, "reset by user"))
                episodes += 1
                obs, info = env.reset()
                publish_observation(publisher, obs, streams)
                episode_return, length = 0.0, 0
            action = actions.action(control.keys if control is not None else {})
            obs, reward, terminated, truncated, info = env.step(action)
            steps += 1
            length += 1
            episode_return += float(reward)
            publish_observation(publisher, obs, streams)
            publisher.publish_step({**info, "reward": reward, "action": action, "episode_step": length})
            if terminated or truncated:
                reason = None if terminated else info.get("terminal_reason") or "time limit"
                publisher.publish_episode(_episode_summary(info, episode_return, length, reason))
                episodes += 1
                obs, info = env.reset()
                publish_observation(publisher, obs, streams)
                episode_return, length = 0.0, 0
            next_tick = max(next_tick + period, time.monotonic())
            time.sleep(max(0.0, next_tick - time.monotonic()))
    finally:
        if own_publisher:
            publisher.close()
    return DriveResult(steps, episodes)
