"""Evaluate the built-in tasks with the scripted expert, a random and a constant-throttle policy.

For each task and policy: seeded episodes (seeds 0..N-1), then success rate, collision rate,
mean speed, route completion and episode length (means over episodes). Work is spread over
processes (one per task and policy), and the table printed is the one recorded in docs/tasks.md.

    python bench/eval_tasks.py --override=--env.observation.enabled=[state]   # the recorded run
    python bench/eval_tasks.py --tasks wpt overtake --episodes 10 --json results.json
    python bench/eval_tasks.py --pictures docs/img/tasks                      # one BEV per task

None of the policies reads the observation, so the recorded run swaps the BEV for the cheap
``state`` vector (the figures do not depend on it).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

POLICIES = ("expert", "random", "constant")
METRICS = ("success", "collision", "mean_speed", "route_completion", "episode_length")


def constant_throttle(env) -> int | np.ndarray:
    """Full acceleration, wheel straight: the action a do-nothing-clever agent would take."""
    acc = max(env.config.env.action.discrete_acc) if env.config.env.action.discrete else env.actions.space.high[0]
    return env.actions.nearest(acc, 0.0)


def evaluate(task: str, policy: str, episodes: int, overrides: list[str] | None = None) -> dict:
    """Run ``episodes`` seeded episodes of ``task`` with ``policy``; returns the per-episode rows."""
    from cardreamer.env import make_env
    from cardreamer.expert import ExpertPolicy

    env = make_env(task, overrides)
    env.action_space.seed(0)
    expert = ExpertPolicy(env) if policy == "expert" else None
    constant = constant_throttle(env)
    rows = []
    start = time.perf_counter()
    steps = 0
    for seed in range(episodes):
        env.reset(seed=seed)
        done = False
        while not done:
            if expert is not None:
                action = expert.act()
            elif policy == "random":
                action = env.action_space.sample()
            else:
                action = constant
            _, _, terminated, truncated, info = env.step(action)
            steps += 1
            done = terminated or truncated
        rows.append({"seed": seed, "terminal_reason": info["terminal_reason"],
                     **{k: float(info[k]) for k in METRICS}})
    env.close()
    return {"task": task, "policy": policy, "episodes": rows,
            "steps_per_s": steps / (time.perf_counter() - start)}


def save_picture(task: str, directory: str, steps: int = 130) -> str:
    """A spectator BEV (512 px) of ``task`` after ``steps`` expert steps of seed 0, as a PNG."""
    import cv2

    from cardreamer.env import make_env
    from cardreamer.expert import ExpertPolicy

    env = make_env(task, render_mode="rgb_array", seed=0)
    expert = ExpertPolicy(env)
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(expert.act())
        if terminated or truncated:
            break
    frame = env.render()
    env.close()
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{task}.png")
    tmp = path + ".tmp.png"
    cv2.imwrite(tmp, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    os.replace(tmp, path)
    return path


def summarize(result: dict) -> dict:
    rows = result["episodes"]
    summary = {k: float(np.mean([r[k] for r in rows])) for k in METRICS}
    reasons: dict[str, int] = {}
    for r in rows:
        reasons[r["terminal_reason"]] = reasons.get(r["terminal_reason"], 0) + 1
    return {"task": result["task"], "policy": result["policy"], "n": len(rows), **summary, "ends": reasons}


def table(summaries: list[dict]) -> str:
    lines = ["| task | policy | success | collision | mean speed (m/s) | route completion | episode length | how episodes ended |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for s in summaries:
        ends = ", ".join(f"{k} {v}" for k, v in sorted(s["ends"].items(), key=lambda kv: -kv[1]))
        lines.append(f"| `{s['task']}` | {s['policy']} | {s['success']:.0%} | {s['collision']:.0%} | "
                     f"{s['mean_speed']:.1f} | {s['route_completion']:.0%} | {s['episode_length']:.0f} | {ends} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from cardreamer.task_registry import task_names

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", help="task names (default: every built-in task not needing CARLA towns)")
    parser.add_argument("--policies", nargs="*", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--override", action="append", default=[], help="dotted override for every task")
    parser.add_argument("--json", help="also write every episode's figures to this JSON file")
    parser.add_argument("--pictures", metavar="DIR", help="only save one BEV picture per task into DIR (docs/img/tasks)")
    args = parser.parse_args(argv)
    tasks = args.tasks or [t for t in task_names() if not t.startswith("carla_")]
    if args.pictures:
        for task in tasks:
            print(save_picture(task, args.pictures))
        return 0
    jobs = [(t, p) for t in tasks for p in args.policies]
    jobs.sort(key=lambda tp: POLICIES.index(tp[1]) if tp[1] != "constant" else 1)  # expert, constant, random
    results = {}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = {pool.submit(evaluate, *job, args.episodes, args.override): job for job in jobs}
        for future in as_completed(futures):
            results[futures[future]] = result = future.result()
            print(table([summarize(result)]).splitlines()[-1], flush=True)  # progress, one row per job
    ordered = [results[(t, p)] for t in tasks for p in args.policies]
    print()
    print(table([summarize(r) for r in ordered]))
    if args.json:
        tmp = f"{args.json}.tmp"
        with open(tmp, "w") as fh:
            json.dump(ordered, fh, indent=1)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
