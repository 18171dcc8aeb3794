"""`cardreamer eval` reports into the run directory (summary, seeds, one row per episode), and
`cardreamer train --from-checkpoint` starts a fresh run from another run's checkpoint."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from small_envs import ReachEnv

from cardreamer.training import checkpoint, evaluate, make_config, register_backbone, train
from cardreamer.training.random_backbone import RandomBackbone

ROOT = Path(__file__).resolve().parents[2]
ROW_KEYS = {"seed", "return", "length", "success", "collision", "route_completion", "mean_speed", "terminal_reason"}


class ReasonEnv(ReachEnv):
    """ReachEnv whose last step says why the episode ended, as CarDreamer tasks do."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if truncated:
            info["terminal_reason"] = "goal" if info["success"] else "time_limit"
        return obs, reward, terminated, truncated, info


@register_backbone("test_go_right")
class GoRight(RandomBackbone):
    """Always moves right: an episode's outcome depends on its seed only."""

    def policy(self, obs, state=None, mode="train"):
        return np.full(len(obs["is_first"]), 2), state


def _train(logdir: Path, backbone: str, steps: int, env_fn=ReasonEnv, *extra: str) -> dict:
    config = make_config(None, [f"logdir={logdir}", f"backbone={backbone}", f"run.steps={steps}", "run.train_fill=50",
                                "run.progress=false", "run.eval_every=0", *extra])
    return train(config, env_fn=env_fn)


def test_eval_writes_its_report_with_seeds_and_episode_rows(tmp_path):
    _train(tmp_path, "test_go_right", 100)
    (ckpt,) = checkpoint.checkpoint_dirs(str(tmp_path))
    result = evaluate(str(tmp_path), episodes=4, env_fn=ReasonEnv, json_path=str(tmp_path / "out.json"), show=False,
                      seed=7)
    report = json.loads((tmp_path / "eval" / f"{os.path.basename(ckpt)}.json").read_text())
    assert report == json.loads((tmp_path / "out.json").read_text()) == json.loads(json.dumps(result))
    assert report["seeds"] == [7, 8, 9, 10] and report["episodes"] == 4 and report["checkpoint"] == ckpt
    rows = report["per_episode"]
    assert [r["seed"] for r in rows] == report["seeds"] and all(set(r) == ROW_KEYS for r in rows)
    assert all(r["length"] == 20 and isinstance(r["success"], bool) for r in rows)
    assert {r["terminal_reason"] for r in rows} <= {"goal", "time_limit"}
    assert report["success_rate"] == np.mean([r["success"] for r in rows])
    assert report["return"] == pytest.approx(np.mean([r["return"] for r in rows]))
    assert len({r["return"] for r in rows}) > 1  # the seeds start episodes in different cells
    alone = evaluate(str(tmp_path), episodes=1, env_fn=ReasonEnv, show=False, seed=9)["per_episode"]
    assert alone == [rows[2]]  # an episode replays alone from its seed


def test_eval_that_cannot_write_its_report_still_returns_and_says_so(tmp_path, capsys):
    _train(tmp_path, "test_go_right", 60)
    (tmp_path / "eval").write_text("in the way")  # the report's folder cannot be made
    result = evaluate(str(tmp_path), episodes=1, env_fn=ReasonEnv, show=True)
    out, err = capsys.readouterr()
    assert result["episodes"] == 1 and "success_rate" in out and "results ->" not in out
    assert err.count("\n") == 1 and f"could not write {tmp_path / 'eval'}" in err


