"""Bad task specs and overrides stop the real CLI with one line that names the problem and where it
is (``file:line:col`` or ``command line: --the.override``), exit status 2, no traceback, and
nothing written: no run directory, no config.yaml."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cardreamer.config_loading import ConfigError
from cardreamer.env import build_config

REPO = Path(__file__).resolve().parents[2]

TASK = """\
task:
  name: crafted
  map: highway
  ego:
    spawn: {x: 30, y: 1.75, yaw: 0}
    route: random
  terminal:
    time_limit: 200
    out_of_lane: 3.0
env:
  observation:
    enabled: [birdeye_wpt]
"""
"""A valid task; each case replaces one line of it."""


def cardreamer(*args: str) -> subprocess.CompletedProcess:
    """The real console command, run from the repository so that its packages are imported."""
    return subprocess.run([sys.executable, "-m", "cardreamer.cli", *args], capture_output=True, text=True,
                          check=False, timeout=300, cwd=REPO)


def train(task: str | Path, tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return cardreamer("train", "--task", str(task), "--logdir", str(tmp_path / "run"), *overrides)


def error_line(result: subprocess.CompletedProcess, tmp_path: Path, *created: Path) -> str:
    """The one line of output of a failed command, after checking that it wrote nothing."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert sorted(tmp_path.iterdir()) == sorted(created), "the failed command wrote files"
    assert lines[0].startswith("cardreamer: error: "), output
    return lines[0].removeprefix("cardreamer: error: ")


def crafted(tmp_path: Path, old: str, new: str) -> Path:
    assert old in TASK
    path = tmp_path / "task.yaml"
    path.write_text(TASK.replace(old, new))
    return path


def test_the_crafted_task_is_valid(tmp_path):
    config, _ = build_config(crafted(tmp_path, "time_limit: 200", "time_limit: 200"))
    assert config.task.terminal == {"time_limit": 200, "out_of_lane": 3.0}


@pytest.mark.parametrize(("old", "new", "where", "message"), [
    ("time_limit: 200", "time_limit: 0", "8:5", "task.terminal.time_limit: Input should be greater than or equal to 1 (got 0)"),
    ("time_limit: 200", "time_limit: -5", "8:5", "task.terminal.time_limit: Input should be greater than or equal to 1 (got -5)"),
    ("time_limit: 200", "time_limit: abc", "8:5", "task.terminal.time_limit: Input should be a valid integer (got 'abc')"),
    ("out_of_lane: 3.0", "out_of_lane: x", "9:5", "task.terminal.out_of_lane: Input should be a valid number"),
    ("out_of_lane: 3.0", "out_of_lane: 0", "9:5", "task.terminal.out_of_lane: Input should be greater than 0 (got 0)"),
    ("time_limit: 200", "time_limt: 200", "8:5",
     "task.terminal.time_limt: unknown terminal setting 'time_limt' (did you mean 'time_limit'?)"),
    ("{x: 30, y: 1.75, yaw: 0}", "{x: .nan, y: 1.75, yaw: 0}", "5:13",
     "task.ego.spawn.x: Input should be a finite number (got nan)"),
    ("route: random", "route: [[100, .inf]]", "6:19", "task.ego.route.0.1: Input should be a finite number (got inf)"),
    ("enabled: [birdeye_wpt]", "enabled: [birdeye_wpt]\n    birdeye_wpt: {obs_rnage: 20}", "13:19",
     "env.observation.birdeye_wpt.obs_rnage: unknown key 'obs_rnage' (did you mean 'obs_range' or 'sight_range'?)"),
    ("enabled: [birdeye_wpt]", "enabled: [birdeye_wpt]\n    birdeye_wpt: {shape: [64, abc, 3]}", "13:31",
     "env.observation.birdeye_wpt.shape.1: Input should be a valid integer"),
])
def test_a_bad_value_in_a_task_file_names_its_line(tmp_path, old, new, where, message):
    path = crafted(tmp_path, old, new)
    line = error_line(train(path, tmp_path), tmp_path, path)
    assert line.startswith(f"{path}:{where}: {message}"), line


def test_an_unknown_observation_lists_names_not_configs(tmp_path):
    path = crafted(tmp_path, "enabled: [birdeye_wpt]", "enabled: [birdeye_wtp]")
    line = error_line(train(path, tmp_path), tmp_path, path)
    assert line == (f"{path}:12:15: env.observation.enabled.0: unknown observation 'birdeye_wtp' "
                    f"(did you mean 'birdeye_wpt', 'birdeye_raw' or 'birdeye_fov'?)")


