"""Benchmark the embedded simulator: ticks/s, reset time, and memory over a long run.

Run pinned to one core, as the figures in the docs were taken:

    taskset -c 0 python bench/bench_world.py [--maps Town01 town_grid] [--counts 50 150]
                                             [--ticks 3000] [--memory-ticks 100000]

CARLA towns are looked up in $CARDREAMER_CARLA_MAPS or the project's shared/carla_maps folder.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from cardreamer.roadmap import RoadMap
from cardreamer.world.api import Pose
from cardreamer.world.embedded import EmbeddedWorld

SHARED_MAPS = Path(__file__).resolve().parents[2] / "shared" / "carla_maps"


def rss_mib() -> float:
    """Resident memory of this process (MiB), from /proc."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def load(name: str) -> RoadMap:
    return RoadMap.load(name, map_dir=os.environ.get("CARDREAMER_CARLA_MAPS", SHARED_MAPS))


def tick_rate(road_map: RoadMap, count: int, ticks: int) -> tuple[float, float, float, int]:
    """(ticks/s, ms/tick of wall time, ms/tick of CPU time, vehicles at the end) with ``count``
    background vehicles and one ego, after a 200-tick warm-up. CPU time is what one core spends on
    it; on a busy machine it is the steadier figure."""
    world = EmbeddedWorld(road_map, seed=0)
    world.spawn_traffic(count)
    points = road_map.spawn_points()
    for k in range(len(points.xy)):
        if world.try_spawn_vehicle(Pose(*points.xy[k], points.yaw[k]), role="ego") is not None:
            break
    for _ in range(200):
        world.tick()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(ticks):
        world.tick()
        world.vehicles()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return ticks / wall, 1000.0 * wall / ticks, 1000.0 * cpu / ticks, len(world.vehicles().ids)


def reset_time(road_map: RoadMap, count: int, repeats: int = 20) -> tuple[float, float]:
    """Median ms (wall, CPU) of ``reset`` plus ``spawn_traffic(count)`` (what an env reset does)."""
    world = EmbeddedWorld(road_map, seed=0)
    wall, cpu = [], []
    for seed in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        world.reset(seed)
        world.spawn_traffic(count)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return 1000.0 * float(np.median(wall)), 1000.0 * float(np.median(cpu))


def memory(road_map: RoadMap, count: int, ticks: int) -> tuple[float, float, float]:
    """RSS (MiB) after warm-up, after ``ticks`` ticks with a reset every 1000, and its growth."""
    world = EmbeddedWorld(road_map, seed=0)
    world.spawn_traffic(count)
    for _ in range(2000):
        world.tick()
    before = rss_mib()
    for k in range(ticks):
        if k % 1000 == 999:
            world.reset(k)
            world.spawn_traffic(count)
        world.tick()
    after = rss_mib()
    return before, after, after - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--maps", nargs="+", default=["Town01", "town_grid"])
    parser.add_argument("--counts", nargs="+", type=int, default=[50, 150])
    parser.add_argument("--ticks", type=int, default=3000)
    parser.add_argument("--memory-ticks", type=int, default=100_000)
    args = parser.parse_args()
    for name in args.maps:
        road_map = load(name)
        for count in args.counts:
            rate, ms, cpu_ms, alive = tick_rate(road_map, count, args.ticks)
            print(f"{name:10s} {count:4d} vehicles (+1 ego, {alive} at the end): {rate:6.0f} ticks/s, "
                  f"{ms:.3f} ms/tick wall, {cpu_ms:.3f} ms/tick CPU ({1000.0 / cpu_ms:.0f} ticks/s of CPU)")
        wall, cpu = reset_time(road_map, 50)
        print(f"{name:10s} reset + spawn_traffic(50): {wall:.1f} ms wall, {cpu:.1f} ms CPU (medians)")
    if args.memory_ticks:
        road_map = load(args.maps[0])
        before, after, growth = memory(road_map, 50, args.memory_ticks)
        print(f"{args.maps[0]:10s} RSS before {before:.1f} MiB, after {args.memory_ticks} ticks "
              f"(reset every 1000) {after:.1f} MiB: growth {growth:+.1f} MiB")


if __name__ == "__main__":
    main()
