"""Checkpoints and run directories from elsewhere: loading never runs code, damage gets one clear
line or a fallback, a stopped run saves and resumes with monotone logs."""

from __future__ import annotations

import itertools
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cardreamer.training import checkpoint, evaluate
from dreamerv3_backbone.convert_checkpoint import convert

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = ["train", "--task", "CartPole-v1", "--backbone", "random", "--eval-every", "0",
         "--run.train_fill=50", "--run.progress=false"]


def cardreamer(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cardreamer.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> str:
    """A finished run of the random backbone with one checkpoint."""
    logdir = str(tmp_path_factory.mktemp("runs") / "cartpole")
    result = cardreamer(*TRAIN, "--steps", "200", "--logdir", logdir)
    assert result.returncode == 0, result.stderr
    return logdir


@pytest.fixture
def copy_of(run_dir, tmp_path):
    target = str(tmp_path / "run")
    shutil.copytree(run_dir, target)
    return target


class _RunsAShellCommand:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_pickle_checkpoint_is_refused_without_running_it(copy_of, tmp_path):
    marker = tmp_path / "pwned"
    folder = checkpoint.checkpoint_dirs(copy_of)[-1]
    os.remove(os.path.join(folder, checkpoint.AGENT_FILE))
    with open(os.path.join(folder, checkpoint.LEGACY_AGENT_FILE), "wb") as f:
        pickle.dump({"format": "dreamerv3-state-1", "leaves": [_RunsAShellCommand(str(marker))]}, f)
    assert_one_line_error(cardreamer("eval", "--logdir", copy_of, "--episodes", "1"),
                          "agent.pkl", "pickle", "convert_checkpoint")
    assert not marker.exists()
    # Even the converter, which does unpickle, admits nothing but arrays.
    result = subprocess.run([sys.executable, "-m", "dreamerv3_backbone.convert_checkpoint", folder], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert_one_line_error(result, "agent.pkl", "posix.system" if os.name == "posix" else "system")
    assert not marker.exists()


def test_an_npz_checkpoint_with_pickled_objects_is_not_unpickled(copy_of, tmp_path):
    marker = tmp_path / "pwned"
    folder = checkpoint.checkpoint_dirs(copy_of)[-1]
    evil = np.array([_RunsAShellCommand(str(marker))], dtype=object)
    with open(os.path.join(folder, checkpoint.AGENT_FILE), "wb") as f:
        np.savez(f, __manifest__=evil)
    assert_one_line_error(cardreamer("eval", "--logdir", copy_of, "--episodes", "1"),
                          "no readable checkpoint", "Object arrays cannot be loaded")
    assert not marker.exists()


def test_eval_falls_back_to_an_older_checkpoint_when_the_newest_is_damaged(copy_of):
    older = checkpoint.checkpoint_dirs(copy_of)[-1]
    newest = os.path.join(os.path.dirname(older), f"{int(os.path.basename(older)) + 100:012d}")
    shutil.copytree(older, newest)
    with open(os.path.join(newest, checkpoint.AGENT_FILE), "r+b") as f:
        f.truncate(100)
    with pytest.warns(UserWarning, match="skipped unreadable checkpoints"):
        summary = evaluate(copy_of, episodes=1, show=False)
    assert summary["checkpoint"] == older
    # An explicit checkpoint folder is loaded or refused, never swapped for another.
    assert_one_line_error(cardreamer("eval", "--checkpoint", newest, "--episodes", "1"), newest)


def test_every_checkpoint_unreadable_is_one_line(copy_of):
    for folder in checkpoint.checkpoint_dirs(copy_of):
        with open(os.path.join(folder, checkpoint.AGENT_FILE), "wb") as f:
            f.write(b"not a zip file")
    assert_one_line_error(cardreamer("eval", "--logdir", copy_of, "--episodes", "1"), "no readable checkpoint")
    assert_one_line_error(cardreamer(*TRAIN, "--steps", "400", "--logdir", copy_of), "no readable checkpoint")


def test_an_old_pickle_checkpoint_converts_and_then_loads(copy_of):
    folder = checkpoint.checkpoint_dirs(copy_of)[-1]
    _, state = checkpoint.read_arrays(os.path.join(folder, checkpoint.AGENT_FILE))
    os.remove(os.path.join(folder, checkpoint.AGENT_FILE))
    with open(os.path.join(folder, checkpoint.LEGACY_AGENT_FILE), "wb") as f:  # as older versions wrote it
        pickle.dump({"rng": state["rng"], "updates": state["updates"]}, f)
    assert convert(copy_of) == os.path.join(folder, checkpoint.AGENT_FILE)
    assert checkpoint.read_arrays(os.path.join(folder, checkpoint.AGENT_FILE))[1] == state
    assert evaluate(copy_of, episodes=1, show=False)["checkpoint"] == folder


def _steps(path: str) -> list[int]:
    with open(path) as f:
        return [json.loads(line)["step"] for line in f]


def test_sigterm_saves_and_the_resumed_run_logs_monotone_steps(tmp_path):
    logdir = str(tmp_path / "run")
    args = [sys.executable, "-m", "cardreamer.cli", *TRAIN, "--steps", "10000000", "--logdir", logdir,
            "--run.log_every=0", "--run.save_every=1e9", "--run.save_every_steps=0"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = os.path.join(logdir, "metrics.jsonl")
    deadline = time.time() + 120
    while time.time() < deadline and not (os.path.exists(metrics) and len(_steps(metrics)) > 50):
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in out and "Traceback" not in err
    saved = checkpoint.load_counters(checkpoint.checkpoint_dirs(logdir)[-1])["env_steps"]
    assert saved >= max(_steps(metrics)) - 1  # the checkpoint is as new as the logs
    with open(metrics, "a") as f:  # rows a crash wrote after the checkpoint, one of them cut short
        f.write(json.dumps({"step": saved + 5, "x": 1}) + "\n" + '{"step": ')
    result = cardreamer(*TRAIN, "--steps", str(saved + 300), "--logdir", logdir, "--run.log_every=0")
    assert result.returncode == 0, result.stderr
    steps = _steps(metrics)
    assert all(a < b for a, b in itertools.pairwise(steps)) and steps[-1] == saved + 300
