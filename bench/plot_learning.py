"""Plot the eval success curves of training runs, one colour per task, from their scores.jsonl.

    python bench/plot_learning.py docs/learning_runs/*_trail_ent3e4_s* --out docs/img/learning/success_curves.png

Each run is one line, labelled with its task and seed from its config.yaml (``env.task``, ``seed``);
runs stop at different steps (when they reached the target and were evaluated), so a mean over
seeds would mix runs in and out.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import yaml

from cardreamer.atomic import atomic_output
from cardreamer.training.experiment import plot_success, success_curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (config.yaml and scores.jsonl)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--title", default="eval success rate, 10 sampled episodes per evaluation")
    args = parser.parse_args()
    curves: dict[str, list[list[tuple[int, float]]]] = {}
    for run in sorted(args.runs):
        config = yaml.safe_load((run / "config.yaml").read_text())
        name = f"{config['env']['task']} seed {config['seed']}"
        curves[name] = [success_curve(run / "scores.jsonl")]
    ok, png = cv2.imencode(".png", plot_success(curves, args.title))
    with atomic_output(str(args.out), "wb") as f:
        f.write(png.tobytes())
    print(f"wrote {args.out}: {', '.join(curves)}")


if __name__ == "__main__":
    main()
