"""`cardreamer task validate`: every built-in task validates; broken specs report each problem
with its YAML line and column; nothing runs on an invalid spec."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from cardreamer.cli import main
from cardreamer.config_loading import ConfigError
from cardreamer.env import make_env
from cardreamer.task_registry import TASK_DIR
from task_dev_suite.task_validation import boxes_overlap, validate_task

# A valid task on the built-in 4-way intersection: the ego comes from the east on the outer lane
# and goes straight on, a flow comes from the south and goes north.
GOOD = """\
task:
  name: crossing
  map: intersection
  ego:
    spawn: {x: 70, y: -5.2}
    route: [[-60, -5.2]]
  traffic:
    flows:
      - spawn: {x: 5.2, y: 90}
        route: [[5.2, -60]]
  terminal: {time_limit: 50}
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def only_error(report):
    assert not report.ok
    assert len(report.errors) == 1, report.format()
    return report.errors[0]


@pytest.mark.parametrize("task", sorted(TASK_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_builtin_task_validates(task, carla_maps_dir):
    report = validate_task(task, [f"--env.world.map_dir={carla_maps_dir}"])  # for the carla_town* tasks
    assert report.ok, report.format()
    assert report.config is not None and report.road_map is not None


def test_good_spec_validates_and_cli_exits_zero(tmp_path, capsys):
    path = write(tmp_path, GOOD)
    assert validate_task(path).problems == []
    assert main(["task", "validate", str(path)]) == 0
    assert "OK" in capsys.readouterr().out


def test_unknown_key_names_line_and_nearest_key(tmp_path):
    path = write(tmp_path, GOOD.replace("    route: [[-60, -5.2]]\n", "    route: [[-60, -5.2]]\n    speeed: 3\n"))
    problem = only_error(validate_task(path))
    assert problem.where == f"{path}:7:5"
    assert problem.key == "task.ego.speeed"
    assert "unknown key" in problem.message and "'speed'" in problem.message


def test_wrong_type_names_line_and_value(tmp_path):
    path = write(tmp_path, GOOD.replace("  traffic:\n", "  traffic:\n    background: two\n"))
    problem = only_error(validate_task(path))
    assert problem.where == f"{path}:8:5"
    assert problem.key == "task.traffic.background"
    assert "integer" in problem.message and "'two'" in problem.message


def test_spawn_off_road_says_where_the_lane_is(tmp_path):
    path = write(tmp_path, GOOD.replace("spawn: {x: 70, y: -5.2}", "spawn: {x: 70, y: -25}"))
    problem = only_error(validate_task(path))
    assert problem.where == f"{path}:5:5"
    assert problem.key == "task.ego.spawn"
    assert "(70.0, -25.0) is not on a driving lane" in problem.message
    assert "nearest driving lane" in problem.message and "(70.0, -5.2)" in problem.message


def test_disconnected_route_names_the_leg(tmp_path):
    # (60, 5.2) lies on the lane leaving the junction eastwards: it leads off the map, never back.
    path = write(tmp_path, GOOD.replace("spawn: {x: 5.2, y: 90}", "spawn: {x: 60, y: 5.2}"))
    problem = only_error(validate_task(path))
    assert problem.where == f"{path}:10:17"
    assert problem.key == "task.traffic.flows.0.route.0"
    assert "not reachable from the flow 0 spawn (60.0, 5.2)" in problem.message


def test_overlapping_spawns_name_both(tmp_path):
    path = write(tmp_path, GOOD.replace("spawn: {x: 5.2, y: 90}", "spawn: {x: 67, y: -5.0}")
                 .replace("route: [[5.2, -60]]", "route: [[-60, -5.2]]"))
    problem = only_error(validate_task(path))
    assert problem.where == f"{path}:9:9"
    assert problem.key == "task.traffic.flows.0.spawn"
    assert "overlaps the ego spawn" in problem.message and f"{path}:5:5" in problem.message


def test_missing_map_file(tmp_path):
    path = write(tmp_path, GOOD.replace("map: intersection", "map: maps/nowhere.xodr"))
    problem = only_error(validate_task(path))
    assert problem.where == f"{path}:3:3"
    assert problem.key == "task.map"
    assert "nowhere.xodr does not exist" in problem.message


def test_every_problem_is_reported_at_once(tmp_path, capsys):
    path = write(tmp_path, """\
        task:
          name: broken
          map: intersection
          ego:
            spawn: {x: 70, y: -25}
            speeed: 3
          traffic:
            background: two
            flows:
              - spawn: {x: 60, y: 5.2}
                route: [[5.2, -60]]
                gap: [2, 10]
          stop_signs: [[0, 60], [40, 40]]
          rewards: {waypoint: 1.0, speedd: 1.0}
          terminal: {time_limt: 10}
        """)
    report = validate_task(path)
    found = {(p.key, p.where.rsplit(":", 2)[-2]) for p in report.errors}
    assert found == {
        ("task.ego.spawn", "5"), ("task.ego.speeed", "6"), ("task.traffic.background", "8"),
        ("task.traffic.flows.0.route.0", "11"), ("task.traffic.flows.0.gap", "12"),
        ("task.stop_signs.1", "13"), ("task.rewards.speedd", "14"), ("task.terminal.time_limt", "15"),
    }, report.format()
    assert main(["task", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "INVALID (8 errors" in out
    lines = [int(line.split(":")[1]) for line in out.splitlines()[:-1]]
    assert lines == sorted(lines)


def test_observation_handler_settings_are_checked(tmp_path):
    path = write(tmp_path, GOOD + "env:\n  observation:\n    enabled: [birdeye_wpt]\n    birdeye_wpt: {shape: [64, 64]}\n")
    problem = only_error(validate_task(path))
    assert problem.key == "env.observation.birdeye_wpt.shape.2" and problem.where == f"{path}:15:19"
    assert problem.message == "item 2 is missing"


def test_wrong_way_spawn(tmp_path):
    path = write(tmp_path, GOOD.replace("spawn: {x: 70, y: -5.2}", "spawn: {x: 70, y: -5.2, yaw: 0}"))
    problem = only_error(validate_task(path))
    assert problem.key == "task.ego.spawn.yaw" and "against its lane" in problem.message


def test_override_problems_point_at_the_override(tmp_path):
    report = validate_task(write(tmp_path, GOOD), ["--task.ego.spawn.x=300"])
    assert only_error(report).where == "command line: --task.ego.spawn.x=300"


def test_nothing_runs_on_an_invalid_spec(tmp_path):
    path = write(tmp_path, GOOD.replace("  traffic:\n", "  traffic:\n    background: two\n"))
    with pytest.raises(ConfigError):
        make_env(path)
    assert main(["collect", "--task", str(path), "--episodes", "1", "--out", str(tmp_path / "ds"),
                 "--no-progress"]) == 2
    assert not (tmp_path / "ds").exists()


def test_boxes_overlap():
    yaw0, yaw90 = 0.0, np.pi / 2
    assert boxes_overlap([0, 0], yaw0, [4.7, 0], yaw0)
    assert not boxes_overlap([0, 0], yaw0, [4.9, 0], yaw0)
    assert not boxes_overlap([0, 0], yaw0, [0, 2.2], yaw0)
    assert boxes_overlap([0, 0], yaw0, [3.0, 0], yaw90)       # T-bone: 2.4 + 1.05 > 3.0
    assert not boxes_overlap([0, 0], yaw0, [3.5, 0], yaw90)
    assert boxes_overlap([0, 0], np.pi / 4, [2.5, 2.5], np.pi / 4)


def test_yaml_syntax_error_has_a_position(tmp_path):
    path = write(tmp_path, "task:\n  name: x\n  map: intersection\n  ego: {spawn: [1, 2\n")
    problem = only_error(validate_task(path))
    assert problem.where == f"{path}:5:1" and "invalid YAML" in problem.message


def test_a_term_nobody_feeds_and_a_misspelled_part_param_are_reported_with_their_lines(tmp_path, capsys):
    path = write(tmp_path, GOOD.replace("  terminal: {time_limit: 50}\n",
                                        "  parts:\n"
                                        "    lead_vehicle: {lead_distanse: 5}\n"
                                        "  rewards: {waypoint: 1.0, stop_sign: 10.0}\n"
                                        "  terminal: {time_limit: 50, red_light: true}\n"))
    report = validate_task(path)
    found = {p.key: (p.where, p.message) for p in report.errors}
    assert found == {
        "task.parts.lead_vehicle.lead_distanse": (
            f"{path}:12:20", ("unknown key 'lead_distanse' (did you mean 'lead_distance', 'overtake_distance' "
                              "or 'lead_speed'?)")),
    }, report.format()  # the schema stops at the params: the facts are checked once the parts are valid
    path.write_text(path.read_text().replace("lead_distanse", "lead_distance"))
    report = validate_task(path)
    found = {p.key: (p.where, p.message) for p in report.errors}
    assert set(found) == {"task.rewards.stop_sign", "task.terminal.red_light"}, report.format()
    assert found["task.rewards.stop_sign"] == (
        f"{path}:13:28", ("reward term 'stop_sign' needs facts stop_sign_complied, stop_sign_violation, which no "
                          "part of this task provides; add parts: {traffic_rules: {}}"))
    assert found["task.terminal.red_light"][0] == f"{path}:14:30"
    assert main(["task", "validate", str(path)]) == 1
    assert "INVALID (2 errors" in capsys.readouterr().out
