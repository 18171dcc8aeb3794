"""Where the tests find CARLA's towns: the folder named by $CARDREAMER_CARLA_MAPS, read in place."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from cardreamer.roadmap.road_map import CARLA_MAP_DIR_ENV


def carla_town_path(name: str) -> Path:
    """Path of CARLA's ``<name>.xodr`` in $CARDREAMER_CARLA_MAPS; skips the calling test when absent."""
    directory = os.environ.get(CARLA_MAP_DIR_ENV)
    path = Path(directory or ".") / f"{name}.xodr"
    if not directory or not path.is_file():
        where = f"${CARLA_MAP_DIR_ENV}={directory}" if directory else f"${CARLA_MAP_DIR_ENV} is not set"
        pytest.skip(f"needs CARLA's {name}.xodr ({where}; point it at CARLA's OpenDrive folder)")
    return path
