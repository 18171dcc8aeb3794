"""Tasks composed from typed parts: params are checked, every reward term and terminal setting
is fed by a part, and a user's part and term load from a plain module named by the task file."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from cardreamer.cli import main
from cardreamer.config import build_config
from cardreamer.config_loading import ConfigError
from cardreamer.env import CarDreamerEnv, make_env
from cardreamer.rewards import REWARD_TERMS, ROUTE_FACTS
from cardreamer.task_runtime import TASK_PARTS

WPT = """\
extends: wpt
task:
  name: mine
  rewards:
    waypoint: 1.0
    overtake: 20.0
  terminal:
    red_light: true
"""


def write(folder: Path, text: str, name: str = "mine.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path, overrides: list[str] | None = None) -> dict[str, tuple[str, str]]:
    """dotted key: (where, message) of every problem building the config reports."""
    with pytest.raises(ConfigError) as err:
        build_config(path, overrides)
    return {key: (where, message) for where, key, message in err.value.problems}


def test_a_term_and_a_terminal_setting_nobody_feeds_are_rejected_with_their_lines(tmp_path):
    path = write(tmp_path, WPT)
    found = problems(path)
    assert set(found) == {"task.rewards.overtake", "task.terminal.red_light"}
    where, message = found["task.rewards.overtake"]
    assert where == f"{path}:6:5"
    assert message == ("reward term 'overtake' needs fact overtake_done, which no part of this task provides; "
                       "add parts: {lead_vehicle: {}}")
    where, message = found["task.terminal.red_light"]
    assert where == f"{path}:8:5" and "red_light_violation" in message and "traffic_rules" in message


def test_the_parts_that_provide_the_facts_make_it_valid(tmp_path):
    text = WPT + "  parts:\n    lead_vehicle: {lead_distance: 30}\n    traffic_rules: {}\n"
    config, _ = build_config(write(tmp_path, text))
    assert config.task.parts["lead_vehicle"].lead_distance == 30.0
    assert config.task.parts["traffic_rules"] == TASK_PARTS["traffic_rules"].Params()


def test_a_disabled_terminal_setting_needs_nothing(tmp_path):
    config, _ = build_config(write(tmp_path, WPT.replace("red_light: true", "red_light: false")
                                   .replace("    overtake: 20.0\n", "")))
    assert config.task.terminal["red_light"] is False


def test_a_misspelled_part_param_names_its_line_and_the_nearest_param(tmp_path):
    path = write(tmp_path, "extends: overtake\ntask:\n  parts:\n    lead_vehicle: {lead_distanse: 5}\n")
    where, message = problems(path)["task.parts.lead_vehicle.lead_distanse"]
    assert where == f"{path}:4:20"
    assert message == "unknown key 'lead_distanse' (did you mean 'lead_distance', 'overtake_distance' or 'lead_speed'?)"


def test_a_misspelled_part_param_on_the_command_line_names_the_override():
    found = problems(Path("overtake"), ["--task.parts.lead_vehicle.lead_distanse=5"])
    assert found == {"task.parts.lead_vehicle.lead_distanse": (
        "command line: --task.parts.lead_vehicle.lead_distanse=5",
        "unknown key 'lead_distanse' (did you mean 'lead_distance', 'overtake_distance' or 'lead_speed'?)")}


def test_a_mistyped_part_param_and_an_unknown_part(tmp_path):
    path = write(tmp_path, "extends: overtake\ntask:\n  parts:\n    lead_vehicle: {lead_speed: fast}\n"
                           "    trafic_rules: {}\n")
    found = problems(path)
    assert found["task.parts.lead_vehicle.lead_speed"][0] == f"{path}:4:20"
    assert "'fast'" in found["task.parts.lead_vehicle.lead_speed"][1]
    assert found["task.parts.trafic_rules"] == (f"{path}:5:5", ("unknown task part 'trafic_rules' "
                                                                "(did you mean 'traffic_rules'?)"))


def test_a_core_part_is_configured_by_its_section(tmp_path):
    found = problems(write(tmp_path, "extends: wpt\ntask:\n  parts: {route: {}}\n"))
    assert found["task.parts.route"][1] == "'route' is a core part of every task; configure it with task.ego"


def test_a_reward_term_setting_is_checked_like_a_part_param(tmp_path):
    path = write(tmp_path, "extends: overtake\ntask:\n  rewards:\n    stay_in_lane: {scale: 0.2, distanse: 3}\n")
    assert problems(path)["task.rewards.stay_in_lane.distanse"] == (
        f"{path}:4:32", "unknown key 'distanse' (did you mean 'distance'?)")
    config, _ = build_config(write(tmp_path, "extends: overtake\ntask:\n  rewards:\n"
                                             "    stay_in_lane: {scale: 0.3, distance: 3}\n", "ok.yaml"))
    assert (config.task.rewards["stay_in_lane"].scale, config.task.rewards["stay_in_lane"].distance) == (0.3, 3.0)
    assert config.task.model_dump()["rewards"]["stay_in_lane"] == {"scale": 0.3, "distance": 3.0}


def test_a_part_may_object_to_the_rest_of_the_spec(tmp_path):
    path = write(tmp_path, "extends: right_turn_random\ntask:\n  ego: {spawn: random}\n")
    where, message = problems(path)["task.ego.spawn"]
    assert where == f"{path}:3:9" and message.startswith("part random_approach turns a written approach")


@pytest.mark.parametrize("logic, hint", [
    ("logic: lead_vehicle\n  params: {lead_distance: 25.0, follow_gap: [5, 20]}",
     ("write parts: {lead_vehicle: {lead_distance: 25.0}}; write rewards: {following_distance: "
      "{scale: <its scale>, gap: [5, 20]}} (see docs/authoring.md)")),
    ("params: {out_of_lane_threshold: 0.5, stop_time: 2}",
     "write rewards: {out_of_lane: {scale: <its scale>, threshold: 0.5}}; drop stop_time (no part reads it)"),
    ("logic: route", "drop them"),
])
def test_the_old_logic_and_params_keys_say_what_replaced_them(tmp_path, logic, hint):
    path = write(tmp_path, f"task:\n  name: old\n  map: two_lane\n  {logic}\n")
    with pytest.raises(ConfigError) as err:
        build_config(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:4:3: task.{logic.split(':')[0]}: 'logic:' and 'params:' were replaced by "
                              f"'parts:', each part with its own params: ")
    assert hint in message


# ----------------------------------------------------------------------------- a user's part
USER_MODULE = '''\
"""A user's part and reward term, in a plain module next to the task file."""
import numpy as np

