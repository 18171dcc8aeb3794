"""Load time and frame rate of the run page with a 100k-row metrics.jsonl and four runs overlaid.

    nice python bench/bench_page.py [--rows 100000] [--runs 4] [--seconds 5]

Writes ``--runs`` trainer-like run directories (the first with ``--rows`` metrics rows, the
others a tenth of that; scores with training episodes and evaluations), serves them, opens the
page in Debian Chromium (Playwright) with all runs overlaid and every panel open, and reports:
load (navigation until every chart is drawn), and the frame rate while the cursor sweeps over a
chart (hover readout) and while the page scrolls. Prints one Markdown table row per figure.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from pathlib import Path

from visualization.cli import start_server_subprocess

CHROMIUM = "/usr/bin/chromium"
METRIC_KEYS = ("train/loss/image", "train/loss/reward", "train/loss/cont", "train/loss/dyn", "train/loss/rep",
               "train/loss/policy", "train/loss/value", "train/loss/repval", "train/ent/action", "train/grad_norm",
               "fps/env", "fps/updates")


def write_run(run_dir: Path, rows: int, seed: int, log_every: int = 10) -> None:
    """``rows`` metrics rows every ``log_every`` env steps, an episode every 400 steps, an
    evaluation every 1,000 rows."""
    rng = random.Random(seed)
    run_dir.mkdir(parents=True)
    with open(run_dir / "metrics.jsonl", "w") as metrics, open(run_dir / "scores.jsonl", "w") as scores:
        for i in range(1, rows + 1):
            step = i * log_every
            row = {"step": step, **{k: math.exp(-i / rows * 3) * (1 + j) + 0.1 * rng.random()
                                    for j, k in enumerate(METRIC_KEYS)},
                   "env_steps": step, "updates": i, "episodes": step // 400, "replay/steps": step}
            if i % 1000 == 0:
                evaluation = {"eval/return": 100 * i / rows, "eval/success_rate": i / rows, "eval/length": 300.0,
                              "eval/collision_rate": 1 - i / rows, "eval/episodes": 4}
                row.update(evaluation)
                scores.write(json.dumps({"step": step, **evaluation}) + "\n")
            metrics.write(json.dumps(row) + "\n")
            if step % 400 == 0:
                p = i / rows
                scores.write(json.dumps({"step": step, "episode/return": 100 * p + 10 * rng.random(),
                                         "episode/length": 400, "episode/success": float(rng.random() < p),
                                         "episode/collision": float(rng.random() > p),
                                         "episode/route_completion": p, "episode/mean_speed": 5 + p}) + "\n")


FPS_PROBE = """async ([seconds, action]) => {
  let frames = 0, longest = 0, last = performance.now();
  const start = last;
  await new Promise((done) => {
    const tick = (now) => {
      frames++; longest = Math.max(longest, now - last); last = now;
      if (now - start < seconds * 1000) requestAnimationFrame(tick); else done();
    };
    requestAnimationFrame(tick);
    if (action === "scroll") {
      const step = () => { if (performance.now() - start < seconds * 1000) { window.scrollBy(0, 40);
        if (window.scrollY + innerHeight >= document.body.scrollHeight) window.scrollTo(0, 0); setTimeout(step, 16); } };
      step();
    }
  });
  return [frames / seconds, longest];
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        logdir = Path(tmp) / "runs"
        names = [f"bench-seed{k}" for k in range(args.runs)]
        for k, name in enumerate(names):
            write_run(logdir / name, args.rows if k == 0 else args.rows // 10, seed=k)
        size = (logdir / names[0] / "metrics.jsonl").stat().st_size / 1e6
        process, url = start_server_subprocess(logdir, announce=False)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
                query = f"&run={names[0]}&compare={','.join(names[1:])}"
                wanted = f"document.querySelector('.chart-card[data-title=\"success rate\"]')?.dataset.series" \
                         f".split('train').length - 1 === {args.runs}"
                loads = []
                # The first viewer makes the server read the files; the second finds them held (the
                # first stays open: the server drops the history of a run nobody watches).
                for _ in range(2):
                    page = browser.new_page(viewport={"width": 1440, "height": 900})
                    start = time.perf_counter()
                    page.goto(url + query)
                    page.wait_for_function(f"() => {wanted}", timeout=300_000)
                    loads.append(time.perf_counter() - start)
                points = page.evaluate("window.visStats.chartPoints")
                start = time.perf_counter()
                page.evaluate("document.querySelectorAll('details.chart-group').forEach(d => d.open = true)")
                page.wait_for_function(f"() => document.querySelectorAll('.chart-card canvas').length >= "
                                       f"{len(METRIC_KEYS) + 4}", timeout=60_000)
                open_all = time.perf_counter() - start
                charts = page.evaluate("document.querySelectorAll('.chart-card').length")
                all_points = page.evaluate("window.visStats.chartPoints")
                page.evaluate("window.scrollTo(0, 0)")
                box = page.locator('.chart-card[data-title="episode return"] .u-over').bounding_box()
                page.evaluate(f"() => {{ window.probe = ({FPS_PROBE})([{args.seconds}, 'hover']); }}")
                sweeps, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < args.seconds:
                    page.mouse.move(box["x"] + box["width"] * (sweeps % 50) / 50, box["y"] + box["height"] / 2)
                    sweeps += 1
                hover_fps, hover_longest = page.evaluate("window.probe")
                scroll_fps, scroll_longest = page.evaluate(f"({FPS_PROBE})([{args.seconds}, 'scroll'])")
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=10)
    print(f"| metrics.jsonl of the first run | {args.rows:,} rows, {size:.0f} MB; {args.runs} runs overlaid |")
    print(f"| load, first viewer (the server reads the files): navigation until the headline charts show all "
          f"{args.runs} runs | {loads[0]:.2f} s |")
    print(f"| load, a second viewer (the selected run's history held by the server) | {loads[1]:.2f} s "
          f"({points:,} points drawn) |")
    print(f"| opening every panel ({charts} charts) | {open_all:.2f} s ({all_points:,} points drawn) |")
    print(f"| frame rate, cursor sweeping a chart ({sweeps} moves) | {hover_fps:.0f} fps, longest frame "
          f"{hover_longest:.0f} ms |")
    print(f"| frame rate, scrolling the page | {scroll_fps:.0f} fps, longest frame {scroll_longest:.0f} ms |")


if __name__ == "__main__":
    main()
