"""Configuration: defaults, model sizes and dotted overrides.

A config is a nested mapping with attribute access (``config.model.deter``). It is built from
``DEFAULTS``, then a size preset from ``SIZES``, then user overrides such as
``["run.steps=1000", "model.batch_size=8"]`` or a nested dict. Unknown keys are errors that name
the nearest valid keys; values are parsed as YAML scalars and checked against the default's type.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "logdir": "",
    "backbone": "dreamerv3",
    "size": "12m",
    "env": {
        "task": "",  # cardreamer task name or a gymnasium id such as CartPole-v1
        "overrides": [],  # dotted overrides handed to cardreamer.env.make_env
        "num_envs": 1,
        "parallel": True,  # AsyncVectorEnv (subprocesses) when num_envs > 1
        "image_size": [0, 0],  # resize image observations to (H, W); [0, 0] keeps them
    },
    "run": {
        "steps": 100_000,  # env steps, summed over envs
        "train_ratio": 32.0,  # replayed steps per env step
        "train_fill": 1024,  # env steps collected before training starts
        "log_every": 30.0,  # seconds between metrics.jsonl rows
        "save_every": 300.0,  # seconds between checkpoints
        "save_every_steps": 10_000,  # env steps between checkpoints (also); 0 disables
        "keep_checkpoints": 3,
        "eval_every": 10_000,  # env steps between evaluations; 0 disables
        "eval_episodes": 4,
        "report_every": 300.0,  # seconds between open-loop prediction videos; 0 disables
        "video_every": 1,  # record every n-th evaluation as mp4
        "video_fps": 10,
        "max_video_frames": 1000,
        "serve": False,  # publish metrics and frames to the visualizer
        "serve_url": "http://127.0.0.1:9000",  # the visualizer (cardreamer serve); may carry ?token=
        "serve_token": "",  # or in serve_url
        "progress": True,
        "pretrain_data": "",  # a dataset from `cardreamer collect`: fills the replay of a fresh run
        "pretrain_updates": 1000,  # updates on that data before collection starts
    },
    "replay": {
        "capacity": 5_000_000,  # steps (a 128x128 RGB step is 49 kB); oldest chunks are dropped beyond it
        "chunk_size": 1024,
        "online": True,  # every fresh sequence is trained on once
    },
    "model": {
        "batch_size": 16,
        "batch_length": 64,
        "compute_dtype": "auto",  # auto: bfloat16 on GPU/TPU, float32 on CPU
        "deter": 2048,
        "hidden": 256,
        "stoch": 32,
        "classes": 16,
        "blocks": 8,
        "units": 256,
        "depth": 16,
        "mults": [2, 3, 4, 4],
        "kernel": 4,
        # Strided convs halve the resolution per stage. The reference convolves at full resolution
        # with kernel 5 and then max-pools (strided=false, kernel=5): same shapes, more CPU time.
        "strided": True,
        "dec_kernel": 3,  # decoder stages: sub-pixel convolutions with this kernel at the input resolution
        "enc_layers": 3,
        "dec_layers": 3,
        "head_layers": 1,  # reward and continue heads
        "ac_layers": 3,  # actor and critic
        "unimix": 0.01,
        "free_nats": 1.0,
        "bins": 255,
        "horizon": 333,  # discount 1 - 1/horizon
        "imag_horizon": 15,
        "imag_last": 0,  # imagine from the last n states of each replayed sequence; 0: from all
        # Replayed sequences start from the stored posterior latent of the step before them, as the
        # reference's replay_context: 1; 0 starts them from the zero state (ours before).
        "replay_context": 1,
        "lam": 0.95,
        "actent": 3e-4,
        "slow_rate": 0.02,
        "slowreg": 1.0,
        "retnorm_rate": 0.01,
        "retnorm_limit": 1.0,
        "retnorm_debias": False,  # the reference keeps the EMA's zero start
        "slow_targets": False,  # true: λ-returns and baseline from the slow critic (ours before 2026-12)
        "repval_grad": True,  # the replay value loss trains the world model's features too
        "twohot_space": "raw",  # raw: symexp-spaced bins, raw-space interpolation (reference); symlog: the 2023 form
        "policy_outscale": 0.01,  # initial scale of the policy's output layer: a near-uniform first policy
        "minstd": 0.1,
        "maxstd": 1.0,
        "lr": 4e-5,
        "warmup": 1000,
        "agc": 0.3,
        "eps": 1e-20,
        "beta1": 0.9,
        "beta2": 0.999,
        "loss_scales": {
            "rec": 1.0, "rew": 1.0, "con": 1.0, "dyn": 1.0, "rep": 0.1,
            "policy": 1.0, "value": 1.0, "repval": 0.3,
        },
        "cnn_keys": ".*",  # regex over image keys (HxWxC uint8) for the encoder
        "mlp_keys": ".*",  # regex over vector keys for the encoder
        "dec_cnn_keys": "",  # decoder keys; empty means the same as the encoder's
        "dec_mlp_keys": "",
        "report_context": 5,  # observed frames before open-loop imagination in report()
        # 'eval' mode actions: 'sample' from the policy, as the reference does, or its 'greedy' mode.
        "eval_policy": "sample",
    },
}

# Model sizes of the reference (deter, hidden, classes, depth, units); see docs/backbones.md.
_REFERENCE_SIZES = {
    "1m": (512, 64, 4, 4, 64),
    "12m": (2048, 256, 16, 16, 256),
    "25m": (3072, 384, 24, 24, 384),
    "50m": (4096, 512, 32, 32, 512),
    "100m": (6144, 768, 48, 48, 768),
    "200m": (8192, 1024, 64, 64, 1024),
}
SIZES: dict[str, dict[str, Any]] = {
    name: {"model": {"deter": d, "hidden": h, "classes": c, "depth": k, "units": u}}
    for name, (d, h, c, k, u) in _REFERENCE_SIZES.items()
}
SIZES["tiny"] = {
    "model": {
        "deter": 64, "hidden": 32, "stoch": 8, "classes": 4, "blocks": 2, "units": 32, "depth": 4,
        "enc_layers": 1, "dec_layers": 1, "ac_layers": 2, "batch_size": 4, "batch_length": 16, "kernel": 3,
        "warmup": 0, "lr": 3e-4,
    },
    "replay": {"chunk_size": 256, "capacity": 100_000},
    "run": {"train_fill": 256, "eval_episodes": 2},
}
# A laptop preset: 48x48 images, units 128 and actor-critic imagination from the last 8 states of
# each replayed sequence train 1,300 replayed steps/s on 2 cores, which is 30+ env steps/s end to
# end at train ratio 32 (docs/benchmarks.md).
SIZES["cpu"] = {
    "model": {
        "deter": 512, "hidden": 128, "classes": 16, "blocks": 8, "units": 128, "depth": 8, "kernel": 3,
        "enc_layers": 2, "dec_layers": 2, "ac_layers": 2, "batch_size": 8, "batch_length": 32, "imag_last": 8,
        # A laptop makes about 12k updates in 100k env steps at train ratio 32, far fewer than the
        # reference's runs: at 2e-4 (reference 4e-5) the world model learns 2-3x faster per update,
        # and an entropy scale of 3e-3 (reference 3e-4) keeps the actor exploring long enough to
        # learn to brake on four_lane (docs/benchmarks.md, learning runs).
        "lr": 2e-4, "actent": 3e-3,
    },
    "env": {"image_size": [48, 48]},
    "replay": {"capacity": 500_000},  # about 3.5 GB of 48x48 RGB steps and 0.5 GB of their latents
}


class Config(dict):
    """A nested dict with attribute access; nested dicts are Configs too."""

    def __init__(self, data: Mapping[str, Any] = ()):  # type: ignore[assignment]
        super().__init__({k: Config(v) if isinstance(v, Mapping) else v for k, v in dict(data).items()})

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}; valid: {sorted(self)}") from None

    def to_dict(self) -> dict[str, Any]:
        return {k: v.to_dict() if isinstance(v, Config) else copy.deepcopy(v) for k, v in self.items()}


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
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    valid = _flatten(tree)
    if path not in valid:
        near = difflib.get_close_matches(path, list(valid), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise KeyError(f"unknown config key {path!r}{hint}")
    *parents, leaf = path.split(".")
    node = tree
    for part in parents:
        node = node[part]
    node[leaf] = _parse_value(path, value, valid[path])


def apply_overrides(config: Mapping[str, Any], overrides: Mapping[str, Any] | Iterable[str] | None) -> Config:
    """Return a copy of ``config`` with overrides applied (a nested dict or ``key=value`` strings)."""
    tree = Config(config).to_dict()
    if overrides is None:
        return Config(tree)
    if isinstance(overrides, Mapping):
        items = list(_flatten(overrides).items())
    else:
        items = []
        for text in overrides:
            key, sep, value = str(text).lstrip("-").partition("=")
            if not sep:
                raise ValueError(f"override {text!r} must look like key=value, e.g. run.steps=1000")
            items.append((key, value))
    for key, value in items:
        _set(tree, key, value)
    return Config(tree)


def make_config(size: str | None = None, overrides: Mapping[str, Any] | Iterable[str] | None = None) -> Config:
    """Defaults, then the size preset, then overrides. ``size`` defaults to ``DEFAULTS['size']``."""
    if isinstance(overrides, Mapping) and size is None:
        size = overrides.get("size")
    size = size or DEFAULTS["size"]
    if size not in SIZES:
        raise KeyError(f"unknown size {size!r}; valid sizes: {', '.join(SIZES)}")
    config = apply_overrides(DEFAULTS, SIZES[size])
    config = apply_overrides(config, {"size": size})
    return apply_overrides(config, overrides)


def load_config(path: str) -> Config:
    """Read a config.yaml written by the training loop, checking it against the defaults."""
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, Mapping):
        raise TypeError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return make_config(data.get("size"), data)
