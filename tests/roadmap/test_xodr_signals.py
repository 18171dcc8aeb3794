"""Duplicated signal ids are reported once each, with their count and roads, and the landmark
summary counts distinct ids and declarations without contradicting that report.

The map is a file the test writes: three parallel straight roads (ids 3, 7, 12) whose stop signs
reuse id 0 eight times; id 5 is declared once.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from cardreamer.roadmap.preflight import CACHE_DIR_ENV
from cardreamer.roadmap.xodr_file import read_xodr
from task_dev_suite.map_validation import validate_map

SIGNS = {3: ["0", "0", "5"], 7: ["0", "0", "0"], 12: ["0", "0", "0"]}  # road id -> signal ids on it


def _signal(sid: str, s: float) -> str:
    return (f'<signal s="{s}" t="-4.5" id="{sid}" name="Stop_{sid}" dynamic="no" orientation="+" '
            f'zOffset="2" country="OpenDRIVE" type="206" subtype="-1" value="-1" height="1" width="0.8">'
            f'<validity fromLane="-1" toLane="-1"/></signal>')


def _road(road_id: int, y: float, signal_ids: list[str]) -> str:
    lane = ('<lane id="-1" type="driving" level="false"><link/>'
            '<width sOffset="0" a="3.5" b="0" c="0" d="0"/></lane>')
    signals = "".join(_signal(sid, 10.0 + 20.0 * k) for k, sid in enumerate(signal_ids))
    return (f'<road name="r{road_id}" length="100" id="{road_id}" junction="-1"><link/><planView>'
            f'<geometry s="0" x="0" y="{y}" hdg="0" length="100"><line/></geometry></planView>'
            f'<lanes><laneSection s="0"><center><lane id="0" type="none" level="false"/></center>'
            f'<right>{lane}</right></laneSection></lanes><signals>{signals}</signals></road>')


@pytest.fixture
def duplicated(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    roads = "".join(_road(road_id, 20.0 * k, ids) for k, (road_id, ids) in enumerate(SIGNS.items()))
    path = tmp_path / "duplicated.xodr"
    path.write_text(f'<?xml version="1.0"?><OpenDRIVE><header revMajor="1" revMinor="4" name="dup"/>'
                    f"{roads}</OpenDRIVE>")
    return path


def test_a_duplicated_id_is_reported_once_with_its_count_and_roads(duplicated):
    _, info = read_xodr(duplicated)
    assert info.signal_problems == ["signal id 0 is declared 8 times (roads 3, 7, 12)"]
    assert set(info.signals) == {"0", "5"} and info.signal_declarations == 9


def test_the_landmark_check_agrees_with_the_declarations(duplicated):
    landmarks = validate_map(duplicated, grid_step=5.0, walks=1).check("landmarks")
    assert not landmarks.passed
    assert landmarks.summary.startswith("2 signal ids declared (9 declarations), ")
    assert [d for d in landmarks.details if "declared" in d] == ["signal id 0 is declared 8 times (roads 3, 7, 12)"]
