"""Env speed with the visualizer publisher on and no server listening, against the display off.

    taskset -c 0 python bench/bench_display_overhead.py [--steps 3000]
The publisher must never block a step: the two figures should be within a few percent.
"""
from __future__ import annotations

import argparse
import socket
import time

from cardreamer.env import make_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def steps_per_second(overrides: list[str], steps: int) -> float:
    env = make_env("wpt", overrides)
    env.reset(seed=0)
    action = env.actions.nearest(1.0, 0.0)
    for _ in range(200):
        env.step(action)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    dead = f"http://127.0.0.1:{free_port()}"
    off = steps_per_second([], args.steps)
    on = steps_per_second(["--env.display.enable=true", f"--env.display.url={dead}", "--env.display.token=x"],
                          args.steps)
    print(f"display off: {off:.0f} steps/s; display on, no server at {dead}: {on:.0f} steps/s "
          f"({100 * (on / off - 1):+.1f}%)")


if __name__ == "__main__":
    main()
