"""The training loop with backbones plugged in through the registry: a user's own backbone,
the random baseline, checkpoints interrupted by SIGKILL, resume, evaluation and the CLI."""

import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import imageio.v3 as iio
import numpy as np
import pydantic
import pytest
import yaml
from small_envs import ReachEnv

from cardreamer.config_loading import ConfigError
from cardreamer.training import evaluate, make_config, register_backbone, train
from cardreamer.training.checkpoint import checkpoint_dirs, load_counters
from cardreamer.training.cli import config_from_args, register
from cardreamer.training.random_backbone import RandomBackbone

HERE = os.path.dirname(os.path.abspath(__file__))


class TabularQ:
    """A user's backbone: Q-learning on the argmax of the 'position' one-hot, from replayed batches."""

    batch_size, batch_length = 4, 16

    def __init__(self, obs_space, act_space, config):
        self.q = np.zeros((obs_space["position"].shape[0], act_space.n))
        self.rng = np.random.default_rng(config.seed)

    def policy(self, obs, state, mode):
        greedy = self.q[obs["position"].argmax(-1)].argmax(-1)
        explore = self.rng.random(len(greedy)) < (0.3 if mode == "train" else 0.0)
        return np.where(explore, self.rng.integers(self.q.shape[1], size=len(greedy)), greedy), state

    def train(self, batch, state):
        expected = {"position", "action", "reward", "is_first", "is_last", "is_terminal"}
        assert set(batch) == expected and all(v.shape[:2] == (4, 16) for v in batch.values()), batch.keys()
        s, a = batch["position"].argmax(-1), batch["action"]
        for t in range(s.shape[1] - 1):
            valid = ~batch["is_last"][:, t]
            target = batch["reward"][:, t + 1] + 0.9 * self.q[s[:, t + 1]].max(-1) * ~batch["is_terminal"][:, t + 1]
            np.add.at(self.q, (s[valid, t], a[valid, t]), 0.2 * (target[valid] - self.q[s[valid, t], a[valid, t]]))
        return state, {"q_mean": float(self.q.mean())}

    def report(self, batch):
        return {"q_max": float(self.q.max())}

    def save(self, path):
        with open(path, "wb") as f:
            np.save(f, self.q)

    def load(self, path):
        with open(path, "rb") as f:
            self.q = np.load(f, allow_pickle=False)


register_backbone("test_tabular_q", TabularQ)
vector_reach = functools.partial(ReachEnv, image=False)


def _config(tmp_path, backbone, steps, *extra):
    return make_config(None, [f"logdir={tmp_path}", f"backbone={backbone}", f"run.steps={steps}",
                                "run.train_fill=100", "run.progress=false", "run.eval_every=0", *extra])


def test_custom_backbone_trains_through_the_loop_and_evaluates(tmp_path):
    summary = train(_config(tmp_path, "test_tabular_q", 2000, "run.train_ratio=16"), env_fn=vector_reach)
    assert summary["env_steps"] == 2000 and summary["updates"] > 100
    assert "train/q_mean" in json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    scores = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert len(scores) == summary["episodes"] > 50
    assert {"episode/return", "episode/length", "episode/success", "episode/route_completion"} <= set(scores[0])
    result = evaluate(str(tmp_path), episodes=10, env_fn=vector_reach, json_path=str(tmp_path / "eval.json"),
                      show=False)
    assert result["episodes"] == 10 and result["return"] > 12  # a random policy gets about 3
    assert result["success_rate"] == 1.0 and 0 <= result["collision_rate"] <= 1
    assert json.loads((tmp_path / "eval.json").read_text())["return"] == result["return"]


class RecordingPublisher:
    def __init__(self):
        self.frames, self.metrics, self.episodes, self.episode_envs, self.closed = [], [], [], [], False

    def publish_metrics(self, step, metrics):
        self.metrics.append((step, metrics))

    def publish_frame(self, stream, image, env_index=0):
        assert image.dtype == np.uint8 and image.shape == (16, 16, 3)
        self.frames.append((stream, env_index))

    def publish_episode(self, metrics, env_index=0):
        self.episodes.append(metrics)
        self.episode_envs.append(env_index)

    def close(self):
        self.closed = True


