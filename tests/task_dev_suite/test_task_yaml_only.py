"""A task written only in YAML (no Python) runs through gymnasium.make."""
from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium.utils.env_checker import check_env

from cardreamer.expert import ExpertPolicy
from task_dev_suite.task_validation import validate_task

SPEC = """\
# Cross the intersection while flows from the south and the west go straight through.
task:
  name: crossing_yaml
  description: Cross the intersection between two flows, with a stop sign on the approach.
  map: intersection
  ego:
    spawn: {x: 70, y: -5.2}
    route: [[-60, -5.2]]
  traffic:
    background: 2
    flows:
      - spawn: {x: 5.2, y: 60}
        route: [[5.2, -60]]
        gap: [12, 20]
        speed: 5
      - spawn: {x: -40, y: 5.2}
        route: [[60, 5.2]]
        behavior: {desired_speed: 7, ignore_lights: true}
  lights: {green: 5, yellow: 2}
  stop_signs: [[40, -5.2]]
  rewards: {waypoint: 1.0, speed: 1.0, collision: 20.0, destination: 10.0}
  terminal: {time_limit: 80}
env:
  observation:
    enabled: [birdeye_with_stop_signs, state]
"""


def test_yaml_only_task_runs_through_gymnasium_make(tmp_path):
    path = tmp_path / "crossing_yaml.yaml"
    path.write_text(SPEC)
    assert validate_task(path).problems == []
    env_id = "CarDreamerTest/CrossingYaml-v0"
    if env_id not in gymnasium.registry:
        gymnasium.register(id=env_id, entry_point="cardreamer.env:CarDreamerEnv", kwargs={"task": str(path)})
    env = gymnasium.make(env_id)
    try:
        check_env(env.unwrapped, skip_render_check=True)
        obs, _ = env.reset(seed=7)
        assert set(obs) == {"birdeye_with_stop_signs", "state"}
        expert = ExpertPolicy(env.unwrapped)
        rewards, vehicles = [], 0
        for _ in range(60):
            obs, reward, terminated, truncated, _info = env.step(expert.act())
            assert env.observation_space.contains(obs)
            rewards.append(reward)
            vehicles = max(vehicles, len(env.unwrapped.world.vehicles().ids))
            if terminated or truncated:
                break
        assert np.all(np.isfinite(rewards))
        assert vehicles >= 1 + 2 + 2, "the ego, 2 background vehicles and both flows' first vehicles"
        assert env.unwrapped.task.route_s > 10, "the expert drives along the YAML route"
        assert any(s.kind == "stop_sign" for s in env.unwrapped.road_map.signals)
    finally:
        env.close()
