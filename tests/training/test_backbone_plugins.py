"""Backbones apart from training: a user's backbone in a plain module trained with
``cardreamer train --import`` and rebuilt by ``cardreamer eval`` from its run dir; each backbone's
own config keys and presets; a preset's training settings stated and recorded; old run dirs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from cardreamer.config_loading import ConfigError
from cardreamer.registry import RegistryError
from cardreamer.training import checkpoint, evaluate, load_config, make_config, register_backbone
from cardreamer.training.config import config_from_file, flat_keys
from cardreamer.training.random_backbone import RandomBackbone

ROOT = Path(__file__).resolve().parents[2]

USER_MODULE = textwrap.dedent('''
    """A user's backbone: always the same action, chosen by its config; counts its updates."""
    import numpy as np
    from pydantic import BaseModel

    from cardreamer.training import Preset, register_backbone


    class MineConfig(BaseModel):
        action: int = 0
        batch_size: int = 2


    class Mine:
        batch_length = 4

        def __init__(self, obs_space, act_space, config):
            self.action, self.batch_size, self.updates = config.model.action, config.model.batch_size, 0

        def policy(self, obs, state, mode):
            return np.full(len(obs["is_first"]), self.action), state

        def train(self, batch, state):
            assert batch["action"].shape == (2, 4), batch["action"].shape
            self.updates += 1
            return state, {"updates": float(self.updates)}

        def report(self, batch):
            return {}

        def save(self, path):
            np.savez(path, updates=np.array(self.updates))

        def load(self, path):
            with np.load(path, allow_pickle=False) as data:
                self.updates = int(data["updates"])


    register_backbone("mine", Mine, config=MineConfig, command_preset="small",
                      presets={"small": Preset(model={"action": 1}, settings={"run.train_fill": 20})})