def test_same_seed_gives_the_same_run(tmp_path):
    runs = []
    for name in ("a", "b"):
        train(_config(tmp_path / name, "test_tabular_q", 300, "seed=3"), env_fn=vector_reach)
        runs.append((tmp_path / name / "scores.jsonl").read_text())
    assert runs[0] == runs[1] and len(runs[0].splitlines()) >= 10


def test_random_backbone_publishes_and_writes_run_files(tmp_path):
    publisher = RecordingPublisher()
    summary = train(_config(tmp_path, "random", 300, "run.eval_every=100", "run.eval_episodes=2"),
                    env_fn=ReachEnv, publisher=publisher)
    assert summary["updates"] > 0 and summary["eval"]["episodes"] == 2
    assert len(publisher.frames) == 300 and publisher.frames[0] == ("image", 0)
    assert any("eval/return" in m for _, m in publisher.metrics) and len(publisher.episodes) >= 10
    assert not publisher.closed  # a publisher handed in is the caller's to close
    assert make_config("tiny", {"logdir": str(tmp_path)}).logdir == str(tmp_path)
    assert "model" not in yaml.safe_load((tmp_path / "config.yaml").read_text())  # random has no model config
    assert "backbone: random" in (tmp_path / "config.yaml").read_text()
    assert list((tmp_path / "videos").glob("eval-image-*.mp4"))  # episode videos of the image key
    assert not list((tmp_path / "videos").glob("train-*"))  # training episodes are recorded on request
    with pytest.raises(ConfigError, match="unknown backbone 'nope'.*random"):
        train(_config(tmp_path / "x", "nope", 10), env_fn=ReachEnv)


def test_every_nth_evaluation_is_recorded(tmp_path):
    train(_config(tmp_path, "random", 500, "run.eval_every=100", "run.eval_episodes=1", "run.video_every=2"),
          env_fn=ReachEnv)
    evaluated = [r["step"] for r in map(json.loads, (tmp_path / "scores.jsonl").read_text().splitlines())
                 if "eval/return" in r]
    recorded = sorted(int(p.stem.rsplit("-", 1)[1]) for p in (tmp_path / "videos").glob("eval-image-*.mp4"))
    assert evaluated == [100, 200, 300, 400, 500] and recorded == [100, 300, 500]


def test_every_nth_training_episode_of_env_0_is_recorded(tmp_path):
    """run.train_video_every=3: env 0's 1st, 4th, 7th... training episodes, named by the step and
    number of their row in scores.jsonl, each frame of the episode (its first observation too)."""
    publisher = RecordingPublisher()
    train(_config(tmp_path, "random", 600, "env.num_envs=2", "env.parallel=false", "run.train_video_every=3"),
          env_fn=ReachEnv, publisher=publisher)
    rows = {(r["step"], r["episode/number"]): r for r in map(json.loads, (tmp_path / "scores.jsonl").open())
            if "episode/number" in r}
    env0 = [e["number"] for e, env in zip(publisher.episodes, publisher.episode_envs) if env == 0]
    assert len(env0) >= 7 and len(env0) < len(rows)
    videos = sorted(tmp_path.glob("videos/train-*.mp4"), key=lambda p: int(p.stem.split("-ep")[1]))
    recorded = [(int(p.stem.split("-")[2]), int(p.stem.split("-ep")[1])) for p in videos]
    assert [number for _, number in recorded] == env0[::3]
    for path, key in zip(videos, recorded):
        assert path.name.startswith("train-image-")
        assert len(iio.imread(path, index=None)) == rows[key]["episode/length"] + 1


_KILLED_RUN = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {tests!r})
    from small_envs import ReachEnv
    from cardreamer.training import make_config, register_backbone, train
    from cardreamer.training.random_backbone import RandomBackbone

    class SlowSave(RandomBackbone):
        def save(self, path):  # a slow disk: the file is half written for a while
            super().save(path)
            with open(path, "rb") as f:
                data = f.read()
            with open(path, "wb") as f:
                f.write(data[:10]); f.flush(); time.sleep(0.3); f.write(data[10:])

    register_backbone("slow_random", SlowSave)
    train(make_config(None, ["logdir={logdir}", "backbone=slow_random", "run.steps=10000000",
                               "run.train_fill=50", "run.save_every=0.5", "run.progress=false",
                               "run.eval_every=0"]), env_fn=ReachEnv)
