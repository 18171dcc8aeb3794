"""Fixtures for the embedded simulator's tests: the project's maps and CARLA towns (read in place)."""
from __future__ import annotations

import pytest

from cardreamer.roadmap import RoadMap


@pytest.fixture(scope="session")
def town01(carla_maps_dir) -> RoadMap:
    return RoadMap.load(str(carla_maps_dir / "Town01.xodr"))


@pytest.fixture(scope="session")
def project_map():
    """Load one of the project's own maps by name."""
    return RoadMap.load