@pytest.mark.parametrize(("override", "message"), [
    ("--task.trafic.background=3", "task.trafic: unknown key 'trafic' (did you mean 'traffic'?)"),
    ("--task.terminal.time_limit=0", "task.terminal.time_limit: Input should be greater than or equal to 1 (got 0)"),
    ("--env.observation.state.waypoint=3",
     "env.observation.state.waypoint: unknown key 'waypoint' (did you mean 'waypoints' or 'waypoint_spacing'?)"),
    ("--env.observation.birdeye_wpt.shape=[64,abc,3]",
     ("env.observation.birdeye_wpt.shape.1: Input should be a valid integer, unable to parse string as an "
      "integer (got 'abc')")),
    ("--env.observation.birdeye_wtp.shape=[64,64,3]",
     ("env.observation.birdeye_wtp: unknown observation 'birdeye_wtp' (did you mean 'birdeye_wpt', 'birdeye_raw' "
      "or 'birdeye_fov'?); a new one needs handler: one of birdeye, camera, collision, lidar, message, spectator, "
      "state")),
    ("--task.traffic.behavior.desired_speed=[11,6]",
     "task.traffic.behavior.desired_speed: [11.0, 6.0] must be [min, max] with min <= max"),
    ("--env.observation.birdeye_wpt.handler=birdseye",
     "env.observation.birdeye_wpt.handler: unknown handler 'birdseye' (did you mean 'birdeye'?)"),
    ("--task.parts.lead_vehicle.lead_distanse=5",
     ("task.parts.lead_vehicle.lead_distanse: unknown key 'lead_distanse' (did you mean 'lead_distance', "
      "'overtake_distance' or 'lead_speed'?)")),
    ("--task.rewards.overtake=1",
     ("task.rewards.overtake: reward term 'overtake' needs fact overtake_done, which no part of this task provides; "
      "add parts: {lead_vehicle: {}}")),
])
def test_a_bad_override_names_the_command_line(tmp_path, override, message):
    line = error_line(train("four_lane", tmp_path, override), tmp_path)
    assert line == f"command line: {override}: {message}"


def test_run_reports_an_override_typo_the_same_way(tmp_path):
    result = cardreamer("run", "--task", "four_lane", "--episodes", "1", "--task.trafic.background=3")
    line = error_line(result, tmp_path)
    assert line == "command line: --task.trafic.background=3: task.trafic: unknown key 'trafic' (did you mean 'traffic'?)"


def test_a_task_file_with_the_old_logic_key_is_one_line_saying_what_replaced_it(tmp_path):
    path = crafted(tmp_path, "  terminal:\n", "  logic: lead_vehicle\n  params: {lead_distance: 25}\n  terminal:\n")
    line = error_line(train(path, tmp_path), tmp_path, path)
    assert line == (f"{path}:7:3: task.logic: 'logic:' and 'params:' were replaced by 'parts:', each part with its "
                    "own params: write parts: {lead_vehicle: {lead_distance: 25}} (see docs/authoring.md)")


def test_a_plugin_that_fails_to_import_is_one_line_naming_the_task_file(tmp_path):
    plugin = tmp_path / "broken_plugin.py"
    plugin.write_text("raise ZeroDivisionError('no')\n")
    path = tmp_path / "task.yaml"
    path.write_text("plugins: [broken_plugin.py]\n" + TASK)
    line = error_line(train(path, tmp_path), tmp_path, path, plugin)
    assert line == (f"{path}:1:11: plugins: plugin file {plugin} failed to import: ZeroDivisionError: no")


def test_a_misspelled_task_leaves_no_run_directory(tmp_path):
    line = error_line(train("four_lan", tmp_path), tmp_path)
    assert line == "unknown task 'four_lan' (did you mean 'four_lane'?), or pass a path to a task .yaml file"


def test_a_backbone_override_typo_leaves_no_run_directory(tmp_path):
    line = error_line(train("four_lane", tmp_path, "--model.lrr=1"), tmp_path)
    assert line.startswith("command line: unknown config key 'model.lrr'"), line


@pytest.mark.parametrize(("content", "message"), [
    (b"task:\n  name: caf\xe9\n", ": not a UTF-8 text file (byte 0xe9 at offset 17)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ": not a UTF-8 text file (byte 0x89 at offset 0)"),
    (b"task:\n  name: \x00\x01\x02\n", ":2:9: not a YAML text file: character 0x00 is not allowed in YAML"),
    (b"task: &t {name: x, self: [*t]}\n", ":1:7: invalid YAML: an alias refers to a collection that contains it (a cycle)"),
    (b"task: !!python/object/apply:os.system [echo hi]\n",
     ":1:7: invalid YAML: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
])
def test_a_file_that_is_not_a_yaml_config_is_one_line(tmp_path, content, message):
    path = tmp_path / "task.yaml"
    path.write_bytes(content)
    assert error_line(train(path, tmp_path), tmp_path, path) == f"{path}{message}"


def test_an_alias_bomb_is_refused_quickly(tmp_path):
    rows = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10^9 items expanded
    path = tmp_path / "task.yaml"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(ConfigError, match=r"task\.yaml:\d+:\d+: invalid YAML: more than 100000 keys and items"):
        build_config(path)


def test_task_validate_reports_a_binary_file_without_a_traceback(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    result = cardreamer("task", "validate", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"{path}: file: {path}: not a UTF-8 text file (byte 0x89 at offset 0)",
                                          f"{path}: INVALID (1 error, 0 warnings)"]


def test_several_problems_are_reported_together_each_with_its_place(tmp_path):
    path = crafted(tmp_path, "time_limit: 200", "time_limit: 0")
    with pytest.raises(ConfigError) as error:
        build_config(path, ["--task.ego.spawn.yaw=.inf"])
    assert [where for where, _, _ in error.value.problems] == ["command line: --task.ego.spawn.yaw=.inf",
                                                                f"{path}:8:5"]
    assert str(error.value).splitlines()[0] == "invalid configuration (2 problems):"
