"""Run history: incremental JSONL reading, merging live and file records, thinning."""

import itertools
import json
import logging

from visualization.history import JsonlTail, RunHistory, config_value, episode_videos, list_run_dirs


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
    assert history.add_metrics({"step": 10, "loss": 1.5}) == (None, [])  # published live and logged: same record
    assert history.add_metrics({"step": 10, "fps": 30}) == ({"step": 10, "fps": 30}, [])  # what is new at step 10
    assert history.snapshot()["metrics"] == [{"step": 10, "loss": 1.5, "fps": 30}]
    assert history.add_metrics({"loss": 2.0}) == (None, [])  # no step
    assert history.add_metrics({"step": 10**400, "loss": 2.0}) == (None, [])  # no usable step
    assert history.add_metrics({"step": 11, "big": 10**400, "loss": 2.0}) == ({"step": 11, "loss": 2.0}, [])


def test_file_and_live_copies_of_an_episode_make_one_row(tmp_path):
    # What dreamerv3_backbone writes: the file copy has the step and "episode/" keys, the live
    # copy (published to the server) has the env and plain keys; they arrive in either order.
    ep = {"return": 12.5, "length": 80, "success": 1.0, "collision": 0.0}
    file_copy = {"step": 500, **{f"episode/{k}": v for k, v in ep.items()}}
    (tmp_path / "scores.jsonl").write_text(json.dumps(file_copy) + "\n")
    history = RunHistory(tmp_path)
    live_first = history.add_episode({**ep, "return": 3.0, "env": 1})
    assert live_first == {**ep, "return": 3.0, "env": 1, "kind": "train", "id": 0}
    [from_file] = history.poll_files()[1]
    assert from_file == {"step": 500, **ep, "kind": "train", "id": 1}
    assert history.add_episode({**ep, "env": 3}) == {**from_file, "env": 3}  # completes the row
    assert history.add_episode({**ep, "env": 3}) is None  # adds nothing
    assert history.add_episode(file_copy) is None
    with open(tmp_path / "scores.jsonl", "a") as f:
        f.write(json.dumps({"step": 640, "episode/return": 3.0, **{f"episode/{k}": v for k, v in ep.items()
                                                                      if k != "return"}}) + "\n")
    assert history.poll_files()[1] == [{**live_first, "step": 640}]
    history.add_episode({**ep, "env": 0, "step": 900})  # same content, another place: another episode
    rows = history.snapshot()["episodes"]
    assert [(e["step"], e["env"]) for e in rows] == [(640, 1), (500, 3), (900, 0)]


def test_an_evaluation_is_one_row_of_kind_eval(tmp_path):
    history = RunHistory(tmp_path)
    row = history.add_episode({"step": 10_000, "eval/episodes": 4, "eval/return": 20.0,
                               "eval/success_rate": 0.5, "eval/collision_rate": 0.25, "eval/length": 90.0})
    assert row == {"step": 10_000, "episodes": 4, "return": 20.0, "success": 0.5, "collision": 0.25,
                   "length": 90.0, "kind": "eval", "id": 0}
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("eval-camera-0000010000.mp4", "eval-birdeye-0000010000.mp4", "eval-camera-0000020000.mp4",
                 "openloop-camera-0000010000.mp4", "train-birdeye_wpt-0000012340-ep37.mp4",
                 "train-camera-0000012340-ep37.mp4", "train-camera-0000020000.mp4"):
        (videos / name).write_bytes(b"")
    assert episode_videos(tmp_path) == {
        "eval": {"10000": ["eval-birdeye-0000010000.mp4", "eval-camera-0000010000.mp4"],
                 "20000": ["eval-camera-0000020000.mp4"]},
        "train": {"12340/37": ["train-birdeye_wpt-0000012340-ep37.mp4", "train-camera-0000012340-ep37.mp4"]}}


def test_runs_of_an_experiment_are_found_under_its_folder(tmp_path):
    for run in ("exp/base/seed0", "exp/base/seed1", "exp/wide/seed0", "single"):
        (tmp_path / run).mkdir(parents=True)
        (tmp_path / run / "metrics.jsonl").write_text("")
    (tmp_path / "exp" / "notes").mkdir()
    (tmp_path / "a" / "b" / "c" / "d").mkdir(parents=True)  # deeper than a run name may be
    (tmp_path / "a" / "b" / "c" / "d" / "metrics.jsonl").write_text("")
    assert sorted(list_run_dirs(tmp_path)) == ["exp/base/seed0", "exp/base/seed1", "exp/wide/seed0", "single"]


