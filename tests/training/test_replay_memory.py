"""A replay that would not fit in memory is refused before training, with the figures and a
capacity that fits; one that fits (or that the run never fills) trains."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
from small_envs import ReachEnv

from cardreamer.config_loading import ConfigError
from cardreamer.training import loop, make_config, train
from cardreamer.training.replay import MEMORY_SHARE, available_memory, check_memory, step_bytes

STEP = 16 * 16 * 3 + 8 * 4 + 8 + 4 + 3 + 32  # ReachEnv: image, position, Discrete action (int64), reward, flags, origin


def _config(logdir, *extra: str):
    return make_config(None, [f"logdir={logdir}", "backbone=random", "run.train_fill=50", "run.progress=false",
                              "run.eval_every=0", "replay.chunk_size=64", *extra])


def test_step_bytes_counts_observations_action_flags_and_latents():
    obs = gym.spaces.Dict({"birdeye": gym.spaces.Box(0, 255, (128, 128, 3), np.uint8),
                           "state": gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)})
    latents = {"latent/deter": np.zeros(512, np.float16), "latent/stoch": np.zeros(32, np.uint8)}
    assert step_bytes(obs, gym.spaces.Box(-1, 1, (2,), np.float32), latents) == 49_152 + 20 + 8 + 7 + 1024 + 32 + 32
    assert step_bytes(obs, gym.spaces.Discrete(15), {}) == 49_152 + 20 + 8 + 7 + 32


def test_step_bytes_is_what_the_replay_allocates(tmp_path):
    train(_config(tmp_path, "run.steps=256"), env_fn=ReachEnv)
    replay = loop.Replay(4, 1000, 64)
    replay.load(str(tmp_path / "replay"))
    allocated = sum(a.nbytes for chunk in replay.chunks.values() for a in chunk.values())
    allocated += sum(origin.nbytes for origin in replay.origin.values())
    assert allocated == len(replay.chunks) * 64 * STEP


def test_a_replay_too_large_is_refused_with_the_figures_and_a_capacity_that_fits(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "available_memory", lambda: (10**8, "test figure"))
    with pytest.raises(ConfigError) as refused:
        train(_config(tmp_path, "run.steps=10000000"), env_fn=ReachEnv)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("replay.capacity=5000000: ")
    assert "would grow to 4.2 GB (5000064 steps of 847 B) but 80.0 MB may be used" in message
    assert f"({MEMORY_SHARE:.0%} of 100.0 MB available, test figure)" in message
    fits = int(re.search(r"replay\.capacity=(\d+) fits", message).group(1))
    assert 0.99 * (10**8 * MEMORY_SHARE / STEP - 64) < fits <= 10**8 * MEMORY_SHARE / STEP - 64
    check_memory(STEP, fits, 0, 10_000_000, 1, 64, (10**8, "test figure"))  # the advice is right
    with pytest.raises(ConfigError):
        check_memory(STEP, fits + 1000, 0, 10_000_000, 1, 64, (10**8, "test figure"))
    assert not (tmp_path / "replay").exists() and not (tmp_path / "checkpoints").exists()


def test_a_run_shorter_than_the_capacity_needs_only_its_steps(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "available_memory", lambda: (10**6, "test figure"))  # ~1200 steps fit
    assert train(_config(tmp_path, "run.steps=300"), env_fn=ReachEnv)["env_steps"] == 300
    with pytest.raises(ConfigError, match=r"grow to 1\.7 MB \(2064 steps of 847 B, 0\.3 MB of them held now\)"):
        train(_config(tmp_path, "run.steps=2000"), env_fn=ReachEnv)  # resumed: 300 held, 1700 more


def test_available_memory_reads_the_system_figure():
    found = available_memory()
    assert found is not None and 0 < found[0] and found[1]
