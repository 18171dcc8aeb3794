"""The scripted expert solves representative tasks (a few seeds; bench/eval_tasks.py runs 50)."""
from __future__ import annotations

import pytest

from cardreamer.env import make_env
from cardreamer.expert import ExpertPolicy


@pytest.mark.parametrize("task,seed", [("lane_merge", 0), ("right_turn_medium", 3), ("traffic_lights", 0)])
def test_expert_reaches_the_destination(task, seed):
    env = make_env(task, seed=seed)
    expert = ExpertPolicy(env)
    for _ in range(env.time_limit):
        _, _, terminated, truncated, info = env.step(expert.act())
        if terminated or truncated:
            break
    assert info["terminal_reason"] == "destination", info
    env.close()
