"""The console script: listing tasks, running episodes, and clean errors on bad input."""
import json
import subprocess
import sys

from cardreamer.task_registry import task_names


def cardreamer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cardreamer.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_tasks_lists_every_task_with_its_gym_id():
    result = cardreamer("tasks")
    assert result.returncode == 0, result.stderr
    for name in task_names():
        assert name in result.stdout
    assert "CarDreamer/Wpt-v0" in result.stdout


def test_run_prints_per_episode_metrics_as_json():
    result = cardreamer("run", "--task", "wpt", "--policy", "random", "--episodes", "2", "--json",
                        "--task.terminal.time_limit=30")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["episode"] for r in rows] == [0, 1]
    assert all(r["episode_length"] <= 30 for r in rows)
    assert {"success", "collision", "route_completion", "mean_speed", "terminal_reason"} <= set(rows[0])


def test_bad_input_gives_one_clear_line_and_no_traceback():
    cases = [
        (["run", "--task", "wtp"], "unknown task 'wtp'"),
        (["run", "--task", "wpt", "--task.trafic.background=3"], "did you mean 'traffic'"),
        (["run", "--task", "wpt", "--task.map=/nonexistent/map.xodr"], "map file /nonexistent/map.xodr does not exist"),
    ]
    for args, expected in cases:
        result = cardreamer(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_abbreviated_long_options_are_refused_not_guessed(tmp_path):
    result = cardreamer("run", "--task", "wpt", "--episode", "1")  # --episodes spelt short
    assert result.returncode == 2 and "unrecognized arguments: --episode 1" in result.stderr
    result = cardreamer("train", "--task", "four_lane", "--logdir", str(tmp_path / "run"), "--step", "5")
    assert result.returncode == 2 and "--step 5" in result.stderr
    assert not (tmp_path / "run").exists()
