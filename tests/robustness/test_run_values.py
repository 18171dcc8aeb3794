"""Nonsensical run and backbone values (zero or negative steps, batch sizes and intervals,
non-finite rates) stop ``cardreamer train`` with one line naming the key, the value and what is
valid: exit status 2, no traceback, no run directory."""
from __future__ import annotations

import pytest

from cardreamer.training.config import make_config
from tests.robustness.test_specs import error_line, train

CASES = [
    ("--steps=-3", "config key 'run.steps': Input should be greater than or equal to 1 (got -3)"),
    ("--steps=0", "config key 'run.steps': Input should be greater than or equal to 1 (got 0)"),
    ("--envs=0", "config key 'env.num_envs': Input should be greater than or equal to 1 (got 0)"),
    ("--train-ratio=nan", "config key 'run.train_ratio': Input should be a finite number (got nan)"),
    ("--run.save_every=-1", "config key 'run.save_every': Input should be greater than 0 (got -1.0)"),
    ("--run.save_every=0", "config key 'run.save_every': Input should be greater than 0 (got 0.0)"),
    ("--run.log_every=.inf", "config key 'run.log_every': Input should be a finite number (got inf)"),
    ("--run.video_fps=0", "config key 'run.video_fps': Input should be greater than or equal to 1 (got 0)"),
    ("--model.batch_size=0", "config key 'model.batch_size': Input should be greater than or equal to 1 (got 0)"),
    ("--model.batch_length=-4", "config key 'model.batch_length': Input should be greater than or equal to 1 (got -4)"),
    ("--model.lr=nan", "config key 'model.lr': Input should be a finite number (got nan)"),
    ("--model.lr=-1e-4", "config key 'model.lr': Input should be greater than 0 (got -0.0001)"),
    ("--model.lr=inf", "config key 'model.lr': Input should be a finite number (got inf)"),
    ("--model.loss_scales.rec=-1", "config key 'model.loss_scales.rec': Input should be greater than or equal to 0 (got -1.0)"),
    ("--model.lam=1.5", "config key 'model.lam': Input should be less than or equal to 1 (got 1.5)"),
    ("--model.bins=254", "config key 'model.bins': must be odd so that zero is a bin (got 254)"),
    ("--model.blocks=3", "config key 'model.blocks': must divide model.deter=512 (got 3)"),
    ("--model.compute_dtype=float16",
     "config key 'model.compute_dtype': Input should be 'auto', 'float32' or 'bfloat16' (got 'float16')"),
    ("--model.imag_last=1", "config key 'model.imag_last': must be 0 (all states) or at least 2 (got 1)"),
    ("--model.cnn_keys=[", ("config key 'model.cnn_keys': not a regular expression: unterminated character set "
                           "at position 0 (got '[')")),
    ("--replay.chunk_size=0", "config key 'replay.chunk_size': Input should be greater than or equal to 1 (got 0)"),
    ("--replay.capacity=0", "config key 'replay.capacity': Input should be greater than or equal to 1 (got 0)"),
]
FLAGS = {"--steps": "run.steps", "--envs": "env.num_envs", "--train-ratio": "run.train_ratio"}


@pytest.mark.parametrize(("override", "message"), CASES)
def test_a_nonsensical_value_is_refused_naming_key_value_and_bound(override, message):
    flag, value = override.split("=", 1)
    with pytest.raises(ValueError) as error:
        make_config("cpu", [f"{FLAGS.get(flag, flag[2:])}={value}"])
    assert str(error.value) == message


@pytest.mark.parametrize(("override", "message"), [case for case in CASES if case[0] in (
    "--steps=-3", "--train-ratio=nan", "--run.save_every=0", "--model.batch_size=0", "--model.lr=nan")])
def test_train_refuses_it_in_one_line_and_writes_nothing(tmp_path, override, message):
    line = error_line(train("CartPole-v1", tmp_path, "--size", "cpu", override), tmp_path)
    assert line == f"command line: {message}"
