"""Replay buffer: bounded chunked storage, sequences across chunks, online queue, persistence."""

import numpy as np
import pytest

from cardreamer.training.replay import Replay, provenance


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


LATENTS = {"deter": np.zeros(3, np.float16), "stoch": np.full(2, 255, np.uint8)}


def test_latents_start_at_the_fill_values_and_are_updated_exactly_at_the_sampled_steps():
    replay = Replay(length=6, capacity=1000, chunk_size=8, online=False, seed=0, latents=LATENTS)
    _fill(replay, 40)
    batch, positions = replay.sample_with_positions(5)
    assert (batch["deter"] == 0).all() and (batch["stoch"] == 255).all()
    assert [start for _, start in positions] == batch["t"][:, 0].tolist()
    # New latents for the last 4 steps of each sequence (offset 2), distinct per (row, step).
    values = {"deter": np.arange(5 * 4 * 3, dtype=np.float16).reshape(5, 4, 3) + 1,
              "stoch": np.arange(5 * 4 * 2, dtype=np.uint8).reshape(5, 4, 2)}
    replay.update(positions, values, offset=2)
    written = {}  # step -> (deter, stoch) of the last sequence writing it
    for row, (_, start) in enumerate(positions):
        for i in range(4):
            written[start + 2 + i] = (values["deter"][row, i], values["stoch"][row, i])
    stream = positions[0][0]
    for step in range(40):
        chunk = replay.chunks[(stream, step // 8)]
        deter, stoch = chunk["deter"][step % 8], chunk["stoch"][step % 8]
        expected = written.get(step, (LATENTS["deter"], LATENTS["stoch"]))
        np.testing.assert_array_equal(deter, expected[0])
        np.testing.assert_array_equal(stoch, expected[1])
    assert any(s % 8 > 4 for s in written) and any(s % 8 < 2 for s in written)  # some rows crossed a chunk edge
    with pytest.raises(KeyError, match=r"\['t'\] are not latent keys"):
        replay.update(positions, {"t": np.zeros((5, 4), np.int64)})
    with pytest.raises(KeyError, match=r"\['deter'\] are latent keys"):
        replay.add({"t": np.int64(0), "image": np.zeros((2, 2, 1), np.uint8), "env": np.int64(0),
                    "deter": np.zeros(3, np.float16)})
    assert len(replay) == 40


def test_latents_survive_save_and_load_and_only_their_files_are_rewritten(tmp_path):
    replay = Replay(length=4, capacity=100, chunk_size=8, online=False, seed=0, latents=LATENTS)
    _fill(replay, 30)
    _, positions = replay.sample_with_positions(6)
    rng = np.random.default_rng(0)
    replay.update(positions, {"deter": rng.normal(size=(6, 4, 3)).astype(np.float16),
                              "stoch": rng.integers(0, 16, (6, 4, 2)).astype(np.uint8)})
    replay.save(str(tmp_path))
    inodes = {p.name: p.stat().st_ino for p in tmp_path.iterdir()}
    assert sorted(inodes) == sorted(f"{s}-{n:08d}{x}" for s, n in replay.chunks for x in (".npz", ".latent.npz"))
    restored = Replay(length=4, capacity=100, chunk_size=8, online=False, seed=0, latents=LATENTS)
    restored.load(str(tmp_path))
    assert list(restored.chunks) == list(replay.chunks)
    for key, chunk in replay.chunks.items():
        size = min(8, 30 - key[1] * 8)
        for name in ("t", "deter", "stoch"):
            np.testing.assert_array_equal(restored.chunks[key][name][:size], chunk[name][:size])
            assert restored.chunks[key][name].dtype == chunk[name].dtype
    # An update rewrites the latent files of its chunks, never a chunk's steps.
    _, positions = restored.sample_with_positions(1)
    restored.update(positions, {"deter": np.ones((1, 4, 3), np.float16)})
    restored.save(str(tmp_path))
    changed = {p.name for p in tmp_path.iterdir() if p.stat().st_ino != inodes.get(p.name)}
    assert changed and all(name.endswith(".latent.npz") for name in changed)
    # A replay saved without latents (or by another model size) loads with the fill values.
    plain_dir = tmp_path / "plain"
    plain = Replay(length=4, capacity=100, chunk_size=8, online=False, seed=0)
    _fill(plain, 10)
    plain.save(str(plain_dir))
    other = Replay(length=4, capacity=100, chunk_size=8, online=False, seed=0,
                   latents={"deter": np.zeros(5, np.float16), "stoch": LATENTS["stoch"]})
    other.load(str(tmp_path))
    batch = other.sample(3)
    assert (batch["deter"] == 0).all() and batch["stoch"].shape == (3, 4, 2)
    with_latents = Replay(length=4, capacity=100, chunk_size=8, online=False, seed=0, latents=LATENTS)
    with_latents.load(str(plain_dir))
    batch = with_latents.sample(3)
    assert (batch["deter"] == 0).all() and (batch["stoch"] == 255).all() and batch["t"].max() <= 9


def test_each_step_keeps_its_env_episode_and_env_step_across_save_and_load(tmp_path):
    """Two envs with episodes of 7 and 5 steps; each sampled step's origin matches what was added."""
    replay = Replay(length=6, capacity=1000, chunk_size=8, online=False, seed=0)
    truth = {}  # (env, t in its stream) -> (episode number, step in the episode, env step)
    numbers = {}  # (env, k-th episode of the env) -> number
    for i in range(40):
        for env, length in ((0, 7), (1, 5)):
            k, step = divmod(i, length)
            if step == 0:
                numbers[env, k] = len(numbers) + 1
            replay.add({"t": np.int64(i), "env": np.int64(env), "is_first": np.bool_(step == 0)}, env=env,
                       env_step=2 * i + env)
            truth[env, i] = (numbers[env, k], step, 2 * i + env)
    batch, positions = replay.sample_with_positions(64)
    assert "__origin__" not in batch  # a backbone's batch holds what was added, nothing else
    origins = replay.origins(positions)
    assert origins.shape == (64, 6, 4)
    for row in range(64):
        for t in range(6):
            env, i = int(batch["env"][row, t]), int(batch["t"][row, t])
            assert origins[row, t].tolist() == [env, *truth[env, i]]
    assert replay.episode_of(0) == numbers[0, 39 // 7] and replay.episode_of(5) is None
    replay.save(str(tmp_path))
    restored = Replay(length=6, capacity=1000, chunk_size=8, online=False, seed=0)
    restored.load(str(tmp_path))
    again = restored.origins(positions)
    assert (again == origins).all()
    restored.add({"t": np.int64(0), "env": np.int64(0), "is_first": np.bool_(True)}, env=0, env_step=100)
    assert restored.episode_of(0) == len(numbers) + 1  # numbers go on after the loaded ones


def test_provenance_names_the_env_the_episodes_and_the_steps():
    origin = np.array([[1, 36, 18, 400], [1, 36, 19, 403], [1, 37, 0, 406], [1, 37, 1, 409]])
    assert provenance(origin) == {"env": 1, "env_steps": [400, 409], "episodes": [
        {"number": 36, "steps": [18, 19]}, {"number": 37, "steps": [0, 1]}]}
    unknown = np.full((3, 4), -1)  # steps of a replay saved before origins were kept
    assert provenance(unknown) == {"env": None, "env_steps": None, "episodes": []}


def test_a_replay_saved_before_origins_were_kept_loads_without_them(tmp_path):
    replay = Replay(length=4, capacity=100, chunk_size=8, online=False, seed=0)
    _fill(replay, 12)
    replay.save(str(tmp_path))
    for path in tmp_path.glob("*.npz"):  # as an older version wrote it: no origins
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files if k != "__origin__"}
        np.savez(path, **arrays)
    restored = Replay(length=4, capacity=100, chunk_size=8, online=False, seed=0)
    restored.load(str(tmp_path))
    batch, positions = restored.sample_with_positions(5)
    assert (restored.origins(positions) == -1).all() and batch["t"].shape == (5, 4)
    restored.add({"t": np.int64(0), "image": np.zeros((2, 2, 1), np.uint8), "env": np.int64(0)}, env=0)
    assert restored.episode_of(0) == 1
