"""Config errors name the file, the line, the key and the nearest valid keys."""
import textwrap

import pytest

from cardreamer.config import build_config
from cardreamer.config_loading import ConfigError
from cardreamer.task_registry import task_file


def load(tmp_path, text: str, overrides=()):
    path = tmp_path / "task.yaml"
    path.write_text(textwrap.dedent(text))
    return build_config(path, list(overrides))[0]


TASK = """
task:
  name: demo
  map: town_grid
  rewards: {waypoint: 1.0}
"""


def test_valid_task_file(tmp_path):
    config = load(tmp_path, TASK, ["--env.world.dt=0.05", "--task.traffic.background=7"])
    assert config.env.world.dt == 0.05
    assert config.task.traffic.background == 7


def test_typo_in_file_names_file_line_and_nearest_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, TASK + "  trafic: {background: 3}\n")
    message = str(err.value)
    assert "task.yaml:6:3" in message
    assert "task.trafic: unknown key 'trafic' (did you mean 'traffic'?)" in message


def test_nested_typo_and_wrong_type_reported_together(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, TASK + "  traffic: {backgrund: 3}\n  desired_speed: fast\n")
    message = str(err.value)
    assert "2 problems" in message
    assert "task.traffic.backgrund: unknown key 'backgrund' (did you mean 'background'?)" in message
    assert "task.desired_speed" in message and "'fast'" in message


def test_override_typo_is_rejected_with_nearest_key(tmp_path):
    with pytest.raises(ConfigError, match=r"^command line: --env.world.backnd=carla: env.world.backnd: unknown key 'backnd' \(did you mean 'backend'\?\)$"):
        load(tmp_path, TASK, ["--env.world.backnd=carla"])


def test_invalid_backend_value(tmp_path):
    with pytest.raises(ConfigError, match=r"env\.world\.backend.*'embeded'"):
        load(tmp_path, TASK, ["--env.world.backend=embeded"])


def test_unknown_reward_term(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown reward term 'colision' \(did you mean 'collision'\?\)"):
        load(tmp_path, TASK.replace("waypoint: 1.0", "colision: 1.0"))


def test_invalid_yaml_reports_position(tmp_path):
    with pytest.raises(ConfigError, match=r"task\.yaml:\d+:\d+: invalid YAML"):
        load(tmp_path, "task:\n  name: [unclosed\n")


def test_unknown_task_suggests_nearest():
    with pytest.raises(ConfigError, match=r"unknown task 'wtp'.*did you mean 'wpt'"):
        task_file("wtp")
