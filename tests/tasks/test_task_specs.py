"""Every built-in task builds, validates, steps, and reports each of its reward terms in info."""
from __future__ import annotations

import numpy as np
import pytest

from cardreamer.env import build_config, make_env
from cardreamer.rewards import REWARD_TERMS
from cardreamer.task_registry import task_description
from tests.tasks.conftest import CARLA_TASKS, EMBEDDED_TASKS

EXPECTED = {"wpt", "navigation", "four_lane", "overtake", "right_turn_simple", "right_turn_medium",
            "right_turn_hard", "right_turn_random", "left_turn_simple", "left_turn_medium", "left_turn_hard",
            "roundabout", "lane_merge", "traffic_lights", "stop_sign", "follow", "carla_town04_four_lane",
            "carla_town04_overtake", "carla_town04_lane_merge", "carla_town04_stop_sign"}
TASK_TERMS = {"overtake", "exceeding", "stay_in_lane", "early_lane_change", "red_light", "stop_sign",
              "following_distance"}


def test_the_issue_task_list_is_complete():
    assert EXPECTED <= set(EMBEDDED_TASKS) | set(CARLA_TASKS)
    assert TASK_TERMS <= set(REWARD_TERMS)


@pytest.mark.parametrize("task", EMBEDDED_TASKS + CARLA_TASKS)
def test_spec_validates_with_description(task):
    config, _ = build_config(task)
    assert config.task.name == task
    assert task_description(task)
    assert config.task.rewards, "every task scores with reward terms"
    assert config.env.observation["enabled"][0].startswith("birdeye")


@pytest.mark.parametrize("task", EMBEDDED_TASKS)
def test_task_steps_and_reports_every_reward_term(task):
    env = make_env(task, seed=3)
    rng = np.random.default_rng(0)
    for _ in range(15):
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        assert env.observation_space.contains(obs)
        for term, scale in env.config.task.rewards.items():
            assert f"r_{term}" in info
        assert np.isclose(reward, sum(info[f"r_{t}"] for t in env.config.task.rewards))
        if terminated or truncated:
            assert info["terminal_reason"]
            break
    env.close()


GAPS = {"right": {"medium": (8.0, 16.0), "hard": (6.0, 8.0)}, "left": {"medium": (20.0, 35.0), "hard": (10.0, 20.0)}}


@pytest.mark.parametrize("kind", ["right", "left"])
def test_difficulty_presets_differ_only_in_the_flow_gap(kind):
    specs = {level: build_config(f"{kind}_turn_{level}")[0].task for level in ("simple", "medium", "hard")}
    assert specs["simple"].traffic.flows == []
    for level in ("medium", "hard"):
        assert specs[level].traffic.flows[0].gap == GAPS[kind][level]
        assert specs[level].ego == specs["simple"].ego
        assert specs[level].rewards == specs["simple"].rewards and specs[level].terminal == specs["simple"].terminal
    assert specs["medium"].traffic.flows[0].model_copy(update={"gap": (0.0, 0.0)}) == \
        specs["hard"].traffic.flows[0].model_copy(update={"gap": (0.0, 0.0)})


@pytest.mark.parametrize("variant", ["birdeye_fov", "birdeye_recursive_fov", "birdeye_intention",
                                     "birdeye_intention_error"])
def test_observability_and_intention_variants_are_a_config_change(variant):
    env = make_env("right_turn_medium", [f"--env.observation.enabled=[{variant}]"], seed=0)
    obs, *_ = env.step(0)
    assert set(obs) == {variant}
    env.close()
