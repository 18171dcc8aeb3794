"""A determinism trace of every built-in task: one expert and one random episode each, hashed.

For each task and policy it records the episode's return, length, terminal reason and a SHA-256
of every step's reward terms, the ego's pose and the observation arrays, so that a refactor (the
task parts, the compiled tick) can be checked to change nothing, seed for seed:

    python bench/determinism_trace.py --out /tmp/before.json
    ... change the code ...
    python bench/determinism_trace.py --compare /tmp/before.json

CARLA-town tasks are included when ``$CARDREAMER_CARLA_MAPS`` points at the towns.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np

from cardreamer.env import make_env
from cardreamer.expert import ExpertPolicy
from cardreamer.task_registry import task_names


def trace_episode(task: str, policy: str, seed: int, max_steps: int) -> dict:
    env = make_env(task)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    expert = ExpertPolicy(env) if policy == "expert" else None
    digest = hashlib.sha256()
    total, steps, reason = 0.0, 0, None
    for _ in range(max_steps):
        action = expert.act() if expert else env.action_space.sample()
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        steps += 1
        for key in sorted(obs):
            digest.update(np.ascontiguousarray(obs[key]).tobytes())
        digest.update(np.array([reward, *[v for k, v in sorted(info.items()) if k.startswith("r_")]],
                               dtype=np.float64).tobytes())
        if terminated or truncated:
            reason = info.get("terminal_reason")
            break
    env.close()
    return {"return": round(total, 6), "steps": steps, "reason": reason, "sha256": digest.hexdigest()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the trace here (JSON)")
    parser.add_argument("--compare", help="compare with a trace written earlier; exit 1 on any difference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--tasks", nargs="*", help="default: every built-in task")
    args = parser.parse_args()
    names = args.tasks or [t for t in task_names()
                           if not t.startswith("carla_") or os.environ.get("CARDREAMER_CARLA_MAPS")]
    trace = {}
    for task in names:
        for policy in ("expert", "random"):
            trace[f"{task}/{policy}"] = row = trace_episode(task, policy, args.seed, args.max_steps)
            print(f"{task:<28} {policy:<7} return {row['return']:>9.3f} steps {row['steps']:>4} "
                  f"{row['reason']!s:<12} {row['sha256'][:12]}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(trace, f, indent=1)
    if args.compare:
        with open(args.compare) as f:
            before = json.load(f)
        differ = [k for k in trace if k in before and before[k] != trace[k]]
        missing = sorted(set(before) - set(trace))
        for key in differ:
            print(f"DIFFERS {key}: before {before[key]} now {trace[key]}")
        print(f"{len(trace) - len(differ)} of {len(trace)} identical; {len(differ)} differ"
              + (f"; not traced now: {', '.join(missing)}" if missing else ""))
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
