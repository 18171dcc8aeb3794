"""DreamerV3 in JAX, registered as the backbone ``dreamerv3`` (see docs/backbones.md). Importing
this package is cheap: JAX starts only when a DreamerV3 agent is built."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from cardreamer.training.protocol import Backbone, register_backbone

from .config import PRESETS, DreamerV3Config


def make_dreamerv3(obs_space: gym.spaces.Dict, act_space: gym.Space, config: Any) -> Backbone:
    from .agent import DreamerV3  # imported lazily: JAX start-up is not needed to read configs

    return DreamerV3(obs_space, act_space, config)


register_backbone("dreamerv3", make_dreamerv3, config=DreamerV3Config, presets=PRESETS, default_preset="12m",
                  command_preset="cpu")

__all__ = ["PRESETS", "DreamerV3Config", "make_dreamerv3"]
