"""Shared fixtures. CARLA's towns are read in place from the folder named by
$CARDREAMER_CARLA_MAPS (CI points it at ../shared/carla_maps); tests that need them skip when the
variable is unset or the folder lacks the town, so a plain clone passes its tests."""
from __future__ import annotations

from pathlib import Path

import pytest
from carla_towns import carla_town_path


@pytest.fixture(autouse=True)
def _plugins_imported_by_this_test_only():
    """Forget the plugin modules a test imported: a run directory records the modules its process
    imported, and a later test's run must not record (and fail to re-import) another test's."""
    from cardreamer import plugins

    before = dict(plugins._loaded)
    yield
    plugins._loaded.clear()
    plugins._loaded.update(before)


@pytest.fixture(scope="session")
def carla_maps_dir() -> Path:
    return carla_town_path("Town04").parent


@pytest.fixture(scope="session")
def town04(carla_maps_dir):
    from cardreamer.roadmap import RoadMap

    return RoadMap.load(str(carla_maps_dir / "Town04.xodr"))
