"""bench/learning_curve.py: the training-episode bins and the evaluation rows of a run."""

import importlib.util
import json
import os

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "learning_curve", os.path.join(os.path.dirname(__file__), "..", "..", "bench", "learning_curve.py"))
learning_curve = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(learning_curve)


def test_bins_episodes_by_step_and_lists_evaluations(tmp_path):
    rows = [{"step": 500, "episode/return": -10.0, "episode/length": 100, "episode/success": 0.0},
            {"step": 900, "episode/return": 30.0, "episode/length": 300, "episode/success": 1.0},
            {"step": 1500, "episode/return": 50.0, "episode/length": 200, "episode/success": 1.0},
            {"step": 1000, "eval/episodes": 4, "eval/return": 42.0, "eval/success_rate": 0.75}]
    half_written = '{"step": 1600, "episode/ret'
    (tmp_path / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + half_written)
    table = learning_curve.markdown(learning_curve.read_scores(str(tmp_path)), 1000)
    lines = table.splitlines()
    assert lines[2] == "| 0k–1k | 2 | 10.0 | 200 | — | 50% |"
    assert lines[3] == "| 1k–1.5k | 1 | 50.0 | 200 | — | 100% |"
    assert lines[-1] == "| 1,000 | 4 | 42.0 | — | — | — | 75% |"


def test_a_folder_without_scores_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no scores.jsonl"):
        learning_curve.read_scores(str(tmp_path))