def cardreamer(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CARDREAMER_ALLOCATOR": "system"}
    return subprocess.run([sys.executable, "-m", "cardreamer.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_eval_command_shows_progress_prints_and_writes_json(tmp_path):
    train_args = ["train", "--task", "CartPole-v1", "--backbone", "random", "--steps", "60", "--eval-every", "0",
                  "--run.progress=false"]
    assert cardreamer(tmp_path, *train_args, "--logdir", "run").returncode == 0
    done = cardreamer(tmp_path, "eval", "--logdir", "run", "--episodes", "3", "--seed", "5", "--json", "-")
    assert done.returncode == 0, done.stderr
    assert "3/3" in done.stderr and "episode" in done.stderr  # the progress bar
    printed = json.loads(done.stdout)
    (written,) = (tmp_path / "run" / "eval").glob("*.json")
    assert json.loads(written.read_text()) == printed and printed["seeds"] == [5, 6, 7]
    assert all(r["success"] is None and r["terminal_reason"] is None for r in printed["per_episode"])
    shown = cardreamer(tmp_path, "eval", "--logdir", "run", "--episodes", "1")
    assert "success_rate" in shown.stdout and f"results -> {written}" in shown.stdout


def test_from_checkpoint_starts_a_fresh_run_from_another_runs_state(tmp_path):
    source = _train(tmp_path / "a", "random", 300)
    copy = _train(tmp_path / "b", "random", 100, ReasonEnv, f"run.from_checkpoint={tmp_path / 'a'}",
                  "run.from_checkpoint_parts=agent,replay")
    assert copy["env_steps"] == 100 and copy["updates"] > 0
    (folder,) = checkpoint.checkpoint_dirs(str(tmp_path / "b"))
    _, state = checkpoint.read_arrays(os.path.join(folder, checkpoint.AGENT_FILE))
    assert state["updates"] == source["updates"] + copy["updates"]  # the backbone carried on
    replayed = sum(len(np.load(p)["reward"]) for p in (tmp_path / "b" / "replay").glob("*.npz"))
    assert replayed == 300 + 100  # the other run's replay became this one's
    again = _train(tmp_path / "b", "random", 200, ReasonEnv, f"run.from_checkpoint={tmp_path / 'a'}")
    assert again["env_steps"] == 200  # resumes its own checkpoint, not the other run's


def test_from_checkpoint_refuses_another_layout_or_backbone_in_one_line(tmp_path):
    _train(tmp_path / "a", "random", 100)
    no_image = functools.partial(ReasonEnv, image=False)
    with pytest.raises(checkpoint.CheckpointError) as error:
        _train(tmp_path / "b", "random", 100, no_image, f"run.from_checkpoint={tmp_path / 'a'}")
    assert str(error.value) == (f"run.from_checkpoint={tmp_path / 'a'}: observation 'image' is "
                                f"Box(shape=(16, 16, 3), dtype=uint8) in the checkpoint, absent here "
                                f"(a different observation layout)")
    with pytest.raises(checkpoint.CheckpointError, match="backbone 'random' in that run, 'test_go_right' in this one"):
        _train(tmp_path / "c", "test_go_right", 100, ReasonEnv, f"run.from_checkpoint={tmp_path / 'a'}")
    with pytest.raises(checkpoint.CheckpointError, match="neither a run directory"):
        _train(tmp_path / "d", "random", 100, ReasonEnv, f"run.from_checkpoint={tmp_path / 'nowhere'}")
    with pytest.raises(ValueError, match="run.from_checkpoint_parts.*agent, replay.*'weights'"):
        make_config(None, ["backbone=random", "run.from_checkpoint_parts=weights"])
    refused = cardreamer(tmp_path, "train", "--task", "CartPole-v1", "--backbone", "random", "--steps", "10",
                         "--logdir", "e", "--from-checkpoint", str(tmp_path / "a"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.count("\n") == 1 and "observation 'image' is Box" in refused.stderr
    assert not (tmp_path / "e").exists()  # refused before anything is written
    parts = cardreamer(tmp_path, "train", "--task", "CartPole-v1", "--backbone", "random", "--logdir", "e",
                       "--from-checkpoint", str(tmp_path / "a"), "--from-checkpoint-parts", "weights")
    assert parts.returncode != 0 and "run.from_checkpoint_parts" in parts.stderr and "Traceback" not in parts.stderr
