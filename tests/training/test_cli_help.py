"""`cardreamer train --help` and `eval --help` say what every option defaults to, and the
defaults shown for train's options are the ones a run gets."""

from __future__ import annotations

import argparse
import re

import pytest

from cardreamer.cli import build_parser
from cardreamer.training.cli import FLAG_KEYS, config_from_args


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]


@pytest.mark.parametrize("command", ["train", "eval"])
def test_every_option_that_takes_a_value_says_its_default(command):
    sub = _subparser(command)
    options = sub.format_help().split("\noptions:\n", 1)[1]
    entries = {m.group(1): " ".join(m.group(2).split())
               for m in re.finditer(r"^  (--[\w-]+)(.*?)(?=^  -|\Z)", options, re.DOTALL | re.MULTILINE)}
    given = {"--logdir", "--checkpoint"} if command == "eval" else set()  # exactly one of them is required
    takes_value = [a.option_strings[0] for a in sub._actions if a.option_strings and a.nargs != 0 and not a.required
                   and a.dest not in ("help", "plugins") and a.option_strings[0] not in given]
    assert takes_value and set(takes_value) <= set(entries)
    missing = [option for option in takes_value if "default" not in entries[option].lower()]
    assert not missing, f"{command} options without a default in --help: {missing}"


def test_the_defaults_shown_for_train_are_what_a_run_gets(tmp_path):
    sub = _subparser("train")
    text = " ".join(sub.format_help().split())
    args = sub.parse_args(["--task", "CartPole-v1", "--backbone", "random", "--logdir", str(tmp_path)])
    args.overrides = []
    config = config_from_args(args).to_dict()
    for flag, key in FLAG_KEYS.items():
        value = config
        for part in key.split("."):
            value = value[part]
        assert f"(default: {key}={value})" in text, (flag, key, value)
