"""Env speed wrapped in the live display (visualization.wrapper.LiveDisplay) with no server
listening, against the bare env.

    taskset -c 0 python bench/bench_display_overhead.py [--steps 3000]
The publisher must never block a step: the two figures should be within a few percent.
"""
from __future__ import annotations

import argparse
import socket
import time

from cardreamer.env import make_env
from visualization.wrapper import LiveDisplay


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def steps_per_second(display_url: str | None, steps: int) -> float:
    """Steps per second of ``wpt``, wrapped in a LiveDisplay publishing to ``display_url`` unless None."""
    env = make_env("wpt")
    action = env.actions.nearest(1.0, 0.0)
    if display_url is not None:
        env = LiveDisplay(env, display_url, token="x", keys=["birdeye_wpt"])
    env.reset(seed=0)
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
    off = steps_per_second(None, args.steps)
    on = steps_per_second(dead, args.steps)
    print(f"display off: {off:.0f} steps/s; display on, no server at {dead}: {on:.0f} steps/s "
          f"({100 * (on / off - 1):+.1f}%)")


if __name__ == "__main__":
    main()
