"""The preflight's verdict cache: written whole (atomically) after the child's check, read back on the
next check of the same text, and skipped without a word when the cache cannot be written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cardreamer.roadmap.preflight import CACHE_DIR_ENV, check_with_carla
from cardreamer.roadmap.road_map import BUILTIN_MAP_DIR
from cardreamer.roadmap.xodr_file import MapFileError

ROAD = (BUILTIN_MAP_DIR / "two_lane.xodr").read_text(encoding="utf-8")  # a map CARLA reads


@pytest.fixture
def two_lane(tmp_path) -> Path:
    path = tmp_path / "two_lane.xodr"
    path.write_text(ROAD)
    return path


def test_the_verdict_is_written_whole_and_read_back(two_lane, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_DIR_ENV, str(cache))
    check_with_carla(two_lane, ROAD)
    files = list((cache / "map_checks").iterdir())
    assert len(files) == 1 and files[0].suffix == ".json"  # no temporary file left beside it
    assert json.loads(files[0].read_text())["ok"] is True
    # the next check reads the cached verdict instead of asking a child process again
    files[0].write_text(json.dumps({"ok": False, "problem": "cached verdict"}))
    with pytest.raises(MapFileError, match=r"two_lane\.xodr: cached verdict$"):
        check_with_carla(two_lane, ROAD)


def test_an_unwritable_cache_is_skipped(two_lane, tmp_path, monkeypatch):
    blocked = tmp_path / "not_a_dir"
    blocked.write_text("a file where the cache directory should be")
    monkeypatch.setenv(CACHE_DIR_ENV, str(blocked))
    check_with_carla(two_lane, ROAD)
    assert blocked.read_text() == "a file where the cache directory should be"
