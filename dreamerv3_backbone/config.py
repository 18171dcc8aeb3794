"""DreamerV3's config (a run's ``model.*`` keys) and its size presets (``--size``).

The presets ``1m`` ... ``200m`` follow the reference's model sizes; ``tiny`` is for tests and
``cpu`` for a laptop. A preset that needs training settings (``cpu``: 48x48 images) states them in
its ``settings``; ``train`` applies them unless overridden, prints them and records them.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from cardreamer.training.protocol import Preset

NO_CLASS = 255
"""The replay's stored stoch index of 'no latent yet' (uint8): replay context needs classes <= it."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LossScales(_Model):
    rec: float = Field(1.0, ge=0)
    rew: float = Field(1.0, ge=0)
    con: float = Field(1.0, ge=0)
    dyn: float = Field(1.0, ge=0)
    rep: float = Field(0.1, ge=0)
    policy: float = Field(1.0, ge=0)
    value: float = Field(1.0, ge=0)
    repval: float = Field(0.3, ge=0)


class DreamerV3Config(_Model):
    batch_size: int = Field(16, ge=1)
    batch_length: int = Field(64, ge=1)
    compute_dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # auto: bfloat16 on GPU/TPU, float32 on CPU
    deter: int = Field(2048, ge=1)
    hidden: int = Field(256, ge=1)
    stoch: int = Field(32, ge=1)
    classes: int = Field(16, ge=1)
    blocks: int = Field(8, ge=1)  # block-GRU blocks: must divide deter
    units: int = Field(256, ge=1)
    depth: int = Field(16, ge=1)
    mults: list[int] = [2, 3, 4, 4]
    kernel: int = Field(4, ge=1)
    # Strided convs halve the resolution per stage. The reference convolves at full resolution
    # with kernel 5 and then max-pools (strided=false, kernel=5): same shapes, more CPU time.
    strided: bool = True
    dec_kernel: int = Field(3, ge=1)  # decoder stages: sub-pixel convolutions with this kernel at the input resolution
    enc_layers: int = Field(3, ge=0)
    dec_layers: int = Field(3, ge=0)
    head_layers: int = Field(1, ge=0)  # reward and continue heads
    ac_layers: int = Field(3, ge=0)  # actor and critic
    unimix: float = Field(0.01, ge=0, lt=1)
    free_nats: float = Field(1.0, ge=0)
    bins: int = Field(255, ge=3)  # odd, so that zero is a bin
    horizon: int = Field(333, ge=1)  # discount 1 - 1/horizon
    imag_horizon: int = Field(15, ge=1)
    imag_last: int = Field(0, ge=0)  # imagine from the last n states of each replayed sequence; 0: from all
    # Replayed sequences start from the stored posterior latent of the step before them, as the
    # reference's replay_context: 1; 0 starts them from the zero state (ours before).
    replay_context: int = Field(1, ge=0)
    lam: float = Field(0.95, ge=0, le=1)
    actent: float = Field(3e-4, ge=0)
    slow_rate: float = Field(0.02, gt=0, le=1)
    slowreg: float = Field(1.0, ge=0)
    retnorm_rate: float = Field(0.01, gt=0, le=1)
    retnorm_limit: float = Field(1.0, gt=0)
    retnorm_debias: bool = False  # the reference keeps the EMA's zero start
    slow_targets: bool = False  # true: λ-returns and baseline from the slow critic (ours before 2026-12)
    repval_grad: bool = True  # the replay value loss trains the world model's features too
    # raw: symexp-spaced bins, raw-space interpolation (reference); symlog: the 2023 form
    twohot_space: Literal["raw", "symlog"] = "raw"
    policy_outscale: float = Field(0.01, gt=0)  # initial scale of the policy's output layer: a near-uniform first policy
    minstd: float = Field(0.1, gt=0)
    maxstd: float = Field(1.0, gt=0)
    lr: float = Field(4e-5, gt=0)
    warmup: int = Field(1000, ge=0)
    agc: float = Field(0.3, gt=0)
    eps: float = Field(1e-20, gt=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    loss_scales: LossScales = LossScales()
    cnn_keys: str = ".*"  # regex over image keys (HxWxC uint8) for the encoder
    mlp_keys: str = ".*"  # regex over vector keys for the encoder
    dec_cnn_keys: str = ""  # decoder keys; empty means the same as the encoder's
    dec_mlp_keys: str = ""
    report_context: int = Field(5, ge=1)  # observed frames before open-loop imagination in report()
    # 'eval' mode actions: 'sample' from the policy, as the reference does, or its 'greedy' mode.
    eval_policy: Literal["sample", "greedy"] = "sample"

    @field_validator("mults")
    @classmethod
    def _mults(cls, mults: list[int]) -> list[int]:
        if not mults or min(mults) < 1:
            raise ValueError("must be a non-empty list of positive depth multipliers, like [2, 3, 4, 4]")
        return mults

    @field_validator("blocks")
    @classmethod
    def _blocks(cls, blocks: int, info: ValidationInfo) -> int:
        deter = info.data.get("deter")
        if deter is not None and deter % blocks:
            raise ValueError(f"must divide model.deter={deter}")
        return blocks

    @field_validator("bins")
    @classmethod
    def _bins(cls, bins: int) -> int:
        if bins % 2 != 1:
            raise ValueError("must be odd so that zero is a bin")
        return bins

    @field_validator("imag_last")
    @classmethod
    def _imag_last(cls, last: int) -> int:
        if last == 1:
            raise ValueError("must be 0 (all states) or at least 2")
        return last

    @field_validator("replay_context")
    @classmethod
    def _replay_context(cls, context: int, info: ValidationInfo) -> int:
        classes = info.data.get("classes")
        if context and classes is not None and classes > NO_CLASS:
            raise ValueError(f"replay context stores class indices as uint8, which needs model.classes <= "
                             f"{NO_CLASS} (model.classes={classes}); set model.replay_context=0")
        return context

    @field_validator("maxstd")
    @classmethod
    def _maxstd(cls, maxstd: float, info: ValidationInfo) -> float:
        minstd = info.data.get("minstd")
        if minstd is not None and maxstd < minstd:
            raise ValueError(f"must be at least model.minstd={minstd}")
        return maxstd

    @field_validator("cnn_keys", "mlp_keys", "dec_cnn_keys", "dec_mlp_keys")
    @classmethod
    def _regex(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"not a regular expression: {error}") from None
        return pattern


# Model sizes of the reference (deter, hidden, classes, depth, units); see docs/backbones.md.
_REFERENCE_SIZES = {
    "1m": (512, 64, 4, 4, 64),
    "12m": (2048, 256, 16, 16, 256),
    "25m": (3072, 384, 24, 24, 384),
    "50m": (4096, 512, 32, 32, 512),
    "100m": (6144, 768, 48, 48, 768),
    "200m": (8192, 1024, 64, 64, 1024),
}
PRESETS: dict[str, Preset] = {
    name: Preset(model={"deter": d, "hidden": h, "classes": c, "depth": k, "units": u},
                 description=f"the reference's {name} model")
    for name, (d, h, c, k, u) in _REFERENCE_SIZES.items()
}
PRESETS["tiny"] = Preset(
    model={"deter": 64, "hidden": 32, "stoch": 8, "classes": 4, "blocks": 2, "units": 32, "depth": 4,
           "enc_layers": 1, "dec_layers": 1, "ac_layers": 2, "batch_size": 4, "batch_length": 16, "kernel": 3,
           "warmup": 0, "lr": 3e-4},
    settings={"replay.chunk_size": 256, "replay.capacity": 100_000, "run.train_fill": 256, "run.eval_episodes": 2},
    description="a few thousand parameters, for tests")
# A laptop preset: 48x48 images, units 128 and actor-critic imagination from the last 8 states of
# each replayed sequence train 1,300 replayed steps/s on 2 cores, which is 30+ env steps/s end to
# end at train ratio 32 (docs/benchmarks.md).
PRESETS["cpu"] = Preset(
    model={"deter": 512, "hidden": 128, "classes": 16, "blocks": 8, "units": 128, "depth": 8, "kernel": 3,
           "enc_layers": 2, "dec_layers": 2, "ac_layers": 2, "batch_size": 8, "batch_length": 32, "imag_last": 8,
           # A laptop makes about 12k updates in 100k env steps at train ratio 32, far fewer than the
           # reference's runs: at 2e-4 (reference 4e-5) the world model learns 2-3x faster per update.
           # The entropy scale stays the reference's 3e-4: at 3e-3 the actor kept near-uniform
           # actions and settled on standing still (docs/learning.md).
           "lr": 2e-4},
    # 48x48 images keep the encoder and decoder fast enough on CPU; about 3.5 GB of 48x48 RGB steps
    # and 0.5 GB of their latents fill the replay.
    settings={"env.image_size": [48, 48], "replay.capacity": 500_000},
    description="a laptop: 48x48 images, 30+ env steps/s on 2 cores")
