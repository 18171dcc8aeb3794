"""DreamerV3 in JAX, the backbone protocol that makes backbones swappable, and the training and
evaluation loops. See docs/backbones.md."""

from .config import Config, make_config
from .evaluate import evaluate
from .loop import train
from .protocol import Backbone, RandomBackbone, available_backbones, make_backbone, register_backbone

__all__ = ["Backbone", "Config", "RandomBackbone", "available_backbones", "evaluate", "make_backbone",
           "make_config", "register_backbone", "train"]
