"""Shared fixtures: CARLA's towns are read in place from ../shared/carla_maps (never copied)."""
from __future__ import annotations

from pathlib import Path

import pytest

CARLA_MAPS = Path(__file__).resolve().parents[1].parent / "shared" / "carla_maps"


@pytest.fixture(scope="session")
def carla_maps_dir() -> Path:
    if not (CARLA_MAPS / "Town04.xodr").is_file():
        pytest.fail(f"CARLA towns expected in {CARLA_MAPS} (the project's shared/ folder)")
    return CARLA_MAPS


@pytest.fixture(scope="session")
def town04(carla_maps_dir):
    from cardreamer.roadmap import RoadMap

    return RoadMap.load(str(carla_maps_dir / "Town04.xodr"))
