"""`cardreamer collect`: recording, the episode format, policies, appending and crash safety."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from cardreamer.cli import main
from cardreamer.env import make_env
from task_dev_suite.collect import ExpertAgent, RandomAgent, collect, pack_info, run_episode
from task_dev_suite.dataset import Dataset, load_episode, read_index

ROOT = Path(__file__).resolve().parents[2]
# A short crossing on the intersection map with every kind of observation the dataset stores:
# an image, lidar points (ragged storage) and a state vector.
SPEC = """\
task:
  name: short_crossing
  map: intersection
  ego:
    spawn: {x: 60, y: -5.2}
    route: [[-40, -5.2]]
  traffic:
    background: 2
    flows:
      - spawn: {x: 5.2, y: 60}
        route: [[5.2, -60]]
  rewards: {waypoint: 1.0, speed: 1.0, collision: 10.0}
  terminal: {time_limit: 25}
env:
  observation:
    enabled: [birdeye_wpt, lidar, state]
    birdeye_wpt: {shape: [32, 32, 3]}
    lidar: {shape: [32, 32, 3], rays: 32, points: true}
"""


@pytest.fixture
def spec(tmp_path) -> Path:
    path = tmp_path / "short_crossing.yaml"
    path.write_text(SPEC)
    return path


def assert_consistent(out: Path) -> list[dict]:
    """Index lines parse, name distinct existing loadable files, and every episode file is indexed."""
    lines = (out / "index.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    files = sorted(p.name for p in out.glob("*.npz"))
    assert sorted(e["file"] for e in entries) == files
    assert len({e["seed"] for e in entries}) == len(entries)
    assert not list(out.glob(".*.tmp"))
    for entry in entries:
        episode = load_episode(out / entry["file"])
        assert episode.length == entry["length"] + 1
        assert episode.meta["seed"] == entry["seed"]
    return entries


def test_episode_format(spec, tmp_path):
    out = tmp_path / "ds"
    entries = collect(str(spec), "expert", 2, out, seed=5, progress=False)
    assert [e["seed"] for e in entries] == [5, 6]
    entry = entries[0]
    for key in ("task", "map", "seed", "policy", "config_hash", "length", "return", "success", "file"):
        assert key in entry
    assert entry["task"] == "short_crossing" and entry["map"] == "intersection" and entry["policy"] == "expert"
    ep = load_episode(out / entry["file"])
    T = ep.length
    assert T == entry["length"] + 1 and T <= 26
    assert ep["obs/birdeye_wpt"].shape == (T, 32, 32, 3) and ep["obs/birdeye_wpt"].dtype == np.uint8
    assert ep["obs/lidar"].shape == (T, 32, 32, 3)
    assert ep["obs/lidar_points"].shape == (T * 32, 3)                 # points concatenated ...
    assert np.array_equal(ep["offsets/lidar_points"], np.arange(T + 1) * 32)   # ... plus offsets
    assert ep.obs("lidar_points").shape == (T, 32, 3)
    assert ep["obs/state"].ndim == 2 and len(ep["obs/state"]) == T
    assert ep["action"].shape == (T,) and ep["action"][-1] == 0
    assert ep["reward"].dtype == np.float32 and ep["reward"][0] == 0
    assert np.isclose(ep["reward"].sum(), entry["return"])
    assert ep["is_first"].tolist() == [True] + [False] * (T - 1)
    assert ep["is_last"].tolist() == [False] * (T - 1) + [True]
    assert ep["is_terminal"][-1] == (entry["terminal_reason"] != "time_limit")
    speed = ep["info/speed"]
    assert speed.shape == (T,) and np.isnan(speed[0]) and np.all(np.isfinite(speed[1:]))
    assert ep["info/r_waypoint"].shape == (T,)
    assert json.loads(str(np.load(out / entry["file"])["meta"]))["config_hash"] == entry["config_hash"]


def test_collect_load_replay_round_trip(spec, tmp_path):
    from cardreamer.training.replay import Replay
    from task_dev_suite.dataset import fill_replay

    out = tmp_path / "ds"
    assert main(["collect", "--task", str(spec), "--policy", "expert", "--episodes", "2", "--out", str(out),
                 "--no-progress"]) == 0
    dataset = Dataset(out)
    assert len(dataset) == 2
    # the arrays on disk are exactly what a fresh run of the same seeds produces
    env = make_env(spec)
    for episode in dataset:
        arrays, _ = run_episode(env, ExpertAgent(env), episode.meta["seed"])
        assert set(arrays) == set(episode.arrays)
        for key, value in arrays.items():
            assert value.dtype == episode[key].dtype, key
            np.testing.assert_array_equal(value, episode[key], err_msg=key)
    env.close()
    # ... and the replay holds exactly the dataset's steps, episode after episode
    replay = Replay(length=8, capacity=10_000, chunk_size=16, online=False)
    added = fill_replay(replay, dataset)
    assert added == dataset.total_steps == sum(ep.length for ep in dataset)
    stream = replay.env_stream[0]
    chunks = [replay.chunks[(stream, n)] for n in range(-(-added // 16))]
    for key in ("birdeye_wpt", "lidar", "lidar_points", "state", "action", "reward", "is_first", "is_last",
                "is_terminal"):
        stored = np.concatenate([c[key] for c in chunks])[:added]
        expected = np.concatenate([ep.steps()[key] for ep in dataset])
        assert stored.dtype == expected.dtype, key
        np.testing.assert_array_equal(stored, expected, err_msg=key)
    batch = replay.sample(4)
    assert batch["birdeye_wpt"].shape == (4, 8, 32, 32, 3) and batch["lidar_points"].shape == (4, 8, 32, 3)


def test_rerun_appends_with_new_seeds(spec, tmp_path):
    out = tmp_path / "ds"
    collect(str(spec), "random", 2, out, progress=False)
    collect(str(spec), "random", 2, out, progress=False)
    entries = assert_consistent(out)
    assert [e["seed"] for e in entries] == [0, 1, 2, 3]
    assert {e["policy"] for e in entries} == {"random"}


def test_parallel_collection_matches_serial(spec, tmp_path):
    collect(str(spec), "random", 3, tmp_path / "serial", progress=False)
    collect(str(spec), "random", 3, tmp_path / "parallel", envs=2, progress=False)
    serial = {e.meta["seed"]: e for e in Dataset(tmp_path / "serial")}
    parallel = {e.meta["seed"]: e for e in Dataset(tmp_path / "parallel")}
    assert sorted(serial) == sorted(parallel) == [0, 1, 2]
    for seed, episode in serial.items():   # same seed, same episode, whichever process ran it
        for key in episode:
            np.testing.assert_array_equal(episode[key], parallel[seed][key], err_msg=key)


def test_random_policy_is_seeded(spec):
    env = make_env(spec)
    agent = RandomAgent(env)
    a, _ = run_episode(env, agent, 11)
    b, _ = run_episode(env, agent, 11)
    env.close()
    np.testing.assert_array_equal(a["action"], b["action"])
    np.testing.assert_array_equal(a["obs/birdeye_wpt"], b["obs/birdeye_wpt"])


def test_checkpoint_policy_loads_a_backbone(spec, tmp_path):
    from cardreamer.training import checkpoint
    from cardreamer.training.config import make_config
    from cardreamer.training.random_backbone import RandomBackbone

    logdir = tmp_path / "run"
    logdir.mkdir()
    config = make_config(overrides=["backbone=random", f"env.task={spec}", f"logdir={logdir}"])
    (logdir / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    env = make_env(spec)
    checkpoint.save_checkpoint(str(logdir), 100, RandomBackbone(env.observation_space, env.action_space, config).save,
                               {"env_steps": 100}, keep=1)
    env.close()
    out = tmp_path / "ds"
    entries = collect(str(spec), f"checkpoint:{logdir}", 1, out, progress=False)
    assert entries[0]["policy"] == f"checkpoint:{logdir}"
    actions = load_episode(out / entries[0]["file"])["action"]
    assert actions.min() >= 0 and actions.max() < 15 and len(set(actions.tolist())) > 3


def test_bad_policy_and_counts(spec, tmp_path, capsys):
    for argv in (["--policy", "greedy"], ["--episodes", "0"], ["--policy", "checkpoint:" + str(tmp_path / "none")],
                 ["--policy", "human", "--envs", "2"]):
        args = ["collect", "--task", str(spec), "--episodes", "1", "--out", str(tmp_path / "ds"), "--no-progress"]
        assert main(args + argv) == 2, argv
    err = capsys.readouterr().out
    assert "unknown policy 'greedy'" in err and "neither a run directory" in err


def test_pack_info_types():
    infos = [{"seed": 3, "speed": 0.0}, {"speed": 1.5, "r_time": -1.0, "terminal_reason": "x", "success": True},
             {"speed": 2.0, "success": False, "flag": True}]
    packed = pack_info(infos)
    assert packed["info/speed"].tolist() == [0.0, 1.5, 2.0]
    assert np.isnan(packed["info/seed"][1]) and packed["info/seed"][0] == 3
    assert np.isnan(packed["info/success"][0]) and packed["info/success"][1] == 1.0
    assert "info/terminal_reason" not in packed
    assert pack_info([{"a": True}, {"a": False}])["info/a"].dtype == bool
    assert pack_info([{"a": 1}, {"a": 2}])["info/a"].dtype == np.int64


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_killed_collection_leaves_a_consistent_dataset(spec, tmp_path):
    out = tmp_path / "ds"
    command = [sys.executable, "-m", "cardreamer.cli", "collect", "--task", str(spec), "--policy", "expert",
               "--episodes", "200", "--out", str(out), "--envs", "2", "--no-progress"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(read_index(out)[0]) < 3:
        assert process.poll() is None and time.monotonic() < deadline, "collection did not start"
        time.sleep(0.02)
    workers = _children(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{w}").exists() and "zombie" not in Path(f"/proc/{w}/status").read_text()
              for w in workers):
        assert time.monotonic() < deadline, "workers outlived the killed collection"
        time.sleep(0.05)
    # Whatever the kill interrupted, the index names only complete episodes ...
    indexed, _ = read_index(out)
    assert len(indexed) >= 3
    for entry in indexed:
        assert load_episode(out / entry["file"]).length == entry["length"] + 1
    # ... and the next collection repairs the rest and appends new seeds.
    collect(str(spec), "expert", 2, out, progress=False)
    entries = assert_consistent(out)
    assert len(entries) == len(indexed) + 2
    assert {e["seed"] for e in indexed} < {e["seed"] for e in entries}