""")


def test_resume_after_sigkill_during_checkpoint_write(tmp_path):
    from cardreamer.training.random_backbone import RandomBackbone

    script = _KILLED_RUN.format(tests=os.path.dirname(HERE), logdir=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    deadline = time.time() + 120
    root = tmp_path / "checkpoints"
    try:
        while time.time() < deadline:
            partial = list(root.glob("*.tmp/agent.npz")) if root.exists() else []
            if len(checkpoint_dirs(str(tmp_path))) >= 2 and partial:
                os.kill(proc.pid, signal.SIGKILL)  # mid-write: agent.npz is half written
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.02)
        else:
            pytest.fail("the run never wrote two checkpoints")
    finally:
        proc.kill()
        proc.wait()
    assert list(root.glob("*.tmp"))  # the interrupted write is left behind, unrenamed
    complete = checkpoint_dirs(str(tmp_path))
    saved = load_counters(complete[-1])
    assert saved["env_steps"] > 0

    register_backbone("slow_random", RandomBackbone)
    steps = saved["env_steps"] + 200
    summary = train(make_config(None, [f"logdir={tmp_path}", "backbone=slow_random", f"run.steps={steps}",
                                         "run.train_fill=50", "run.progress=false", "run.eval_every=0"]),
                    env_fn=ReachEnv)
    assert summary["env_steps"] == steps  # continued from the checkpoint, not from zero
    assert summary["updates"] > saved["updates"]
    assert not list(root.glob("*.tmp")) and len(checkpoint_dirs(str(tmp_path))) <= 3
    assert load_counters(checkpoint_dirs(str(tmp_path))[-1])["env_steps"] == steps
    assert len(list((tmp_path / "replay").glob("*.npz"))) >= 2  # the old stream was kept


def test_cli_train_with_parallel_envs_and_eval(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))

    def parse(argv):
        args, extra = parser.parse_known_args(argv)
        args.overrides = extra  # as the cardreamer command hands over dotted overrides
        return args

    args = parse(["train", "--task", "CartPole-v1", "--backbone", "random", "--steps", "400",
                  "--logdir", str(tmp_path), "--envs", "2", "--eval-every", "0", "--run.progress=false",
                  "--run.train_fill=64"])
    config = config_from_args(args)
    assert config.env.num_envs == 2 and config.run.steps == 400 and config.env.task == "CartPole-v1"
    assert args.func(args) == 0
    assert "trained 400 env steps" in capsys.readouterr().out
    args = parse(["eval", "--logdir", str(tmp_path), "--episodes", "3", "--json"])
    assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 3 and result["success_rate"] is None and result["return"] > 0
    # env keys outside this package's config go to the CarDreamer env; typos elsewhere are errors
    args = parse(["train", "--task", "t", "--logdir", str(tmp_path), "--env.world.backend=carla"])
    assert config_from_args(args).env.overrides == ["env.world.backend=carla"]
    args = parse(["train", "--task", "t", "--logdir", str(tmp_path), "--model.lrr=1"])
    with pytest.raises(ConfigError, match=r"^command line: unknown config key 'model.lrr'.*model\.lr"):
        args.func(args)


class StatusPublisher(RecordingPublisher):
    def __init__(self):
        super().__init__()
        self.statuses, self.steps = [], []

    def publish_status(self, status):
        self.statuses.append(status)

    def publish_step(self, info, env_index=0):
        self.steps.append((env_index, info))


def test_trainer_publishes_its_phase_counters_and_rates(tmp_path):
    publisher = StatusPublisher()
    train(_config(tmp_path, "random", 400, "run.eval_every=200", "run.eval_episodes=2", "run.save_every_steps=300"),
          env_fn=ReachEnv, publisher=publisher)
    phases = [s["phase"] for s in publisher.statuses]
    first = {phase: phases.index(phase) for phase in dict.fromkeys(phases)}
    # filling the replay, then the first train step (the one that compiles), training, and the rest
    assert list(first)[:3] == ["filling", "compiling", "training"] and phases[-1] == "done"
    assert {"evaluating", "saving"} <= set(first)
    compiling = publisher.statuses[first["compiling"]]
    assert compiling["label"] == "compiling the train step" and compiling["updates"] == 0
    assert compiling["env_steps"] >= 100 and compiling["steps"] == 400
    details = [s["detail"] for s in publisher.statuses if s["phase"] == "evaluating"]
    assert details[:3] == ["episode 0/2", "episode 1/2", "episode 2/2"]
    done = publisher.statuses[-1]
    assert done["env_steps"] == 400 and done["updates"] > 0 and done["fps"] > 0 and done["eta"] == 0
    # training episodes say why they ended, in scores.jsonl and to the page; scores also as episode/score
    scores = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    episodes = [row for row in scores if "episode/return" in row]
    assert episodes and all(row["episode/terminal_reason"] == "time_limit" for row in episodes)
    assert all(row["episode/score"] == row["episode/return"] for row in episodes)
    assert publisher.episodes[0]["terminal_reason"] == "time_limit"
    # live step info of the training env: every step's reward, the episode-end info on the last one
    assert len(publisher.steps) == 400 and {env for env, _ in publisher.steps} == {0}
    assert sum(info["reward"] for _, info in publisher.steps[:20]) == episodes[0]["episode/return"]
    ends = [info for _, info in publisher.steps if "terminal_reason" in info]
    assert len(ends) == len(episodes) and ends[0]["terminal_reason"] == "time_limit" and "success" in ends[0]


def _tensorboard_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    """Scalars of the TensorBoard event files in ``logdir``, read as TFRecords of Event protos."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def _logged_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    """The scalars the run's jsonl files hold, as the outputs should have them: an evaluation's row
    is in both files and goes to the outputs once; an episode's number is a label, not a scalar."""
    def rows_of(name):
        return [json.loads(line) for line in (logdir / name).read_text().splitlines()]

    rows = rows_of("metrics.jsonl") + [row for row in rows_of("scores.jsonl") if "eval/return" not in row]
    expected: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for key, value in row.items():
            if key not in ("step", "episode/number") and isinstance(value, (int, float)) and not isinstance(value, bool):
                expected.setdefault(key, []).append((row["step"], value))
    return expected


