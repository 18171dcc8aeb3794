"""Env throughput: steps/s of the wpt task (50 background vehicles), reset time, memory over a long run.

Run on one core, as the targets are stated:
    taskset -c 0 python bench/bench_env.py [--steps 5000] [--memory-steps 100000]
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from cardreamer.env import make_env

CONFIGS = {
    "bev": ["--env.observation.enabled=[birdeye_wpt]"],
    "bev+camera+lidar": ["--env.observation.enabled=[birdeye_wpt,camera,lidar]"],
}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def run(env, steps: int, rng) -> tuple[float, float]:
    """Steps per wall second and per CPU second with a random policy, resets included as they occur."""
    env.reset(seed=0)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start), steps / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", default="wpt")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--memory-steps", type=int, default=100_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for name, overrides in CONFIGS.items():
        env = make_env(args.task, overrides)
        run(env, 200, rng)  # warm-up: caches, raster
        fps, cpu_fps = run(env, args.steps, rng)
        print(f"{args.task} {name:<18} {fps:8.0f} steps/s wall {cpu_fps:8.0f} per CPU-second "
              f"({len(env.world.vehicles().ids)} vehicles)")
        env.close()
    env = make_env(args.task, CONFIGS["bev"])
    env.reset(seed=0)
    times = []
    for seed in range(30):
        start = time.perf_counter()
        env.reset(seed=seed)
        times.append(time.perf_counter() - start)
    print(f"reset: median {1000 * np.median(times):.1f} ms, max {1000 * np.max(times):.1f} ms")
    if args.memory_steps:
        env.reset(seed=0)
        checkpoints = np.linspace(0, args.memory_steps, 5).astype(int)[1:]
        done, report = 0, [f"0: {rss_mb():.0f} MB"]
        for target in checkpoints:
            run_steps = target - done
            for _ in range(run_steps):
                _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
                if terminated or truncated:
                    env.reset()
            done = target
            report.append(f"{target}: {rss_mb():.0f} MB")
        print("resident memory after steps: " + ", ".join(report))


if __name__ == "__main__":
    main()
