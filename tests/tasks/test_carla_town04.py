"""The carla_town04_* tasks run on CARLA's Town04 read in place, and say clearly when it is missing."""
from __future__ import annotations

import pytest

from cardreamer.env import make_env
from cardreamer.expert import ExpertPolicy
from cardreamer.roadmap import MapError
from tests.tasks.conftest import CARLA_TASKS


@pytest.mark.parametrize("task", CARLA_TASKS)
def test_town04_task_runs_on_the_shared_town(task, carla_maps):
    env = make_env(task, seed=0)
    assert env.road_map.source.parent.resolve() == carla_maps.resolve()
    expert = ExpertPolicy(env)
    for _ in range(40):
        _, _, terminated, truncated, info = env.step(expert.act())
        assert not terminated, info
    assert info["speed"] > 1.0
    env.close()


def test_town04_map_dir_override(carla_maps, monkeypatch):
    monkeypatch.delenv("CARDREAMER_CARLA_MAPS")
    env = make_env("carla_town04_stop_sign", [f"--env.world.map_dir={carla_maps}"], seed=0)
    assert env.road_map.name == "Town04"
    assert any(s.id.startswith("task-stop") for s in env.road_map.signals)


def test_missing_town_names_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("CARDREAMER_CARLA_MAPS", raising=False)
    with pytest.raises(MapError) as err:
        make_env("carla_town04_four_lane", [f"--env.world.map_dir={tmp_path}"])
    message = str(err.value)
    assert "'Town04'" in message and str(tmp_path) in message and "map_dir" in message
    with pytest.raises(MapError, match="no town folder is set"):
        make_env("carla_town04_four_lane")
