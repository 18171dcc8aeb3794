"""Live display of any Gymnasium env: a wrapper that publishes what the env shows to the visualizer.

    env = LiveDisplay(make_env("wpt"), url="http://127.0.0.1:9000/?token=...", run="wpt-expert")

After every ``reset`` and ``step`` the wrapper publishes the env's image observations (HxWx3
uint8) as video streams and its info (with the step's reward) as live step info; ``close`` closes
the publisher, then the env. Publishing never blocks a step (see :mod:`visualization.publisher`);
with ``url=None`` the wrapper publishes nothing. The env itself knows nothing of the visualizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from visualization.publisher import Publisher, make_publisher


def is_image(value: Any) -> bool:
    """Whether an observation value can be published as a frame: an HxWx3 uint8 array."""
    return isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 3 and value.shape[2] == 3


def publish_observation(publisher: Publisher, obs: Any, streams: Sequence[str] | None, env_index: int = 0) -> None:
    """Publish every image in a dict observation (only those named in ``streams`` unless it is None)
    as a stream named by its key."""
    if not isinstance(obs, dict):
        return
    for key, value in obs.items():
        if is_image(value) and (streams is None or key in streams):
            publisher.publish_frame(key, value, env_index)


def image_keys(space: gym.Space) -> list[str]:
    """Keys of a Dict observation space whose values are HxWx3 uint8 images."""
    if not isinstance(space, gym.spaces.Dict):
        return []
    return [key for key, sub in space.spaces.items()
            if isinstance(sub, gym.spaces.Box) and sub.dtype == np.uint8 and len(sub.shape) == 3 and sub.shape[2] == 3]


class LiveDisplay(gym.Wrapper):
    """Publishes the wrapped env's frames and step info to the visualizer at ``url`` as run ``run``.

    ``keys`` chooses the image observations shown (default: all of them); a key that is not an
    image observation of the env is refused here, not silently never shown. ``env_index`` tells
    envs that publish to the same run apart (one per process of a vector env, say).
    """

    def __init__(self, env: gym.Env, url: str | None, token: str | None = None, run: str = "env",
                 keys: Sequence[str] | None = None, env_index: int = 0):
        super().__init__(env)
        if keys is not None:
            images = image_keys(env.observation_space)
            unknown = [key for key in keys if key not in images]
            if unknown:
                raise ValueError(f"LiveDisplay keys {unknown} are not image observations of this env; "
                                 f"its image observations: {', '.join(images) or 'none'}")
        self.keys = None if keys is None else list(keys)
        self.env_index = env_index
        self.publisher = make_publisher(url, token, run)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._publish(obs, info)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._publish(obs, {**info, "reward": reward})
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        try:
            self.publisher.close()
        finally:
            super().close()

    def _publish(self, obs: Any, info: dict[str, Any]) -> None:
        publish_observation(self.publisher, obs, self.keys, self.env_index)
        self.publisher.publish_step(info, self.env_index)
