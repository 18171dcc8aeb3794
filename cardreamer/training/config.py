"""Configuration of a training run: typed settings, the backbone's own config, presets, overrides.

A :class:`TrainingConfig` holds the training settings (``seed``, ``logdir``, ``env.*``, ``run.*``,
``replay.*``), the backbone's name and size preset, and ``model``: the backbone's own config (a
pydantic model the backbone registered; ``None`` for a backbone without one, whose run has no
``model.*`` keys). :func:`make_config` builds one from the defaults, then the backbone's size
preset, then user overrides such as ``["run.steps=1000", "model.batch_size=8"]`` or a nested dict.
A preset may need training settings (DreamerV3's ``cpu``: 48x48 images); those are applied unless
the user overrides them and are listed in ``preset_settings``, which ``train`` prints and
config.yaml records. Unknown keys are errors that name the nearest valid keys; values are parsed as
YAML scalars and checked against the default's type, then by the typed models.

config.yaml holds :meth:`TrainingConfig.to_dict` with ``config_version: 2``, including the
CarDreamer task's resolved config (``env.task_config``) and its map's hash; a file without
``config_version`` (written before backbones owned their configs) still loads: a backbone without a
config ignores its ``model`` keys, one without presets its ``size``.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cardreamer.config_loading import ConfigError

from .protocol import BackboneSpec, Preset, backbone_spec

CONFIG_VERSION = 2
DEFAULT_BACKBONE = "dreamerv3"
CHECKPOINT_PARTS = ("agent", "replay")
LOGGERS = ("tensorboard", "wandb")  # scalar outputs besides metrics.jsonl and scores.jsonl
"""What ``run.from_checkpoint`` can take from another run: the backbone's saved state (weights and
optimizer, one file) and the replay."""


WHOLE_VALUES = ("preset_settings", "task_config")
"""Mapping-valued keys that are one value (set and recorded whole), not a level of dotted keys."""


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class EnvSettings(_Settings):
    task: str = ""  # cardreamer task name or a gymnasium id such as CartPole-v1
    overrides: list[str] = []  # dotted overrides handed to cardreamer.env.make_env
    num_envs: int = Field(1, ge=1)
    parallel: bool = True  # AsyncVectorEnv (subprocesses) when num_envs > 1
    image_size: list[int] = [0, 0]  # resize image observations to (H, W); [0, 0] keeps them
    task_config: dict[str, Any] = {}  # the CarDreamer task's resolved config (env:, task:), recorded by train
    map_sha256: str = ""  # SHA-256 of the OpenDRIVE file of that task's map when the run started

    @field_validator("image_size")
    @classmethod
    def _size(cls, size: list[int]) -> list[int]:
        if len(size) != 2 or min(size) < 0 or (0 in size and any(size)):
            raise ValueError(f"expected [height, width] of positive ints, or [0, 0] to keep the env's size; got {size}")
        return size


class RunSettings(_Settings):
    steps: int = Field(100_000, ge=1)  # env steps, summed over envs
    train_ratio: float = Field(32.0, ge=0)  # replayed steps per env step
    train_fill: int = Field(1024, ge=0)  # env steps collected before training starts
    log_every: float = Field(30.0, ge=0)  # seconds between metrics.jsonl rows; 0: every step
    save_every: float = Field(300.0, gt=0)  # seconds between checkpoints
    save_every_steps: int = Field(10_000, ge=0)  # env steps between checkpoints (also); 0 disables
    keep_checkpoints: int = Field(3, ge=1)
    eval_every: int = Field(10_000, ge=0)  # env steps between evaluations; 0 disables
    eval_episodes: int = Field(4, ge=1)
    report_every: float = Field(300.0, ge=0)  # seconds between open-loop prediction videos; 0 disables
    video_every: int = Field(1, ge=1)  # record env 0's first episode of the 1st, (1+n)-th, (1+2n)-th... evaluation as mp4
    train_video_every: int = Field(0, ge=0)  # record env 0's every n-th training episode as mp4; 0: none
    video_fps: int = Field(10, ge=1)
    max_video_frames: int = Field(1000, ge=1)
    serve: bool = False  # publish metrics and frames to the visualizer
    serve_url: str = "http://127.0.0.1:9000"  # the visualizer (cardreamer serve); may carry ?token=
    serve_token: str = ""  # or in serve_url
    serve_name: str = ""  # the run's name on the visualizer; "": its folder's name (train: its path in the server's logdir)
    progress: bool = True
    loggers: list[str] = []  # also write the logged scalars to: tensorboard (event files), wandb
    pretrain_data: str = ""  # a dataset from `cardreamer collect`: fills the replay of a fresh run
    pretrain_updates: int = Field(1000, ge=0)  # updates on that data before collection starts
    from_checkpoint: str = ""  # another run dir (its newest checkpoint) or checkpoint folder a fresh run starts from
    from_checkpoint_parts: str = "agent"  # what it takes: agent (the backbone's state), replay; comma-separated

    @field_validator("loggers")
    @classmethod
    def _loggers(cls, names: list[str]) -> list[str]:
        wrong = [n for n in names if n not in LOGGERS]
        if wrong:
            raise ValueError(f"unknown logger {wrong[0]!r}; expected a list of {', '.join(LOGGERS)} "
                             "(metrics.jsonl is always written)")
        return list(dict.fromkeys(names))

    @field_validator("from_checkpoint_parts")
    @classmethod
    def _parts(cls, parts: str) -> str:
        names = [p.strip() for p in parts.split(",") if p.strip()]
        wrong = [p for p in names if p not in CHECKPOINT_PARTS]
        if wrong or "agent" not in names:
            raise ValueError(f"expected a comma-separated list of {', '.join(CHECKPOINT_PARTS)} that holds agent; got {parts!r}")
        return ",".join(dict.fromkeys(names))


class ReplaySettings(_Settings):
    capacity: int = Field(5_000_000, ge=1)  # steps (a 128x128 RGB step is 49 kB); oldest chunks dropped beyond it;
    # train refuses one that would not fit in memory (replay.check_memory)
    chunk_size: int = Field(1024, ge=1)
    online: bool = True  # every fresh sequence is trained on once


class TrainingConfig(_Settings):
    """A run's whole config; ``model`` is the backbone's own config model (or None)."""

    config_version: int = CONFIG_VERSION
    seed: int = 0
    logdir: str = ""
    backbone: str = DEFAULT_BACKBONE
    size: str | None = None  # the backbone's size preset
    plugins: list[str] = []  # plugin modules the run imported (cardreamer.plugins), re-imported by eval
    preset_settings: dict[str, Any] = {}  # training settings the size preset set (dotted key -> value)
    env: EnvSettings = EnvSettings()
    run: RunSettings = RunSettings()
    replay: ReplaySettings = ReplaySettings()
    model: Any = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for config.yaml (no ``model`` key for a backbone without a config)."""
        data = self.model_dump(exclude={"model"})
        if self.model is not None:
            data["model"] = self.model.model_dump()
        return data


