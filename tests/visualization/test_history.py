"""Run history: incremental JSONL reading, merging live and file records, thinning."""

import json
import logging

from visualization.history import JsonlTail, RunHistory, list_run_dirs


def test_tail_reads_only_complete_new_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = JsonlTail(path)
    assert tail.read_new() == []
    path.write_text('{"step": 1}\n{"step": 2')
    assert tail.read_new() == [{"step": 1}]
    with open(path, "a") as f:
        f.write(', "x": 3}\n')
    assert tail.read_new() == [{"step": 2, "x": 3}]
    assert tail.read_new() == []


def test_tail_restarts_on_replaced_file_and_skips_bad_lines(tmp_path, caplog):
    path = tmp_path / "scores.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n')
    tail = JsonlTail(path)
    assert len(tail.read_new()) == 2
    replacement = tmp_path / "new.jsonl"
    replacement.write_text('not json\n[1, 2]\n{"step": 9}\n')
    replacement.replace(path)
    with caplog.at_level(logging.WARNING):
        assert tail.read_new() == [{"step": 9}]
    assert "scores.jsonl line 1: not valid JSON" in caplog.text
    assert "line 2: expected a JSON object" in caplog.text


def test_metrics_merge_by_step_and_ignore_duplicates(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 10, "loss": 1.5, "note": "text"}) + "\n")
    history = RunHistory(tmp_path)
    new_metrics, _ = history.poll_files()
    assert new_metrics == [{"step": 10, "loss": 1.5}]
    assert history.add_metrics({"step": 10, "loss": 1.5}) is None  # published live and logged: same record
    assert history.add_metrics({"step": 10, "fps": 30}) == {"step": 10, "loss": 1.5, "fps": 30}
    assert history.add_metrics({"loss": 2.0}) is None  # no step


def test_episodes_deduplicate_file_and_live_copies(tmp_path):
    record = {"step": 500, "return": 12.5, "success": True}
    (tmp_path / "scores.jsonl").write_text(json.dumps(record) + "\n")
    history = RunHistory(tmp_path)
    assert history.poll_files()[1] == [record]
    assert history.add_episode({**record, "env": 3}) is None
    assert history.add_episode({"step": 600, "return": 1.0}) is not None
    assert [e["step"] for e in history.snapshot()["episodes"]] == [500, 600]


def test_snapshot_thins_evenly_and_keeps_last(tmp_path):
    history = RunHistory(tmp_path, max_records=100)
    for step in range(1000):
        history.add_metrics({"step": step, "loss": float(step)})
    metrics = history.snapshot(max_points=20)["metrics"]
    assert len(metrics) == 20
    assert metrics[-1]["step"] == 999
    assert len(history.snapshot(max_points=10_000)["metrics"]) <= 100  # memory bounded


def test_list_run_dirs(tmp_path):
    (tmp_path / "run-a").mkdir()
    (tmp_path / "run-a" / "metrics.jsonl").write_text("")
    (tmp_path / "empty").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "config.yaml").write_text("")
    assert list(list_run_dirs(tmp_path)) == ["run-a"]
    assert list_run_dirs(tmp_path / "missing") == {}
