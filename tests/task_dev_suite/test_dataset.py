"""The numpy-only dataset loader: filtering, sequences, point clouds, replay steps."""
from __future__ import annotations

import json

import numpy as np
import pytest

from task_dev_suite.collect import EpisodeRecorder, append_index, repair_dataset
from task_dev_suite.dataset import Dataset, iter_replay_steps


def fake_episode(root, name: str, steps: int, seed: int, success: bool, ragged: bool = False) -> dict:
    """An episode written through the collector's own recorder, with known contents."""
    rng = np.random.default_rng(seed)
    recorder = EpisodeRecorder()
    for t in range(steps):
        n_points = int(rng.integers(1, 6)) if ragged else 4
        obs = {"image": np.full((4, 4, 3), t, np.uint8), "vector": np.array([t, seed], np.float32),
               "lidar_points": rng.normal(size=(n_points, 3)).astype(np.float32)}
        recorder.add(obs, float(t), {"speed": float(t) / 2})
        if t < steps - 1:
            recorder.actions.append(np.int64(t % 3))
    recorder.terminated = success
    arrays = recorder.pack()
    entry = {"file": name, "task": "fake", "map": "none", "seed": seed, "policy": "expert", "config_hash": "x",
             "length": steps - 1, "return": float(arrays["reward"].sum()), "success": success}
    arrays["meta"] = np.asarray(json.dumps(entry))
    np.savez_compressed(root / name, **arrays)
    append_index(root, entry)
    return entry


@pytest.fixture
def root(tmp_path):
    fake_episode(tmp_path, "a.npz", 10, 1, True)
    fake_episode(tmp_path, "b.npz", 6, 2, False)
    fake_episode(tmp_path, "c.npz", 3, 3, True)
    return tmp_path


def test_iterate_and_filter(root):
    ds = Dataset(root)
    assert len(ds) == 3 and ds.total_steps == 19
    assert [e.meta["seed"] for e in ds.filter(success=True)] == [1, 3]
    assert [e.meta["seed"] for e in ds.filter(lambda e: e["length"] > 4)] == [1, 2]
    assert len(ds.filter(task="other")) == 0
    episode = next(iter(ds))
    assert episode.obs_keys == ["image", "vector", "lidar_points"]
    assert episode.obs("image")[:, 0, 0, 0].tolist() == list(range(10))
    assert episode["info/speed"].tolist() == [t / 2 for t in range(10)]


def test_sample_sequences(root):
    ds = Dataset(root)
    batches = ds.sample_sequences(length=5, batch=8, seed=0)
    batch = next(batches)
    assert batch["image"].shape == (8, 5, 4, 4, 3) and batch["lidar_points"].shape == (8, 5, 4, 3)
    assert batch["action"].shape == (8, 5) and batch["is_first"].dtype == bool
    steps = batch["image"][:, :, 0, 0, 0].astype(int)
    assert np.all(np.diff(steps, axis=1) == 1), "windows are consecutive steps of one episode"
    assert set(batch["vector"][:, 0, 1].tolist()) <= {1.0, 2.0}, "episode c (3 steps) is too short for 5"
    again = next(Dataset(root).sample_sequences(length=5, batch=8, seed=0))
    for key in batch:
        np.testing.assert_array_equal(batch[key], again[key])
    with pytest.raises(ValueError, match="no episode"):
        next(ds.sample_sequences(length=11, batch=1))


def test_ragged_points(tmp_path):
    fake_episode(tmp_path, "r.npz", 5, 9, True, ragged=True)
    episode = next(iter(Dataset(tmp_path)))
    points = episode.points("lidar_points")
    assert len(points) == 5 and len({len(p) for p in points}) > 1
    rng = np.random.default_rng(9)
    for p in points:  # the same draws as fake_episode made
        n = int(rng.integers(1, 6))
        np.testing.assert_array_equal(p, rng.normal(size=(n, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="cannot be stacked"):
        episode.obs("lidar_points")
    steps = list(iter_replay_steps(Dataset(tmp_path), keys=["image", "vector"]))
    assert len(steps) == 5 and set(steps[0]) == {"image", "vector", "action", "reward", "is_first", "is_last",
                                                 "is_terminal"}


def test_replay_steps_follow_the_dreamer_convention(root):
    steps = list(iter_replay_steps(root, transform=lambda obs: {"image": obs["image"][::2, ::2]}))
    assert len(steps) == 19 and steps[0]["image"].shape == (2, 2, 3)
    assert [s["is_first"] for s in steps[:11]] == [True] + [False] * 9 + [True]
    assert steps[9]["is_last"] and steps[9]["is_terminal"] and steps[9]["action"] == 0
    assert steps[15]["is_last"] and not steps[15]["is_terminal"]
    assert steps[0]["reward"] == 0 and steps[1]["reward"] == 1


def test_index_damage_is_tolerated_and_repaired(root):
    (root / "index.jsonl").write_text((root / "index.jsonl").read_text() + '{"file": "d.np')  # torn last line
    (root / "b.npz").unlink()                       # an indexed file gone
    (root / "fake-00000009.npz").write_bytes(b"x")  # an episode file never indexed
    (root / "notes.npz").write_bytes(b"x")          # not an episode file: left alone
    (root / ".e.npz.123.tmp").write_bytes(b"x")     # an interrupted write
    assert [e.meta["seed"] for e in Dataset(root)] == [1, 3]
    dropped = repair_dataset(root)
    assert dropped == {"bad_lines": 1, "missing_files": 1, "orphan_files": 1, "temp_files": 1}
    assert sorted(p.name for p in root.iterdir()) == ["a.npz", "c.npz", "index.jsonl", "notes.npz"]
    assert repair_dataset(root) == {"bad_lines": 0, "missing_files": 0, "orphan_files": 0, "temp_files": 0}


def test_not_a_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no index.jsonl"):
        Dataset(tmp_path)
