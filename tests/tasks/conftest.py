"""Shared helpers of the task-suite tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from cardreamer.task_registry import task_names

EMBEDDED_TASKS = [t for t in task_names() if not t.startswith("carla_")]
CARLA_TASKS = [t for t in task_names() if t.startswith("carla_")]


@pytest.fixture
def carla_maps(carla_maps_dir, monkeypatch) -> Path:
    """CARLA's towns (skips without them), also set as $CARDREAMER_CARLA_MAPS for the carla_* tasks."""
    monkeypatch.setenv("CARDREAMER_CARLA_MAPS", str(carla_maps_dir))
    return carla_maps_dir