def test_config_values_are_read_as_plain_data(tmp_path):
    assert config_value(tmp_path, "report_context") is None
    (tmp_path / "config.yaml").write_text("run: {steps: 10}\nbackbone:\n  model: {report_context: 7}\n")
    assert config_value(tmp_path, "report_context") == 7
    (tmp_path / "config.yaml").write_text("!!python/object/apply:os.system ['true']\n")
    assert config_value(tmp_path, "report_context") is None


def test_snapshot_thins_evenly_and_keeps_last(tmp_path):
    history = RunHistory(tmp_path, max_points=100)
    for step in range(1000):
        history.add_metrics({"step": step, "loss": float(step)})
    metrics = history.snapshot(max_points=20)["metrics"]
    assert len(metrics) == 20
    assert metrics[-1]["step"] == 999
    assert len(history.snapshot(max_points=10_000)["metrics"]) <= 100  # memory bounded


def test_long_series_is_decimated_but_spans_the_whole_run(tmp_path):
    history = RunHistory(tmp_path, max_points=64)
    for step in range(0, 100_000, 7):
        history.add_metrics({"step": step, "loss": step / 7, **({"eval": 1.0} if step % 700 == 0 else {})})
    records = history.snapshot(max_points=10_000)["metrics"]
    for key, last in (("loss", 99_995), ("eval", 99_400)):  # each series is decimated on its own
        steps = [m["step"] for m in records if key in m]
        assert 32 <= len(steps) <= 64, (key, len(steps))
        assert steps[0] == 0 and steps[-1] == last  # first and last step kept
        gaps = [b - a for a, b in itertools.pairwise(steps[:-1])]  # the latest point is off the stride
        assert max(gaps) <= 2 * min(gaps), (key, gaps)  # evenly spread over the run
    assert all(m["loss"] == m["step"] / 7 for m in records if "loss" in m)  # every kept point is a real one
    assert history.points() <= 2 * 64


def test_metric_keys_are_capped_with_one_warning(tmp_path, caplog):
    history = RunHistory(tmp_path, max_keys=8)
    with caplog.at_level(logging.WARNING):
        merged, refused = history.add_metrics({"step": 1, **{f"k{i:02d}": float(i) for i in range(20)}})
        assert len(merged) == 1 + 8 and len(refused) == 12
        assert history.add_metrics({"step": 2, "k00": 1.0, "new": 2.0, "x" * 300: 3.0}) == (
            {"step": 2, "k00": 1.0}, ["new", "x" * 300])
    assert len([r for r in caplog.records if "metric key" in r.getMessage()]) == 1
    assert "at most 8 metric keys" in history.refusal(refused)
    assert history.points() == 9


def test_oversized_episodes_are_refused(tmp_path, caplog):
    (tmp_path / "scores.jsonl").write_text(json.dumps({"step": 1, "notes": "x" * 10_000}) + "\n"
                                           + json.dumps({"step": 2, "return": 1.0}) + "\n")
    history = RunHistory(tmp_path, max_episodes=10)
    with caplog.at_level(logging.WARNING):
        assert [e["step"] for e in history.poll_files()[1]] == [2]
    assert "scores.jsonl: an episode record of" in caplog.text
    for step in range(3, 40):
        history.add_episode({"step": step})
    assert len(history.snapshot()["episodes"]) <= 10


def test_list_run_dirs(tmp_path):
    (tmp_path / "run-a").mkdir()
    (tmp_path / "run-a" / "metrics.jsonl").write_text("")
    (tmp_path / "empty").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "config.yaml").write_text("")
    assert list(list_run_dirs(tmp_path)) == ["run-a"]
    assert list_run_dirs(tmp_path / "missing") == {}


def test_run_log_is_read_from_train_log_or_kept_from_publishers_when_there_is_none(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    history = RunHistory(run_dir)
    assert history.add_live_log(["2026-12-04T03:00:00Z INFO    start"]) == ["2026-12-04T03:00:00Z INFO    start"]
    assert history.snapshot()["log"] == ["2026-12-04T03:00:00Z INFO    start"]
    (run_dir / "train.log").write_text("a\nb\nhalf")  # the file is there: it is read, live lines are not kept
    assert history.poll_log() == (["a", "b"], False)
    assert history.add_live_log(["b"]) == []
    with open(run_dir / "train.log", "a") as f:
        f.write(" line\n")
    assert history.poll_log() == (["half line"], False)
    assert history.snapshot()["log"][-3:] == ["a", "b", "half line"]
    replacement = tmp_path / "new.log"
    replacement.write_text("c\n")
    replacement.replace(run_dir / "train.log")
    assert history.poll_log() == (["c"], True) and history.snapshot()["log"] == ["c"]
    with open(run_dir / "train.log", "a") as f:
        f.writelines(f"line {i}\n" for i in range(3000))
    history.poll_log()
    kept = history.snapshot()["log"]
    assert len(kept) == 2000 and kept[-1] == "line 2999"  # the newest lines of a long log
