"""A tiny DreamerV3, trained by the ordinary trainer on a real driving task from the bird's-eye
view alone (no ``state`` vector), beats a random policy on the same evaluation seeds within CI time.

The task (data/tiny_lane.yaml) starts the ego at 6 m/s in a lane of the straight two_lane road,
5 degrees off the lane's heading to the left or right, and ends it 1.5 m out of lane or after 40 m;
its actions coast or accelerate (no brake, so braking to a safe crawl is no local optimum) with
five steering values. Random steering leaves the lane within a few seconds, and so does steering
straight: only a policy that sees which way the lane runs gets through. Measured on three training
seeds (a fixed seed gives the same returns): docs/benchmarks.md, "A tiny agent learns from the
bird's-eye view".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cardreamer.env import make_env
from cardreamer.training import evaluate, make_config, train

TASK = Path(__file__).parent / "data" / "tiny_lane.yaml"
STEPS = 3000
EPISODES = 10
EVAL_SEED = 500  # episode i of both policies starts from reset(seed=EVAL_SEED + i)
MARGIN = 20.0    # return above random's and straight-ahead's; measured on these seeds: random 8.2,
                 # straight ahead 10.1, learned 45.1 / 63.0 / 67.6 (training seeds 0-2)


def straight_ahead_return() -> float:
    """Mean return of coasting with the wheel straight on the evaluation seeds: what an agent that
    learned one action, not to steer by what it sees, would get."""
    env = make_env(TASK)
    try:
        action, returns = env.unwrapped.actions.nearest(0.0, 0.0), []
        for i in range(EPISODES):
            env.reset(seed=EVAL_SEED + i)
            total, done = 0.0, False
            while not done:
                _, reward, terminated, truncated, _ = env.step(action)
                total, done = total + float(reward), terminated or truncated
            returns.append(total)
        return sum(returns) / len(returns)
    finally:
        env.close()


def train_and_evaluate(logdir: Path, seed: int, backbone: str = "dreamerv3") -> dict:
    """Train ``backbone`` (tiny) for STEPS env steps on TASK, then evaluate EPISODES fixed-seed episodes."""
    steps = STEPS if backbone == "dreamerv3" else 1
    config = make_config("tiny" if backbone == "dreamerv3" else None, [
        f"backbone={backbone}", f"logdir={logdir}", f"env.task={TASK}", f"seed={seed}", f"run.steps={steps}",
        "run.eval_every=0", "run.report_every=0", "run.progress=false",
        *(["model.compute_dtype=float32"] if backbone == "dreamerv3" else [])])
    train(config)
    return evaluate(str(logdir), episodes=EPISODES, seed=EVAL_SEED, show=False)


def test_the_task_observes_the_birdeye_view_only():
    env = make_env(TASK)
    try:
        assert list(env.observation_space) == ["birdeye_wpt"]
        assert env.observation_space["birdeye_wpt"].shape == (32, 32, 3)
    finally:
        env.close()


@pytest.mark.slow
def test_tiny_dreamerv3_drives_the_lane_better_than_random(tmp_path):
    random_policy = train_and_evaluate(tmp_path / "random", seed=0, backbone="random")
    learned = train_and_evaluate(tmp_path / "dreamerv3", seed=0)
    assert random_policy["seeds"] == learned["seeds"]
    assert learned["return"] > random_policy["return"] + MARGIN, (learned, random_policy)
    assert learned["return"] > straight_ahead_return() + MARGIN, learned
    assert learned["success_rate"] > random_policy["success_rate"], (learned, random_policy)
