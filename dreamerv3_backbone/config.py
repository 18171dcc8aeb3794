"""DreamerV3's config (a run's ``model.*`` keys) and its size presets (``--size``).

The presets ``1m`` ... ``200m`` follow the reference's model sizes; ``tiny`` is for tests and
``cpu`` for a laptop. A preset that needs training settings (``cpu``: 48x48 images) states them in
its ``settings``; ``train`` applies them unless overridden, prints them and records them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from cardreamer.training.protocol import Preset


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LossScales(_Model):
    rec: float = 1.0
    rew: float = 1.0
    con: float = 1.0
    dyn: float = 1.0
    rep: float = 0.1
    policy: float = 1.0
    value: float = 1.0
    repval: float = 0.3


class DreamerV3Config(_Model):
    batch_size: int = 16
    batch_length: int = 64
    compute_dtype: str = "auto"  # auto: bfloat16 on GPU/TPU, float32 on CPU
    deter: int = 2048
    hidden: int = 256
    stoch: int = 32
    classes: int = 16
    blocks: int = 8
    units: int = 256
    depth: int = 16
    mults: list[int] = [2, 3, 4, 4]
    kernel: int = 4
    # Strided convs halve the resolution per stage. The reference convolves at full resolution
    # with kernel 5 and then max-pools (strided=false, kernel=5): same shapes, more CPU time.
    strided: bool = True
    dec_kernel: int = 3  # decoder stages: sub-pixel convolutions with this kernel at the input resolution
    enc_layers: int = 3
    dec_layers: int = 3
    head_layers: int = 1  # reward and continue heads
    ac_layers: int = 3  # actor and critic
    unimix: float = 0.01
    free_nats: float = 1.0
    bins: int = 255
    horizon: int = 333  # discount 1 - 1/horizon
    imag_horizon: int = 15
    imag_last: int = 0  # imagine from the last n states of each replayed sequence; 0: from all
    # Replayed sequences start from the stored posterior latent of the step before them, as the
    # reference's replay_context: 1; 0 starts them from the zero state (ours before).
    replay_context: int = 1
    lam: float = 0.95
    actent: float = 3e-4
    slow_rate: float = 0.02
    slowreg: float = 1.0
    retnorm_rate: float = 0.01
    retnorm_limit: float = 1.0
    retnorm_debias: bool = False  # the reference keeps the EMA's zero start
    slow_targets: bool = False  # true: λ-returns and baseline from the slow critic (ours before 2026-12)
    repval_grad: bool = True  # the replay value loss trains the world model's features too
    twohot_space: str = "raw"  # raw: symexp-spaced bins, raw-space interpolation (reference); symlog: the 2023 form
    policy_outscale: float = 0.01  # initial scale of the policy's output layer: a near-uniform first policy
    minstd: float = 0.1
    maxstd: float = 1.0
    lr: float = 4e-5
    warmup: int = 1000
    agc: float = 0.3
    eps: float = 1e-20
    beta1: float = 0.9
    beta2: float = 0.999
    loss_scales: LossScales = LossScales()
    cnn_keys: str = ".*"  # regex over image keys (HxWxC uint8) for the encoder
    mlp_keys: str = ".*"  # regex over vector keys for the encoder
    dec_cnn_keys: str = ""  # decoder keys; empty means the same as the encoder's
    dec_mlp_keys: str = ""
    report_context: int = 5  # observed frames before open-loop imagination in report()
    # 'eval' mode actions: 'sample' from the policy, as the reference does, or its 'greedy' mode.
    eval_policy: str = "sample"


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