def _parse_value(key: str, text: Any, default: Any) -> Any:
    value = yaml.safe_load(text) if isinstance(text, str) and not isinstance(default, str) else text
    if isinstance(default, float) and isinstance(value, str):  # YAML reads 1e-3 as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TypeError(f"config key {key!r}: expected true/false, got {text!r}")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if default is not None and not isinstance(value, type(default)):
        raise TypeError(
            f"config key {key!r}: expected {type(default).__name__} like {default!r}, got {text!r}")
    if isinstance(default, list) and default and len(value) != len(default):
        raise ValueError(f"config key {key!r}: expected {len(default)} items like {default!r}, got {text!r}")
    return value


def flat_keys(tree: Mapping[str, Any]) -> list[str]:
    """Dotted names of all leaf keys, e.g. ``model.lr``."""
    return list(_flatten(tree))


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and key not in WHOLE_VALUES:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    valid = _flatten(tree)
    if path not in valid:
        near = difflib.get_close_matches(path, list(valid), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        if path.startswith("model.") and "model" not in tree:
            hint = f"; backbone {tree['backbone']!r} has no model config"
        raise KeyError(f"unknown config key {path!r}{hint}")
    *parents, leaf = path.split(".")
    node = tree
    for part in parents:
        node = node[part]
    node[leaf] = _parse_value(path, value, valid[path])


Overrides = Mapping[str, Any] | Iterable[str] | None


def _items(overrides: Overrides) -> list[tuple[str, Any]]:
    """(dotted key, value) pairs of a nested dict or of ``key=value`` strings."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return list(_flatten(overrides).items())
    items = []
    for text in overrides:
        key, sep, value = str(text).lstrip("-").partition("=")
        if not sep:
            raise ValueError(f"override {text!r} must look like key=value, e.g. run.steps=1000")
        items.append((key, value))
    return items


def split_overrides(items: Iterable[str], known: set[str]) -> tuple[list[str], list[str]]:
    """Dotted ``[--]key=value`` overrides as ``key=value`` strings, split into the run's config keys
    (``known``, e.g. ``model.lr=1e-4``) and the CarDreamer env's (other ``env.`` and ``task.`` keys,
    such as ``env.world.backend=carla``)."""
    training, env = [], []
    for item in items:
        text = item.removeprefix("--")
        if "=" not in text:
            raise ValueError(f"unrecognised argument {item!r}: overrides look like --model.lr=1e-4")
        key = text.split("=", 1)[0]
        (env if key not in known and key.startswith(("env.", "task.")) else training).append(text)
    return training, env


def defaults(spec: BackboneSpec) -> dict[str, Any]:
    """The default config tree of a backbone: training defaults plus its config's defaults."""
    tree = TrainingConfig(backbone=spec.name).to_dict()
    if spec.config is not None:
        tree["model"] = spec.config().model_dump()
    return tree


