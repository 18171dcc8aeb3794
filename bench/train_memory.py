"""Resident memory of a ``cardreamer train`` run over wall time, against what its replay holds.

Starts ``python -m cardreamer.cli train`` (this tree) on a fresh logdir, samples its VmRSS from
/proc/<pid>/status every ``--interval`` seconds together with the env steps of its newest
metrics.jsonl row and the checkpoints written so far, stops it with SIGINT after ``--minutes``
(it saves a checkpoint and exits), then reads the bytes one replay step takes from that
checkpoint's replay chunks. It prints one row per sample: RSS, the replay's share (stored steps x
bytes per step) and the rest (RSS less the replay), so the replay filling is told apart from other
growth.

    nice -n 19 python bench/train_memory.py --task four_lane --size tiny --minutes 25

``--probe RUN_DIR`` instead resumes a run (give it a copy: it saves into it) in this process and
calls the trainer's ``save()`` six times and ``_report()`` three times, printing each call's RSS and
Python-heap change (tracemalloc), to tell which of them grows memory.

    cp -r /tmp/run /tmp/probe && nice -n 19 python bench/train_memory.py --probe /tmp/probe
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def last_step(logdir: Path) -> int:
    """Env steps of the newest metrics.jsonl row (0 before the first)."""
    try:
        rows = (logdir / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    for row in reversed(rows):
        try:
            return int(json.loads(row)["step"])
        except (ValueError, KeyError):
            continue
    return 0


def checkpoints(logdir: Path) -> list[str]:
    root = logdir / "checkpoints"
    return sorted(p.name for p in root.iterdir() if p.name.isdigit()) if root.is_dir() else []


def replay_step_bytes(logdir: Path) -> float:
    """Bytes per stored step of the newest checkpoint's replay chunks (observations, action,
    reward, flags and stored latents, as held in memory)."""
    total, steps = 0, 0
    for path in sorted((logdir / "replay").glob("*.npz")):
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        if not path.name.endswith(".latent.npz"):
            steps += len(arrays["reward"])
        total += sum(a.nbytes for a in arrays.values())
    return total / steps if steps else float("nan")


def probe(logdir: Path) -> None:
    """RSS and Python-heap change of each ``save()`` and ``_report()`` of a resumed run."""
    import gc
    import tracemalloc

    sys.path.insert(0, str(HERE))  # this tree's packages, as the train subprocess gets them
    from cardreamer.training.config import load_config
    from cardreamer.training.envs import default_env_fn, make_vector_env
    from cardreamer.training.logger import NullPublisher
    from cardreamer.training.loop import Trainer

    config = load_config(str(logdir / "config.yaml"))
    env_fn = default_env_fn(config)
    trainer = Trainer(config, str(logdir), env_fn, make_vector_env(env_fn, 1, False, config.env.image_size),
                      NullPublisher())
    print(f"resumed {len(trainer.replay)} replay steps, RSS {rss_mb(os.getpid()):.0f} MB", flush=True)
    tracemalloc.start()
    for name in ["save"] * 6 + ["report"] * 3:
        before, rss_before, start = tracemalloc.take_snapshot(), rss_mb(os.getpid()), time.time()
        trainer.save() if name == "save" else trainer._report()
        gc.collect()
        heap = sum(d.size_diff for d in tracemalloc.take_snapshot().compare_to(before, "filename"))
        print(f"{name}: RSS {rss_before:.0f} -> {rss_mb(os.getpid()):.0f} MB, Python heap {heap / 1e6:+.2f} MB, "
              f"{time.time() - start:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="four_lane")
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--logdir", type=Path, help="run directory (default: a fresh temporary one)")
    parser.add_argument("--json", type=Path, help="also write the samples here")
    parser.add_argument("--probe", type=Path, metavar="RUN_DIR", help="probe save() and _report() of this run")
    args, extra = parser.parse_known_args()
    if args.probe:
        probe(args.probe)
        return
    logdir = args.logdir or Path(tempfile.mkdtemp(prefix="train_memory_")) / "run"
    command = [sys.executable, "-m", "cardreamer.cli", "train", "--task", args.task, "--size", args.size,
               "--steps", "100000000", "--logdir", str(logdir), "--run.progress=false", *extra]
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    process = subprocess.Popen(command, cwd=HERE, env=env)
    start, samples = time.time(), []
    try:
        while time.time() - start < args.minutes * 60 and process.poll() is None:
            time.sleep(args.interval)
            if process.poll() is not None:
                break
            samples.append({"t": round(time.time() - start), "rss_mb": round(rss_mb(process.pid), 1),
                            "steps": last_step(logdir), "checkpoints": len(checkpoints(logdir))})
            print(json.dumps(samples[-1]), flush=True)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        process.wait()
    per_step = replay_step_bytes(logdir)
    print(f"\n{args.task} --size {args.size}: {per_step:,.0f} B per replay step ({logdir})")
    print(f"{'t (s)':>6} {'steps':>7} {'ckpts':>5} {'RSS MB':>8} {'replay MB':>9} {'RSS - replay':>12}")
    for s in samples:
        replay = s["steps"] * per_step / 1e6
        s["replay_mb"], s["rest_mb"] = round(replay, 1), round(s["rss_mb"] - replay, 1)
        print(f"{s['t']:>6} {s['steps']:>7} {s['checkpoints']:>5} {s['rss_mb']:>8.0f} {replay:>9.1f} "
              f"{s['rest_mb']:>12.0f}")
    if args.json:
        args.json.write_text(json.dumps({"step_bytes": per_step, "samples": samples}, indent=1))


if __name__ == "__main__":
    main()
