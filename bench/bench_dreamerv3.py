"""Benchmark DreamerV3 train steps on this machine: compile time, seconds per update and replayed
steps per second, per model size, on 64x64x3 images with 15 discrete actions.

    python bench/bench_dreamerv3.py --sizes tiny cpu 1m 12m --updates 5
    python bench/bench_dreamerv3.py --sizes cpu --native        # the preset's own batch and image size
    python bench/bench_dreamerv3.py --sizes 12m --set model.strided=true
    python bench/bench_dreamerv3.py --sizes 12m --parts             # where an update's time goes
    python bench/bench_dreamerv3.py --sizes 12m --flops --updates 0 # XLA's FLOP count of one update

It runs under the allocator that `cardreamer train` picks (cardreamer/training/allocator.py;
CARDREAMER_ALLOCATOR=system for glibc's). Each size prints one JSON line; by default every size
trains on batches of 16 x 64. Besides wall
seconds per update it reports CPU seconds (all threads), which other load on the machine inflates
less than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import gymnasium as gym
import jax
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dreamerv3_backbone.agent import DreamerV3, Model, _train, count_params
from cardreamer.training.allocator import loaded_allocator, reexec_with_fast_allocator
from cardreamer.training.config import make_config


def random_batch(rng: np.random.Generator, b: int, t: int, size: int) -> dict[str, np.ndarray]:
    batch = {
        "image": rng.integers(0, 256, (b, t, size, size, 3), dtype=np.uint8),
        "action": rng.integers(0, 15, (b, t)),
        "reward": rng.normal(size=(b, t)).astype(np.float32),
        "is_first": np.zeros((b, t), bool),
        "is_last": np.zeros((b, t), bool),
        "is_terminal": np.zeros((b, t), bool),
    }
    batch["is_first"][:, 0] = True
    return batch


def _seconds(fn, *args, repeats: int = 3) -> float:
    """Median wall seconds of a jitted ``fn(*args)`` after one compiling call."""
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def parts(model: Model, state: dict, batch: dict) -> dict[str, float]:
    """Seconds of the gradient of each part of the loss: encoder and decoder alone, the world-model
    loss, the whole loss; the whole loss minus the world model is imagination plus actor-critic."""
    params, graphdef, key = state["params"], model.graphdef, jax.random.key(0)
    feat = np.zeros((*batch["reward"].shape, nnx.merge(graphdef, params).rssm.feat_size), np.float32)

    def encoder(p):
        return nnx.merge(graphdef, p).encoder(batch).sum()

    def decoder(p):
        return sum(x.sum() for x in nnx.merge(graphdef, p).decoder(feat).values())

    def world_model(p):
        losses = model._world_model_loss(nnx.merge(graphdef, p), batch, key)[0]
        return sum(v.mean() for v in losses.values())

    def whole(p):
        return model._loss(p, state["slow_critic"], state["retnorm"], batch, key)[0]

    out = {name: _seconds(jax.grad(fn), params) for name, fn in
           [("encoder", encoder), ("decoder", decoder), ("world_model", world_model), ("whole_loss", whole)]}
    out["imagination_actor_critic"] = out["whole_loss"] - out["world_model"]
    return {f"parts_s/{k}": round(v, 3) for k, v in out.items()}


def update_flops(agent: DreamerV3, batch: dict) -> float:
    """FLOPs of one compiled update as XLA's cost analysis counts them (the reference's method; a
    scanned loop's body is counted once, so the RSSM's per-step work is undercounted alike)."""
    compiled = _train.lower(agent.model, agent.state, agent._prepare(batch, latents=True)).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return float(analysis["flops"])


def bench(size: str, updates: int, native: bool, image: int | None, overrides: list[str], with_parts: bool,
          with_flops: bool = False) -> dict:
    extra = [] if native else ["model.batch_size=16", "model.batch_length=64"]
    config = make_config(size, extra + list(overrides))
    image = image or (config.env.image_size[0] if native and all(config.env.image_size) else 64)
    b, t = config.model.batch_size, config.model.batch_length
    obs_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (image, image, 3), np.uint8)})
    act_space = gym.spaces.Discrete(15)
    agent = DreamerV3(obs_space, act_space, config)
    rng = np.random.default_rng(0)
    batches = [random_batch(rng, b, t, image) for _ in range(2)]
    flops = {"flops_per_update": f"{update_flops(agent, batches[0]):.3g}"} if with_flops else {}
    start = time.perf_counter()
    _, metrics = agent.train(batches[0], None)
    compile_s = time.perf_counter() - start
    times, cpu_times = [], []
    for i in range(updates):
        start, cpu_start = time.perf_counter(), time.process_time()
        _, metrics = agent.train(batches[i % 2], None)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    per_update = float(np.median(times)) if times else float("nan")
    breakdown = parts(agent.model, agent.state, batches[0]) if with_parts else {}
    return {
        "size": size, "params_m": round(count_params(obs_space, act_space, config.model)["total"] / 1e6, 2),
        "batch": f"{b}x{t}", "image": f"{image}x{image}", "compile_s": round(compile_s, 2),
        "s_per_update": round(per_update, 3), "cpu_s_per_update": round(float(np.median(cpu_times or [np.nan])), 3), "replayed_steps_per_s": round(b * t / per_update, 1),
        "env_steps_per_s_at_ratio_32": round(b * t / per_update / 32, 2), "updates": updates,
        "loss_finite": bool(np.isfinite(metrics["loss/total"])), "overrides": overrides,
        "backend": jax.default_backend(), "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "jax": jax.__version__, "allocator": os.path.basename(loaded_allocator() or "glibc"), **flops, **breakdown,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "cpu", "1m", "12m"])
    parser.add_argument("--updates", type=int, default=5, help="timed updates after the compiling one")
    parser.add_argument("--native", action="store_true", help="use each preset's batch instead of 16 x 64")
    parser.add_argument("--image", type=int, help="square image size (default: the preset's env.image_size, else 64)")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. model.strided=true")
    parser.add_argument("--parts", action="store_true", help="also time the gradient of each part of the loss")
    parser.add_argument("--flops", action="store_true", help="also report XLA's FLOP count of one update")
    args = parser.parse_args()
    reexec_with_fast_allocator()  # as `cardreamer train` does; CARDREAMER_ALLOCATOR=system opts out
    for size in args.sizes:
        print(json.dumps(bench(size, args.updates, args.native, args.image, args.set, args.parts, args.flops)), flush=True)


if __name__ == "__main__":
    main()