def config_keys(backbone: str) -> set[str]:
    """The dotted keys of a run of ``backbone`` (training settings and the backbone's config)."""
    return set(flat_keys(defaults(backbone_spec(backbone))))


def _validate(tree: dict[str, Any]) -> TrainingConfig:
    """The typed config of a config tree; a bad value raises ValueError naming its key."""
    spec = backbone_spec(str(tree["backbone"]))
    try:
        model = spec.config.model_validate(tree.get("model", {})) if spec.config is not None else None
    except ValidationError as error:
        raise _one_line(error, "model.") from None
    try:
        return TrainingConfig.model_validate({**{k: v for k, v in tree.items() if k != "model"}, "model": model})
    except ValidationError as error:
        raise _one_line(error, "") from None


def _one_line(error: ValidationError, prefix: str) -> ValueError:
    problem = error.errors()[0]
    key = prefix + ".".join(str(part) for part in problem["loc"])
    return ValueError(f"config key {key!r}: {problem['msg'].removeprefix('Value error, ')} (got {problem['input']!r})")


def _preset(spec: BackboneSpec, size: str | None) -> tuple[str | None, Preset]:
    size = size or spec.default_preset
    if size is None:
        return None, Preset()
    if not spec.presets:
        raise KeyError(f"unknown size {size!r}: backbone {spec.name!r} has no size presets")
    if size not in spec.presets:
        raise KeyError(f"unknown size {size!r} of backbone {spec.name!r}; valid sizes: {', '.join(spec.presets)}")
    return size, spec.presets[size]


def make_config(size: str | None = None, overrides: Overrides = None) -> TrainingConfig:
    """Defaults, then the backbone's size preset, then overrides. The backbone is the override's
    ``backbone`` (default dreamerv3); ``size`` defaults to the override's ``size``, else the
    backbone's default preset."""
    items = _items(overrides)
    named = dict(items)
    spec = backbone_spec(str(named.get("backbone", DEFAULT_BACKBONE)))
    size, preset = _preset(spec, size or named.get("size"))
    tree = defaults(spec)
    tree["size"] = size
    for key, value in _flatten(preset.model).items():
        _set(tree, f"model.{key}", value)
    for key, value in preset.settings.items():
        _set(tree, key, value)
    tree["preset_settings"] = {k: copy.deepcopy(v) for k, v in preset.settings.items() if k not in named}
    for key, value in items:
        if key not in ("backbone", "size"):
            _set(tree, key, value)
    return _validate(tree)


def apply_overrides(config: TrainingConfig, overrides: Overrides) -> TrainingConfig:
    """Return a copy of ``config`` with overrides applied (a nested dict or ``key=value`` strings)."""
    tree = config.to_dict()
    for key, value in _items(overrides):
        _set(tree, key, value)
    return _validate(tree)


def config_from_file(data: Mapping[str, Any], where: str) -> TrainingConfig:
    """The config of a config.yaml's data; a file without ``config_version`` has the layout of
    before backbones owned their configs (every backbone had DreamerV3's ``size`` and ``model``)."""
    data = dict(data)
    version = data.pop("config_version", None)
    if version is not None and version != CONFIG_VERSION:
        raise ConfigError(f"{where}: config_version {version!r} is not one this version reads ({CONFIG_VERSION})")
    settings = data.pop("preset_settings", {})
    try:
        spec = backbone_spec(str(data.get("backbone", DEFAULT_BACKBONE)))
        if version is None:
            if spec.config is None:
                data.pop("model", None)
            if not spec.presets:
                data.pop("size", None)
        config = make_config(data.get("size"), data)
        return apply_overrides(config, {"preset_settings": settings}) if settings else config
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error.args[0] if error.args else error}") from None


def load_config(path: str) -> TrainingConfig:
    """Read a config.yaml written by the training loop, importing the plugin modules it records
    (module names only: a ``.py`` path runs only if this process imported it, e.g. ``--import``)."""
    from cardreamer.plugins import import_module, imported_modules

    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    plugins = data.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError(f"{path}: plugins must be a list of module names or .py paths, got {plugins!r}")
    for module in plugins:
        if not module.endswith(".py"):
            import_module(module)
    try:
        config = config_from_file(data, path)
        if config.env.task_config:  # its parts and terms may come from the plugins
            from cardreamer.config import recorded_config

            recorded_config(config.env.task_config, f"{path} env.task_config")
        return config
    except ConfigError as error:
        skipped = [p for p in plugins if p.endswith(".py") and p not in imported_modules()]
        if not skipped:
            raise
        raise ConfigError(f"{error}; the run imported the plugin file{'s' * (len(skipped) > 1)} "
                          f"{', '.join(skipped)}, which runs only when named again: "
                          f"{' '.join(f'--import {p}' for p in skipped)}") from None
