"""`cardreamer task new`: a commented, self-contained spec that validates."""
from __future__ import annotations

import re

import pytest
import yaml

from cardreamer.cli import main
from cardreamer.config_loading import ConfigError
from cardreamer.env import build_config
from task_dev_suite.scaffold import scaffold_task
from task_dev_suite.task_validation import validate_task


@pytest.mark.parametrize("source", ["right_turn_hard", "wpt"])
def test_new_task_validates_and_keeps_the_source_settings(tmp_path, source):
    path = tmp_path / "mine.yaml"
    assert main(["task", "new", "mine", "--from", source, "-o", str(path)]) == 0
    assert validate_task(path).problems == []
    new, _ = build_config(path)
    old, _ = build_config(source)
    assert new.task.name == "mine"
    assert new.task.model_dump(exclude={"name", "description"}) == old.task.model_dump(exclude={"name", "description"})
    assert new.env.model_dump() == old.env.model_dump()


def test_every_section_is_explained(tmp_path):
    text = scaffold_task("mine", "right_turn_hard", tmp_path / "mine.yaml").read_text()
    data = yaml.safe_load(text)
    lines = text.splitlines()
    for key in data["task"]:
        at = next(i for i, line in enumerate(lines) if line.startswith(f"  {key}:"))
        assert lines[at - 1].lstrip().startswith("#"), f"section {key!r} has no comment above it"
    for term in ("waypoint", "collision", "destination"):  # registered reward terms are listed
        assert re.search(rf"#\s+{term}: ", text)
    assert "time_limit" in text and "stop_signs" in text


def test_example_flow_validates_when_uncommented(tmp_path):
    path = scaffold_task("mine", "wpt", tmp_path / "mine.yaml")
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "# flows:")
    block = []
    for line in lines[start:]:
        if not line.startswith("    # "):
            break
        block.append("    " + line[len("    # "):])
    lines[start:start + len(block)] = block
    path.write_text("\n".join(lines) + "\n")
    report = validate_task(path)
    assert report.problems == [], report.format()
    assert len(report.config.task.traffic.flows) == 1


def test_refuses_to_overwrite(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("keep me")
    with pytest.raises(ConfigError, match="already exists"):
        scaffold_task("mine", "wpt", path)
    assert path.read_text() == "keep me"
    scaffold_task("mine", "wpt", path, force=True)
    assert "task:" in path.read_text()


def test_bad_name_and_unknown_source(tmp_path):
    with pytest.raises(ConfigError, match="must be letters"):
        scaffold_task("my task!", "wpt", tmp_path / "x.yaml")
    assert main(["task", "new", "x", "--from", "right_turn_hardd", "-o", str(tmp_path / "x.yaml")]) == 2
    assert not (tmp_path / "x.yaml").exists()
