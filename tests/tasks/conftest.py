"""Shared helpers of the task-suite tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from cardreamer.task_registry import task_names

SHARED_CARLA_MAPS = Path(__file__).resolve().parents[3] / "shared" / "carla_maps"
"""CARLA's OpenDRIVE towns next to the checkout (read in place, never copied or committed)."""

EMBEDDED_TASKS = [t for t in task_names() if not t.startswith("carla_")]
CARLA_TASKS = [t for t in task_names() if t.startswith("carla_")]


@pytest.fixture
def carla_maps(monkeypatch) -> Path:
    if not (SHARED_CARLA_MAPS / "Town04.xodr").is_file():
        pytest.skip(f"CARLA's Town04.xodr not found in {SHARED_CARLA_MAPS}")
    monkeypatch.setenv("CARDREAMER_CARLA_MAPS", str(SHARED_CARLA_MAPS))
    return SHARED_CARLA_MAPS