def _assert_same_scalars(got: dict, expected: dict) -> None:
    assert {"eval/return", "episode/return", "fps/env", "env_steps"} <= set(got)
    assert set(got) == set(expected)
    for key, points in expected.items():
        assert [s for s, _ in got[key]] == [s for s, _ in points], key
        np.testing.assert_allclose([v for _, v in got[key]], [v for _, v in points], rtol=1e-6, err_msg=key)


def test_tensorboard_output_holds_the_logged_scalars(tmp_path):
    train(_config(tmp_path, "random", 300, "run.eval_every=150", "run.eval_episodes=2", "run.log_every=0",
                  "run.loggers=[tensorboard]"), env_fn=ReachEnv)
    _assert_same_scalars(_tensorboard_scalars(tmp_path), _logged_scalars(tmp_path))


def _wandb_history(logdir) -> tuple[dict[str, list[tuple[int, float]]], dict]:
    """The history and config of the offline W&B run in ``logdir``: its .wandb file is a LevelDB-style
    log (7-byte header, 32 KiB blocks of records with a 7-byte header each) of wandb Record protos."""
    import struct

    from wandb.proto.wandb_internal_pb2 import Record

    (path,) = logdir.glob("wandb/offline-run-*/run-*.wandb")
    data, block = path.read_bytes(), 32768
    offset, pending, records = 7, b"", []
    while offset + 7 <= len(data):
        left = block - offset % block
        if left < 7:  # a block's tail too short for a record header is padding
            offset += left
            continue
        _, length, kind = struct.unpack("<IHB", data[offset:offset + 7])
        payload, offset = data[offset + 7:offset + 7 + length], offset + 7 + length
        pending = payload if kind in (1, 2) else pending + payload  # full/first, then middle/last
        if kind in (1, 4):
            records.append(Record.FromString(pending))
    history: dict[str, list[tuple[int, float]]] = {}
    config = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            row = {item.nested_key[0] if item.nested_key else item.key: json.loads(item.value_json)
                   for item in record.history.item}
            for key, value in row.items():
                if not key.startswith("_"):
                    history.setdefault(key, []).append((row["_step"], value))
        elif record.WhichOneof("record_type") == "run":
            config = {item.key: json.loads(item.value_json) for item in record.run.config.update}
    return history, config


