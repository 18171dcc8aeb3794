"""Compare training runs' losses at fixed update counts, from their ``metrics.jsonl``: the
before/after table of a backbone change on the same seed (issue 21).

    python bench/compare_losses.py docs/learning_runs/four_lane_trail_ent3e4_s1 runs/four_lane_old_s1
    python bench/compare_losses.py RUN_A RUN_B --at 1000 2000 4000 --window 500 --keys train/loss/rec

Each cell is the mean of the run's metric rows whose update count lies in [at - window, at]
(rows are written every few hundred updates, each the mean over its interval), so runs compare at
equal numbers of gradient steps rather than equal env steps.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from learning_curve import read_rows  # this folder

KEYS = ["train/loss/rec", "train/loss/rew", "train/loss/con", "train/loss/dyn",
        "train/post_entropy", "train/actor_entropy", "train/ret_scale", "episode/return_recent"]


def read_metrics(logdir: str) -> list[dict]:
    return [r for r in read_rows(logdir, "metrics.jsonl") if "updates" in r]


def cell(rows: list[dict], key: str, at: int, window: int) -> str:
    values = [r[key] for r in rows if at - window <= r["updates"] <= at and r.get(key) is not None]
    return f"{float(np.mean(values)):.4g}" if values else "—"


def markdown(runs: dict[str, list[dict]], keys: list[str], at: list[int], window: int) -> str:
    names = list(runs)
    lines = ["| metric | updates | " + " | ".join(f"`{n}`" for n in names) + " |", "|---" * (len(names) + 2) + "|"]
    for key in keys:
        for point in at:
            lines.append(f"| {key} | {point:,} | " + " | ".join(cell(runs[n], key, point, window) for n in names) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logdirs", nargs="+")
    parser.add_argument("--at", type=int, nargs="+", default=[500, 1000, 2000, 4000, 6000])
    parser.add_argument("--window", type=int, default=250, help="updates before each point to average over")
    parser.add_argument("--keys", nargs="+", default=KEYS)
    args = parser.parse_args()
    if args.window <= 0 or any(a <= 0 for a in args.at):
        parser.error("--at and --window must be positive numbers of updates")
    try:
        runs = {os.path.basename(os.path.normpath(d)): read_metrics(d) for d in args.logdirs}
    except (FileNotFoundError, ValueError) as exc:
        print(f"compare_losses: error: {exc}", file=sys.stderr)
        return 2
    print(markdown(runs, args.keys, args.at, args.window))
    return 0


if __name__ == "__main__":
    sys.exit(main())