from cardreamer.rewards import reward_term
from cardreamer.task_runtime import TASK_PARTS, PartParams, TaskPart


@TASK_PARTS.register("{part}")
class NearestVehicle(TaskPart):
    """The distance from the ego to the nearest other vehicle."""

    class Params(PartParams):
        radius: float = 10.0

    provides = frozenset({{"{fact}"}})

    def observe(self, ctx):
        v = ctx.world.vehicles()
        others = v.xy[v.ids != ctx.ego_id]
        gap = float(np.min(np.linalg.norm(others - v.xy[v.row(ctx.ego_id)], axis=1))) if len(others) else np.inf
        ctx.facts["{fact}"] = self.gap = gap  # provides


@reward_term("{term}", needs={{"{fact}"}})
def keep_clear(ctx):
    """-1 while another vehicle is within 10 m."""
    return -1.0 if ctx.facts["{fact}"] < 10.0 else 0.0
'''

USER_TASK = """\
extends: four_lane
plugins: [{module}]
task:
  name: clear_lanes
  parts:
    {part}: {{radius: 12}}
  rewards:
    {term}: 2.0
"""


def user_plugin(folder: Path, stem: str) -> dict[str, str]:
    names = {"part": f"{stem}_part", "fact": f"{stem}_gap", "term": f"{stem}_clear"}
    (folder / f"{stem}.py").write_text(USER_MODULE.format(**names))
    return names


def test_a_user_part_and_term_from_a_plain_module_named_by_a_task_file_outside_the_builtin_tasks(tmp_path, capsys):
    names = user_plugin(tmp_path, "user_parts_file")
    assert names["term"] not in REWARD_TERMS
    path = write(tmp_path, USER_TASK.format(module="user_parts_file.py", **names))
    assert main(["task", "validate", str(path)]) == 0, capsys.readouterr()
    assert REWARD_TERMS[names["term"]].needs == {names["fact"]}
    env = make_env(path, seed=0)
    assert env.config.task.map == "highway" and env.config.task.traffic.background == 50  # from four_lane
    assert env.config.task.parts[names["part"]].radius == 12.0
    part = env.task.part(names["part"])
    for _ in range(20):
        _, reward, terminated, truncated, info = env.step(env.actions.nearest(0.0, 0.0))
        assert info[f"r_{names['term']}"] == (-2.0 if part.gap < 10.0 else 0.0)
        assert np.isclose(reward, sum(info[f"r_{t}"] for t in env.config.task.rewards))
        if terminated or truncated:
            break
    env.close()


def test_a_dotted_plugin_module_and_a_term_it_forgot_to_feed(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    names = user_plugin(tmp_path, "user_parts_dotted")
    text = USER_TASK.format(module="user_parts_dotted", **names)
    config, sourced = build_config(write(tmp_path, text))
    assert list(config.task.parts) == [names["part"]]
    assert [module for module, _ in sourced.plugins] == ["user_parts_dotted"]
    found = problems(write(tmp_path, text.replace(f"    {names['part']}: {{radius: 12}}\n", "    {}\n")
                           .replace("  parts:\n    {}\n", ""), "unfed.yaml"))
    assert found[f"task.rewards.{names['term']}"][1] == (
        f"reward term {names['term']!r} needs fact {names['fact']}, which no part of this task provides; "
        f"add parts: {{{names['part']}: {{}}}}")


def test_a_plugin_that_does_not_import_names_the_task_file_line(tmp_path):
    path = write(tmp_path, "extends: wpt\nplugins: [no_such_module_here]\n")
    with pytest.raises(ConfigError, match=rf"^{path}:2:11: plugins: plugin module 'no_such_module_here' not found"):
        build_config(path)


def test_a_part_that_does_not_provide_what_it_declares_fails_at_its_first_step(tmp_path):
    stem = "user_parts_liar"
    names = user_plugin(tmp_path, stem)
    source = (tmp_path / f"{stem}.py").read_text().replace(f'ctx.facts["{names["fact"]}"] = self.gap = gap  # provides', "pass")
    (tmp_path / f"{stem}.py").write_text(source)
    env = make_env(write(tmp_path, USER_TASK.format(module=f"{stem}.py", **names)), seed=0)
    with pytest.raises(RuntimeError, match=rf"task part {names['part']!r} declares facts it did not provide: "
                                           rf"{names['fact']}"):
        env.step(0)


def test_every_builtin_part_term_and_setting_declares_known_facts():
    provided = set(ROUTE_FACTS).union(*(cls.provides for _, cls in TASK_PARTS.items()))
    assert {"lead_vehicle", "traffic_rules", "random_approach"} <= set(TASK_PARTS)
    for name, term in REWARD_TERMS.items():
        assert term.needs <= provided, name
    env = CarDreamerEnv("overtake")
    assert set(env.task.parts) == {"lights", "route", "traffic", "lead_vehicle"}
    assert env.task.terminal_cfg["time_limit"] == 500 and env.task.terminal_cfg["red_light"] is False
    env.close()