''')
TRAIN = ["train", "--task", "CartPole-v1", "--steps", "60", "--eval-every", "0", "--run.progress=false"]


def cardreamer(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``cardreamer ARGS`` in a fresh process in ``cwd`` (where the user's module lies)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CARDREAMER_ALLOCATOR": "system"}
    return subprocess.run([sys.executable, "-m", "cardreamer.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_user_backbone_from_a_module_trains_and_eval_rebuilds_it_from_the_run_dir(tmp_path):
    (tmp_path / "mymod.py").write_text(USER_MODULE)
    train = cardreamer(tmp_path, *TRAIN, "--import", "mymod", "--backbone", "mine", "--logdir", "run")
    assert train.returncode == 0, train.stderr
    assert "size preset 'small' of mine sets run.train_fill=20" in train.stdout
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["plugins"] == ["mymod"] and saved["model"] == {"action": 1, "batch_size": 2}
    assert saved["preset_settings"] == {"run.train_fill": 20} and saved["run"]["train_fill"] == 20
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])["train/updates"] > 0

    result = cardreamer(tmp_path, "eval", "--logdir", "run", "--episodes", "2", "--json")  # no --import
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["backbone"] == "mine" and summary["episodes"] == 2

    saved["plugins"] = []  # a run dir that does not say where its backbone comes from
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(saved))
    result = cardreamer(tmp_path, "eval", "--logdir", "run", "--episodes", "1")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "unknown backbone 'mine'" in result.stderr and "Traceback" not in result.stderr


def test_a_plugin_file_is_imported_again_only_when_named(tmp_path):
    (tmp_path / "mine_file.py").write_text(USER_MODULE)
    train = cardreamer(tmp_path, *TRAIN, "--import", "mine_file.py", "--backbone", "mine", "--logdir", "run",
                       "--run.train_fill=10", "--model.action=0")
    assert train.returncode == 0, train.stderr
    assert "sets" not in train.stdout  # the user set the preset's only training setting
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["preset_settings"] == {} and saved["run"]["train_fill"] == 10 and saved["model"]["action"] == 0
    result = cardreamer(tmp_path, "eval", "--logdir", "run", "--episodes", "1")
    assert result.returncode == 2 and "--import mine_file.py" in result.stderr, result.stderr
    result = cardreamer(tmp_path, "eval", "--import", "mine_file.py", "--logdir", "run", "--episodes", "1")
    assert result.returncode == 0, result.stderr


def test_random_backbone_runs_have_no_model_keys_and_no_presets(tmp_path):
    config = make_config(overrides=["backbone=random", f"logdir={tmp_path}"])
    assert config.model is None and config.size is None and "model" not in config.to_dict()
    with pytest.raises(KeyError, match="unknown config key 'model.lr'; backbone 'random' has no model config"):
        make_config(overrides=["backbone=random", "model.lr=1e-3"])
    with pytest.raises(KeyError, match="unknown size 'tiny': backbone 'random' has no size presets"):
        make_config("tiny", ["backbone=random"])


def test_cpu_preset_states_its_env_setting_and_a_user_override_wins():
    config = make_config("cpu")
    assert config.env.image_size == [48, 48] and config.preset_settings["env.image_size"] == [48, 48]
    assert config.to_dict()["preset_settings"] == {"env.image_size": [48, 48], "replay.capacity": 500_000}
    mine = make_config("cpu", ["env.image_size=[64, 64]"])
    assert mine.env.image_size == [64, 64] and "env.image_size" not in mine.preset_settings
    assert make_config("12m").preset_settings == {} and make_config("12m").env.image_size == [0, 0]
    reloaded = config_from_file(yaml.safe_load(yaml.safe_dump(mine.to_dict())), "config.yaml")
    assert reloaded == mine


def _old_layout(backbone: str, logdir: Path) -> dict:
    """A config.yaml as written before backbones owned their configs: DreamerV3's size and model
    keys whatever the backbone, the cpu preset's image size set silently, no config_version."""
    new = make_config("cpu", ["backbone=dreamerv3", "env.task=CartPole-v1", f"logdir={logdir}"]).to_dict()
    old = {k: v for k, v in new.items() if k not in ("config_version", "plugins", "preset_settings")}
    return {**old, "backbone": backbone}


def test_an_old_layout_config_yaml_still_evaluates(tmp_path):
    old = _old_layout("random", tmp_path)
    assert len(flat_keys(old["model"])) == 58 and old["size"] == "cpu" and old["env"]["image_size"] == [48, 48]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    config = load_config(str(tmp_path / "config.yaml"))
    assert config.model is None and config.size is None and config.env.image_size == [48, 48]
    checkpoint.save_checkpoint(str(tmp_path), 100, RandomBackbone(None, None, config).save, {"env_steps": 100}, 1)
    summary = evaluate(str(tmp_path), episodes=2, show=False)
    assert summary["backbone"] == "random" and summary["episodes"] == 2 and summary["task"] == "CartPole-v1"

    dreamer = config_from_file({**_old_layout("dreamerv3", tmp_path), "model": {"lr": 1e-3}}, "old.yaml")
    assert dreamer.size == "cpu" and dreamer.model.lr == 1e-3 and dreamer.model.units == 128  # the preset's
    with pytest.raises(ConfigError, match="old.yaml: config_version 9"):
        config_from_file({**_old_layout("random", tmp_path), "config_version": 9}, "old.yaml")


def test_a_backbone_name_is_registered_once():
    register_backbone("test_once", RandomBackbone)
    register_backbone("test_once", RandomBackbone)  # the same factory again (a module imported twice)
    with pytest.raises(RegistryError, match="backbone 'test_once' is already registered by .*RandomBackbone"):
        register_backbone("test_once", dict)


def test_training_imports_no_backbone_and_the_core_no_training():
    code = ("import sys; import cardreamer.env; assert not [m for m in sys.modules if m.startswith("
            "('cardreamer.training', 'dreamerv3_backbone'))]; from cardreamer.training import make_config; "
            "make_config(overrides=['backbone=random']); assert 'dreamerv3_backbone' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_an_experiment_hands_its_plugins_to_every_run(tmp_path, monkeypatch):
    from cardreamer.plugins import import_module
    from cardreamer.training.experiment import load_experiment, plan, train_config

    (tmp_path / "mymod_experiment.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import_module("mymod_experiment")  # as `cardreamer experiment run --import mymod_experiment FILE` does
    path = tmp_path / "study.yaml"
    path.write_text("name: study\ntask: CartPole-v1\nbackbone: mine\nsize: small\nsteps: 100\nseeds: [0]\n"
                    "variants:\n  - name: a\n  - name: b\n    overrides: [model.action=0]\n")
    runs = plan(load_experiment(path), str(tmp_path / "runs"))
    assert all(run.train[run.train.index("mymod_experiment") - 1] == "--import" for run in runs)
    assert [train_config(run).model.action for run in runs] == [1, 0]
    path.write_text(path.read_text().replace("size: small", "size: huge"))
    with pytest.raises(ValueError, match="size: unknown size 'huge' of backbone 'mine'; valid sizes: small"):
        load_experiment(path)
