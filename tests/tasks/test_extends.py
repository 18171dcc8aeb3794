"""``extends: <task>`` in a task YAML: a variant states only what differs from its base."""
from __future__ import annotations

import textwrap

import pytest

from cardreamer.config import build_config
from cardreamer.config_loading import ConfigError

BASE = """
task:
  name: base
  map: intersection
  desired_speed: 6.0
  rewards: {waypoint: 1.0, collision: 30.0}
"""


def _load(folder, name: str):
    return build_config(folder / f"{name}.yaml")


def _write(folder, name: str, text: str) -> None:
    (folder / f"{name}.yaml").write_text(textwrap.dedent(text))


def test_a_variant_overrides_only_what_it_states(tmp_path):
    _write(tmp_path, "base", BASE)
    _write(tmp_path, "fast", """
        extends: base
        task:
          name: fast
          desired_speed: 9.0
          rewards: {collision: 50.0}
        """)
    config, sourced = _load(tmp_path, "fast")
    assert (config.task.name, config.task.map, config.task.desired_speed) == ("fast", "intersection", 9.0)
    assert config.task.model_dump()["rewards"] == {"waypoint": 1.0, "collision": 50.0}  # mappings merge key by key
    assert sourced.where("task.map").startswith(str(tmp_path / "base.yaml"))
    assert sourced.where("task.desired_speed").startswith(str(tmp_path / "fast.yaml"))


def test_unknown_base_names_the_file_the_value_and_the_valid_names(tmp_path):
    _write(tmp_path, "base", BASE)
    _write(tmp_path, "variant", "extends: bsae\ntask: {name: variant}\n")
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, "variant")
    message = str(err.value)
    assert f"{tmp_path / 'variant.yaml'}:1:1" in message and "'bsae'" in message
    assert "did you mean 'base'" in message and "valid names: base" in message


@pytest.mark.parametrize("value", ["null", "[base]", "''"])
def test_extends_must_be_a_name(tmp_path, value):
    _write(tmp_path, "variant", f"extends: {value}\n")
    with pytest.raises(ConfigError, match="extends: must name a file"):
        _load(tmp_path, "variant")


def test_a_cycle_is_refused(tmp_path):
    _write(tmp_path, "a", "extends: b\n")
    _write(tmp_path, "b", "extends: a\n")
    with pytest.raises(ConfigError, match="cycle"):
        _load(tmp_path, "a")


def test_difficulty_presets_state_only_what_differs():
    """The built-in presets extend their _medium task and still validate to full configs."""
    for kind in ("right", "left"):
        medium = build_config(f"{kind}_turn_medium")[0].task
        for level in ("simple", "hard"):
            preset = build_config(f"{kind}_turn_{level}")[0].task
            assert preset.name == f"{kind}_turn_{level}" and preset.ego == medium.ego and preset.map == medium.map