def test_wandb_offline_run_holds_the_logged_scalars(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install wandb)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = _config(tmp_path, "random", 300, "run.eval_every=150", "run.eval_episodes=2", "run.log_every=0",
                     "run.loggers=[wandb]", "run.serve_url=http://127.0.0.1:9/?token=secret")
    train(config, env_fn=ReachEnv)
    history, recorded = _wandb_history(tmp_path)
    _assert_same_scalars(history, _logged_scalars(tmp_path))
    assert recorded["backbone"] == "random" and "secret" not in json.dumps(recorded)


def test_loggers_are_checked_and_a_missing_wandb_is_one_line(tmp_path, monkeypatch, capsys):
    with pytest.raises(ValueError, match=r"^config key 'run.loggers': unknown logger 'tensorbord'.*tensorboard, wandb"):
        _config(tmp_path, "random", 10, "run.loggers=[tensorbord]")
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    train(_config(tmp_path, "random", 50, "run.loggers=[wandb]"), env_fn=ReachEnv)
    lines = [line for line in capsys.readouterr().err.splitlines() if "wandb" in line]
    assert lines == [("cardreamer: warning: run.loggers lists wandb, but the wandb package is not installed "
                      "(pip install wandb); training without it")]


class DreamingConfig(pydantic.BaseModel):
    report_context: int = 3


class Dreaming(RandomBackbone):
    """Reports an open-loop video as DreamerV3 does: two replay samples stacked, real | imagined."""

    def policy(self, obs, state=None, mode="train"):
        time.sleep(0.002)  # 1500 steps last over 3 s: a report (every second) is due
        return super().policy(obs, state, mode)

    def report(self, batch):
        real = batch["image"][:2]  # (2, T, 16, 16, 3)
        frames = np.concatenate([real, 255 - real], 3)  # (2, T, 16, 32, 3)
        return {"openloop/image": np.concatenate(list(frames), 1)}  # (T, 32, 32, 3)


register_backbone("test_dreaming", Dreaming, config=DreamingConfig)


def test_dreams_carry_their_step_context_and_samples(tmp_path):
    class DreamPublisher(RecordingPublisher):
        def __init__(self):
            super().__init__()
            self.dreams = []

        def publish_dream(self, real, imagined, step=None, context=None, rows=1, samples=None):
            self.dreams.append((real, imagined, step, context, rows, samples))

    publisher = DreamPublisher()
    train(_config(tmp_path, "test_dreaming", 1500, "run.report_every=1", "model.report_context=4", "env.num_envs=2"),
          env_fn=ReachEnv, publisher=publisher)
    assert publisher.dreams
    real, imagined, step, context, rows, samples = publisher.dreams[0]
    assert real.shape[1:] == (32, 16, 3) and imagined.shape == real.shape and np.all(imagined == 255 - real)
    assert 100 <= step <= 1500 and context == 4 and rows == 2
    # Each sample names its env, its episode(s) and their steps, and the run's env steps it spans.
    ended = {e["number"]: e for e in publisher.episodes}
    scores = {json.loads(line)["episode/number"] for line in (tmp_path / "scores.jsonl").read_text().splitlines()}
    assert scores == set(ended) and len(ended) == len(publisher.episodes)  # one number per episode
    frames = len(real)
    for _, _, step, _, _, samples in publisher.dreams:
        for sample in samples:
            assert sample["env"] in (0, 1)
            first, last = sample["env_steps"]
            assert last - first == 2 * (frames - 1) and last < step  # two envs: every other env step
            covered = sum(e["steps"][1] - e["steps"][0] + 1 for e in sample["episodes"])
            assert covered == frames and sample["episodes"]
            for episode in sample["episodes"]:
                assert 0 <= episode["steps"][0] <= episode["steps"][1] <= 20  # ReachEnv: 20 steps + first obs
                if episode["number"] in ended:
                    assert episode["steps"][1] <= ended[episode["number"]]["length"]
