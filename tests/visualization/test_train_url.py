"""`cardreamer train --url` publishing to a visualizer that is already running, over real sockets:
the run's status (phase, counters, rates), its episodes with their terminal reasons, its metrics."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml
from conftest import Viewer, wait_until
from small_envs import ReachEnv

from cardreamer.config_loading import ConfigError
from cardreamer.training.cli import register

ENV_ID = "cardreamer-test/Reach-v0"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args, extra = parser.parse_known_args(argv)
    args.overrides = extra
    return args


@pytest.fixture
def reach_env_id():
    import gymnasium as gym

    gym.register(ENV_ID, entry_point=ReachEnv)
    yield ENV_ID
    gym.registry.pop(ENV_ID)


def test_train_publishes_status_and_episodes_to_a_running_server(server, tmp_path, reach_env_id):
    logdir = tmp_path / "mine" / "reach-random"
    viewer = Viewer(server["base"], "reach-random")
    statuses, episodes = [], []
    viewer.client.on("status", statuses.append, namespace="/view")
    viewer.client.on("episodes", lambda data: episodes.extend(data["records"]), namespace="/view")
    args = _parse(["train", "--task", reach_env_id, "--backbone", "random", "--steps", "3000", "--logdir",
                   str(logdir), "--url", server["url"], "--eval-every", "1500", "--eval-episodes", "2",
                   "--run.progress=false", "--run.train_fill=200"])
    try:
        assert args.func(args) == 0
        assert wait_until(lambda: statuses and statuses[-1]["phase"] == "done", timeout=10), statuses[-1:]
    finally:
        viewer.close()
    phases = {s["phase"] for s in statuses}
    assert {"training", "evaluating", "done"} <= phases, phases
    assert statuses[-1]["env_steps"] == 3000 and statuses[-1]["steps"] == 3000 and statuses[-1]["updates"] > 0
    assert episodes and {e.get("terminal_reason") for e in episodes if e["kind"] == "train"} == {"time_limit"}
    assert viewer.steps() and "reward" in viewer.steps()[-1]["info"]  # the training env's live step info
    assert not (server["logdir"] / "reach-random").exists()  # the server's own logdir is not the run's
    recorded = yaml.safe_load((logdir / "config.yaml").read_text())["run"]
    assert server["token"] not in str(recorded) and recorded["serve"] is True


def test_train_url_is_checked_before_training(tmp_path):
    args = _parse(["train", "--task", "CartPole-v1", "--logdir", str(tmp_path), "--url", "http://127.0.0.1:9000"])
    with pytest.raises(ConfigError, match=r"--url 'http://127.0.0.1:9000' has no \?token=.*--token"):
        args.func(args)
    args = _parse(["train", "--task", "CartPole-v1", "--logdir", str(tmp_path), "--url", "127.0.0.1:9000"])
    with pytest.raises(ConfigError, match="expected the visualizer's address"):
        args.func(args)
    with pytest.raises(SystemExit):  # one or the other
        _parse(["train", "--task", "t", "--logdir", str(tmp_path), "--serve", "--url", "http://h:1/?token=t"])
    assert not list(tmp_path.iterdir())


def test_a_resumed_run_outside_the_servers_logdir_shows_its_whole_history(server, tmp_path, reach_env_id):
    """The first part of the run trained without a server; resumed with --url to a server whose
    logdir does not hold it, the page still gets every episode and metric row from the start."""
    logdir = tmp_path / "mine" / "reach-random"
    common = ["train", "--task", reach_env_id, "--backbone", "random", "--logdir", str(logdir), "--eval-every", "0",
              "--run.progress=false", "--run.train_fill=200", "--run.log_every=0"]
    first = _parse([*common, "--steps", "600"])
    assert first.func(first) == 0
    before = len((logdir / "scores.jsonl").read_text().splitlines())
    resumed = _parse([*common, "--steps", "1200", "--url", server["url"]])
    assert resumed.func(resumed) == 0
    rows = [json.loads(line) for line in (logdir / "scores.jsonl").read_text().splitlines()]
    assert len(rows) > before > 0
    viewer = Viewer(server["base"], "reach-random")
    try:
        assert sorted(e["step"] for e in viewer.history["episodes"]) == [r["step"] for r in rows]
        steps = [m["step"] for m in viewer.history["metrics"]]
        assert steps[0] <= 600 < steps[-1] == 1200
    finally:
        viewer.close()
    assert not (server["logdir"] / "reach-random").exists()
