"""A run directory records the task's resolved config and its map's hash: `eval` rebuilds that
task after the task file changes, says when the map file changed, and old run dirs still evaluate."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import yaml

from cardreamer.config import build_config
from cardreamer.env import make_env
from cardreamer.training import evaluate, make_config, train
from cardreamer.training.config import load_config
from cardreamer.training.envs import default_env_fn

HIGHWAY = Path(__file__).resolve().parents[2] / "cardreamer" / "maps" / "highway.xodr"


def _task(folder: Path, time_limit: int) -> Path:
    path = folder / "my_lane.yaml"
    path.write_text(f"extends: four_lane\ntask:\n  name: my_lane\n  map: {folder / 'road.xodr'}\n"
                    f"  traffic: {{background: 4}}\n  terminal: {{time_limit: {time_limit}}}\n")
    return path


def _run(tmp_path: Path) -> tuple[Path, Path]:
    shutil.copy(HIGHWAY, tmp_path / "road.xodr")
    task = _task(tmp_path, time_limit=15)
    run = tmp_path / "run"
    train(make_config(None, [f"logdir={run}", "backbone=random", f"env.task={task}", "env.overrides=[task.desired_speed=8.0]",
                             "run.steps=8", "run.train_fill=1000", "run.eval_every=0", "run.progress=false",
                             "replay.chunk_size=16"]))
    return run, task


def test_config_yaml_records_the_resolved_task_and_the_map_hash(tmp_path):
    run, _ = _run(tmp_path)
    recorded = yaml.safe_load((run / "config.yaml").read_text())["env"]
    task = tmp_path / "my_lane.yaml"
    assert recorded["task_config"] == build_config(task, ["task.desired_speed=8.0"])[0].model_dump(mode="json")
    spec = recorded["task_config"]["task"]
    assert spec["name"] == "my_lane" and spec["terminal"]["time_limit"] == 15 and spec["traffic"]["background"] == 4
    assert spec["desired_speed"] == 8.0  # the run's env.overrides
    assert spec["rewards"]["collision"] == 30.0  # from the task it extends
    assert recorded["map_sha256"] == hashlib.sha256((tmp_path / "road.xodr").read_bytes()).hexdigest()
    rebuilt = default_env_fn(load_config(str(run / "config.yaml")))()  # plays what the task file plays
    direct = make_env(str(task), ["task.desired_speed=8.0"])
    direct.action_space.seed(0)
    for seed in (1, 2):
        a, _ = rebuilt.reset(seed=seed)
        b, _ = direct.reset(seed=seed)
        for _ in range(5):
            assert all(np.array_equal(a[k], b[k]) for k in a)
            action = direct.action_space.sample()
            a, *_ = rebuilt.step(action)
            b, *_ = direct.step(action)


def test_eval_runs_the_recorded_task_after_the_task_file_changes(tmp_path, capsys):
    run, _ = _run(tmp_path)
    _task(tmp_path, time_limit=5)
    env = default_env_fn(load_config(str(run / "config.yaml")))()
    assert env.unwrapped.time_limit == 15 and env.unwrapped.config.task.traffic.background == 4
    result = evaluate(str(run), episodes=1, show=False)
    assert result["per_episode"][0]["length"] > 5 or result["per_episode"][0]["terminal_reason"] != "time_limit"
    assert "warning" not in capsys.readouterr().err


def test_eval_says_in_one_line_when_the_map_file_changed(tmp_path, capsys):
    run, _ = _run(tmp_path)
    with open(tmp_path / "road.xodr", "a") as f:
        f.write("<!-- edited -->\n")
    evaluate(str(run), episodes=1, show=False)
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert f"map '{tmp_path / 'road.xodr'}' differs from the file this run trained on" in line


def test_a_run_dir_without_the_record_still_evaluates_from_the_task_file(tmp_path):
    run, _ = _run(tmp_path)
    data = yaml.safe_load((run / "config.yaml").read_text())
    del data["env"]["task_config"], data["env"]["map_sha256"]
    (run / "config.yaml").write_text(yaml.safe_dump(data))
    _task(tmp_path, time_limit=5)
    assert default_env_fn(load_config(str(run / "config.yaml")))().unwrapped.time_limit == 5
    assert evaluate(str(run), episodes=1, show=False)["per_episode"][0]["length"] <= 5
