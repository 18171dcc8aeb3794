"""Generic training, apart from any backbone: the backbone protocol and registry, the training loop,
replay, evaluation, checkpoints, loggers, envs, experiments and the ``train``/``eval``/``experiment``
commands. Backbones (the built-in ``dreamerv3`` and ``random``, or a plugin's) register themselves;
this package imports none of them until one is looked up by name. See docs/backbones.md."""

from .config import TrainingConfig, apply_overrides, load_config, make_config
from .evaluate import evaluate
from .loop import train
from .protocol import (
                       BACKBONES,
                       Backbone,
                       BackboneSpec,
                       Preset,
                       available_backbones,
                       backbone_spec,
                       make_backbone,
                       register_backbone,
)

__all__ = ["BACKBONES", "Backbone", "BackboneSpec", "Preset", "TrainingConfig", "apply_overrides",
           "available_backbones", "backbone_spec", "evaluate", "load_config", "make_backbone", "make_config",
           "register_backbone", "train"]
