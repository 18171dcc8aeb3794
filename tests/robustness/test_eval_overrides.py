"""``cardreamer eval`` takes dotted ``--task.*`` / ``--env.*`` overrides the way ``train`` does: they
change the task the run recorded for that evaluation only, the results record them in a report of
their own, and a bad one is one line naming the command line (exit 2, nothing written)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from cardreamer.training import make_config, train
from tests.robustness.test_specs import cardreamer, error_line


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A random-backbone run of four_lane with a 40-step time limit and one checkpoint."""
    logdir = tmp_path_factory.mktemp("eval") / "run"
    train(make_config(None, [f"logdir={logdir}", "backbone=random", "env.task=four_lane",
                             "env.overrides=[task.terminal.time_limit=40]", "run.steps=8", "run.train_fill=1000",
                             "run.eval_every=0", "run.progress=false", "replay.chunk_size=16"]))
    return logdir


def _eval(run: Path, *args: str):
    return cardreamer("eval", "--logdir", str(run), "--episodes", "1", "--seed", "3", "--json", "-", *args)


def _summary(result) -> dict:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout[result.stdout.index("{"):])


def test_a_task_override_changes_the_evaluated_task_and_is_recorded(run):
    config_before = (run / "config.yaml").read_text()
    plain = _summary(_eval(run))
    assert plain["overrides"] == [] and plain["per_episode"][0]["length"] > 5
    changed = _summary(_eval(run, "--task.terminal.time_limit=5", "--task.traffic.background=0"))
    assert changed["overrides"] == ["task.terminal.time_limit=5", "task.traffic.background=0"]
    assert changed["per_episode"][0]["length"] <= 5
    step = Path(changed["checkpoint"]).name
    (own,) = [p for p in (run / "eval").iterdir() if p.name != f"{step}.json"]
    assert own.name.startswith(f"{step}+") and json.loads(own.read_text())["overrides"] == changed["overrides"]
    assert json.loads((run / "eval" / f"{step}.json").read_text())["overrides"] == []
    assert (run / "config.yaml").read_text() == config_before  # the run's record is untouched


@pytest.mark.parametrize(("override", "message"), [
    ("--task.trafic.background=3", ("command line: --task.trafic.background=3: task.trafic: unknown key 'trafic' "
                                   "(did you mean 'traffic'?)")),
    ("--task.terminal.time_limit=0", ("command line: --task.terminal.time_limit=0: task.terminal.time_limit: Input "
                                     "should be greater than or equal to 1 (got 0)")),
    ("--run.steps=5", ("command line: --run.steps=5: eval takes overrides of the run's task (--task.* and --env.* "
                      "keys of its task config), not of the run's own settings, which its checkpoint was trained "
                      "with")),
    ("--env.image_size=[64,64]", ("command line: --env.image_size=[64,64]: eval takes overrides of the run's task "
                                 "(--task.* and --env.* keys of its task config), not of the run's own settings, "
                                 "which its checkpoint was trained with")),
])
def test_a_bad_eval_override_is_one_line_and_writes_nothing(run, tmp_path, override, message):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "eval", ignore_errors=True)
    result = cardreamer("eval", "--logdir", str(copy), "--episodes", "1", override)
    assert error_line(result, tmp_path, copy) == message
    assert not (copy / "eval").exists()


def test_a_gymnasium_run_refuses_task_overrides(tmp_path):
    logdir = tmp_path / "cartpole"
    train(make_config(None, [f"logdir={logdir}", "backbone=random", "env.task=CartPole-v1", "run.steps=8",
                             "run.train_fill=1000", "run.eval_every=0", "run.progress=false"]))
    assert yaml.safe_load((logdir / "config.yaml").read_text())["env"]["task_config"] == {}
    result = cardreamer("eval", "--logdir", str(logdir), "--episodes", "1", "--task.traffic.background=3")
    assert error_line(result, tmp_path, logdir) == ("command line: --task.traffic.background=3: the run's env "
                                                    "'CartPole-v1' is a gymnasium id, which has no task.* or env.* "
                                                    "keys to override")
