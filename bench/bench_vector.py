"""Aggregate env steps/s of K four_lane worlds in one process: CarDreamerVectorEnv against
gymnasium's SyncVectorEnv over the same envs, in alternating rounds.

    nice -n 19 python bench/bench_vector.py --task four_lane --counts 1 8 32 --rounds 3

Both are built once per K (bird's-eye view as the task enables it, random actions, autoresets
included as they occur); each round times every (K, kind) pair once, in alternating order.
"""
from __future__ import annotations

import argparse
import time

import gymnasium
import numpy as np

import cardreamer  # noqa: F401  (registers CarDreamer/<Task>-v0)
from cardreamer.task_registry import env_id

KINDS = {"vector_entry_point": "CarDreamerVectorEnv", "sync": "SyncVectorEnv"}


def measure(envs: gymnasium.vector.VectorEnv, steps: int, rng: np.random.Generator) -> tuple[float, float]:
    """Aggregate env steps per wall second and per CPU second over ``steps`` vector steps."""
    high = int(envs.single_action_space.n)
    actions = rng.integers(high, size=(steps, envs.num_envs))
    wall, cpu = time.perf_counter(), time.process_time()
    for row in actions:
        envs.step(row)
    return (steps * envs.num_envs / (time.perf_counter() - wall),
            steps * envs.num_envs / (time.process_time() - cpu))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="four_lane")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--env-steps", type=int, default=2000, help="env steps per timing (vector steps x K)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    built = {}
    for count in args.counts:
        for kind in KINDS:
            envs = gymnasium.make_vec(env_id(args.task), num_envs=count, vectorization_mode=kind)
            envs.reset(seed=0)
            measure(envs, max(200 // count, 5), rng)  # warm-up: compiled kernels, rasters
            built[count, kind] = envs
    for round_ in range(1, args.rounds + 1):
        kinds = list(KINDS) if round_ % 2 else list(KINDS)[::-1]
        for count in args.counts:
            for kind in kinds:
                wall, cpu = measure(built[count, kind], max(args.env_steps // count, 20), rng)
                print(f"round {round_} K={count:<3} {KINDS[kind]:<20} {wall:7.0f} env steps/s wall "
                      f"{cpu:7.0f} per CPU-second", flush=True)


if __name__ == "__main__":
    main()
