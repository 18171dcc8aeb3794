"""Time per call of every observation handler on Town04 with 50 vehicles.

Usage (one core, as the figures in docs/observations.md were taken):

    taskset -c 0 python bench/bench_render.py [--vehicles 50] [--radius 60] [--calls 500] [--repeats 5]

The scene is the hand-placed Town04 scene of the observer tests (ego at (5.8, 100) on the
highway) plus background cars on lane points within ``radius`` metres of the ego, at least 6 m
apart: a dense case where about a third of them are inside the 128 x 128 bird's-eye view. Prints, per
handler, the best and the median over ``repeats`` of the mean time per call, and the time to
build the Town04 road raster. Times are CPU time of this process (``time.process_time``), so
that other programs sharing the core do not inflate them; wall-clock medians are printed too.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

# The observer tests' scenes: a static World double with hand-placed vehicles on real CARLA towns.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "observer"))
import scenes

from cardreamer.observer import DEFAULT_OBSERVATIONS, Observer, build_handler
from cardreamer.roadmap.raster import RoadRaster

TYPICAL = ["birdeye_wpt", "camera", "lidar", "collision", "state"]


def per_call(fn, calls: int, repeats: int) -> tuple[float, float]:
    """(best CPU seconds per call, median wall seconds per call) over ``repeats`` runs of ``calls``."""
    fn()
    cpu, wall = [], []
    for _ in range(repeats):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        for _ in range(calls):
            fn()
        cpu.append((time.process_time() - cpu_start) / calls)
        wall.append((time.perf_counter() - wall_start) / calls)
    return min(cpu), statistics.median(wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", type=int, default=50)
    parser.add_argument("--radius", type=float, default=60.0)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--motion-trail", type=float, default=None,
                        help="seconds of motion trail for every bird's-eye view (default: the views' own, 1 s)")
    args = parser.parse_args()
    observations = {name: {**config, "motion_trail": args.motion_trail}
                    if args.motion_trail is not None and config.get("handler", name) == "birdeye" else config
                    for name, config in DEFAULT_OBSERVATIONS.items()}

    road_map = scenes.load_town("Town04")
    start = time.process_time()
    RoadRaster(road_map, 4.0)
    print(f"Town04 road raster at 4 px/m: {time.process_time() - start:.3f} s CPU")

    small = np.zeros(8)
    calibration, _ = per_call(lambda: [np.add(small, 1.0) for _ in range(100)], 200, args.repeats)
    print(f"calibration: one small numpy call {calibration / 100 * 1e6:.2f} us CPU (load shows here)")

    scene = scenes.crowd(args.vehicles, radius=args.radius)
    world, ego = scene.world, scene.ego
    v = world.vehicles()
    in_bev = int(np.sum(np.hypot(*(v.xy - v.xy[v.row(ego)]).T) < 36.0)) - 1
    print(f"{len(v.ids)} vehicles, {in_bev} within 36 m of the ego\n")
    print(f"{'observation':30s} {'CPU ms':>9s} {'wall ms':>10s}")
    for name, config in observations.items():
        handler = build_handler(name, config)
        handler.reset(world, ego)
        best, median = per_call(lambda h=handler: h.step(world, ego), args.calls, args.repeats)
        print(f"{name:30s} {best * 1e3:9.3f} {median * 1e3:10.3f}")
    observer = Observer(observations, TYPICAL)
    observer.reset(world, ego)
    best, median = per_call(lambda: observer.step(world, ego), args.calls, args.repeats)
    print(f"{'Observer(' + '+'.join(TYPICAL) + ')':30s} {best * 1e3:9.3f} {median * 1e3:10.3f}")


if __name__ == "__main__":
    main()
