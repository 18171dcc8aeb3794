"""Replay buffer: bounded chunked storage, sequences across chunks, online queue, persistence."""

import numpy as np
import pytest

from dreamerv3_backbone.replay import Replay


def _fill(replay, steps, env=0, start=0):
    for i in range(start, start + steps):
        replay.add({"t": np.int64(i), "image": np.full((2, 2, 1), i % 256, np.uint8), "env": np.int64(env)}, env=env)


def test_sequences_are_consecutive_and_may_span_chunks():
    replay = Replay(length=10, capacity=1000, chunk_size=16, online=False, seed=0)
    _fill(replay, 100)
    batch = replay.sample(64)
    assert batch["t"].shape == (64, 10) and batch["image"].shape == (64, 10, 2, 2, 1)
    assert (np.diff(batch["t"], axis=1) == 1).all()
    starts = batch["t"][:, 0]
    assert starts.min() >= 0 and starts.max() <= 90
    assert any(s % 16 > 6 for s in starts)  # some sequences cross a chunk boundary


def test_capacity_bounds_memory_and_drops_oldest_chunks():
    replay = Replay(length=8, capacity=64, chunk_size=16, online=False, seed=0)
    _fill(replay, 500)
    assert len(replay) <= 64 and len(replay.chunks) <= 5
    batch = replay.sample(32)
    assert batch["t"].min() >= 500 - 64 - 16


def test_online_queue_trains_each_fresh_sequence_first_and_once():
    replay = Replay(length=5, capacity=1000, chunk_size=8, online=True, seed=0)
    _fill(replay, 20)
    batch = replay.sample(4)
    assert sorted(batch["t"][:, 0].tolist()) == [0, 5, 10, 15]
    assert len(replay.queue) == 0
    _fill(replay, 5, start=20)
    assert replay.sample(1)["t"][0, 0] == 20


def test_streams_of_different_envs_do_not_mix():
    replay = Replay(length=6, capacity=1000, chunk_size=4, online=False, seed=1)
    for i in range(30):
        for env in range(3):
            replay.add({"t": np.int64(i), "env": np.int64(env)}, env=env)
    batch = replay.sample(50)
    assert (batch["env"] == batch["env"][:, :1]).all() and (np.diff(batch["t"], axis=1) == 1).all()


def test_save_and_load_round_trip(tmp_path):
    replay = Replay(length=4, capacity=100, chunk_size=8, online=False, seed=0)
    _fill(replay, 30)
    replay.save(str(tmp_path))
    (tmp_path / "partial.tmp").write_bytes(b"interrupted")
    restored = Replay(length=4, capacity=100, chunk_size=8, online=False, seed=0)
    restored.load(str(tmp_path))
    assert len(restored) == 30 and not list(tmp_path.glob("*.tmp"))
    batch = restored.sample(20)
    assert (np.diff(batch["t"], axis=1) == 1).all() and batch["t"].max() == 29
    _fill(restored, 10, env=0)  # a new stream after resuming
    assert len(restored) == 40


def test_sampling_before_any_full_sequence_fails_clearly():
    replay = Replay(length=10, capacity=100, chunk_size=8, online=False)
    _fill(replay, 5)
    assert not replay.ready()
    with pytest.raises(RuntimeError, match="no sequence of length 10"):
        replay.sample(2)
