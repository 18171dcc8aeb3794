"""Plugins end to end, as a user outside the project would write them: a plain module named with
``--import`` and a package installed in a fresh venv (entry point ``cardreamer.plugins``) each add
a task part, a reward term fed by that part, an observation handler and a backbone; a task file
uses the first three, ``task validate``, ``run``, ``train`` and ``eval`` use all four, and ``eval``
rebuilds the plugin backbone from its run dir without being told where it comes from; a task file's
``plugins:`` names the module as ``--import`` does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def plugin_source(p: str) -> str:
    """A plugin module whose extensions are all named with the prefix ``p``: part ``{p}_bonus``
    provides the fact ``{p}_bonus`` (its param ``bonus``), term ``{p}_bonus`` needs it and pays it
    every step, handler ``{p}_speed`` observes the ego's speed, backbone ``{p}_net`` insists on
    that observation and always brakes."""
    return textwrap.dedent(f'''
        """A user's CarDreamer plugin (prefix {p})."""
        import gymnasium
        import numpy as np

        from cardreamer.observer.handler import Handler, register_handler
        from cardreamer.rewards import reward_term
        from cardreamer.task_runtime import TASK_PARTS, PartParams, TaskPart
        from cardreamer.training import register_backbone


        @TASK_PARTS.register("{p}_bonus")
        class Bonus(TaskPart):
            class Params(PartParams):
                bonus: float = 1.0

            provides = frozenset({{"{p}_bonus"}})

            def observe(self, ctx):
                ctx.facts["{p}_bonus"] = self.params.bonus


        @reward_term("{p}_bonus", needs={{"{p}_bonus"}})
        def bonus(ctx):
            return ctx.facts["{p}_bonus"]


        @register_handler("{p}_speed")
        class Speed(Handler):
            def observation_space(self):
                return {{self.name: gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float32)}}

            def step(self, world, ego_id):
                vehicles = world.vehicles()
                return {{self.name: np.array([vehicles.speed[vehicles.row(ego_id)]], np.float32)}}, {{}}


        @register_backbone("{p}_net")
        class Net:
            batch_length = 4

            def __init__(self, obs_space, act_space, config):
                assert obs_space["{p}_speed"].shape == (1,), obs_space
                self.updates = 0

            def policy(self, obs, state, mode):
                assert obs["{p}_speed"].shape == (len(obs["is_first"]), 1)
                return np.zeros(len(obs["is_first"]), np.int64), state  # action 0: brake, steer left

            def train(self, batch, state):
                self.updates += 1
                return state, {{"updates": float(self.updates)}}

            def report(self, batch):
                return {{}}

            def save(self, path):
                np.savez(path, updates=np.array(self.updates))

            def load(self, path):
                with np.load(path, allow_pickle=False) as data:
                    self.updates = int(data["updates"])
    ''')


def task_file(path: Path, p: str, *, with_part: bool = True) -> Path:
    """A task on wpt's map that scores only the plugin's term, observes only its handler, and is short."""
    builtin_terms = dict.fromkeys(("waypoint", "speed", "collision", "out_of_lane", "time", "destination"), 0.0)
    spec = {
        "extends": "wpt",
        "task": {"name": path.stem, "traffic": {"background": 0},
                 "rewards": {**builtin_terms, f"{p}_bonus": 1.0}, "terminal": {"time_limit": 20}},
        "env": {"observation": {"enabled": [f"{p}_speed"], f"{p}_speed": {"handler": f"{p}_speed"}}},
    }
    if with_part:
        spec["task"]["parts"] = {f"{p}_bonus": {"bonus": 2.5}}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def cardreamer(python: Path | str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``cardreamer ARGS`` with ``python`` in ``cwd``, the project imported from this checkout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CARDREAMER_ALLOCATOR": "system"}
    return subprocess.run([str(python), "-m", "cardreamer.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def exercise(python: Path | str, cwd: Path, p: str, plugins: list[str]) -> None:
    """Validate, run, train and eval a task using the plugin with prefix ``p`` (``--import`` each of ``plugins``)."""
    imports = [arg for module in plugins for arg in ("--import", module)]
    task = task_file(cwd / f"{p}_task.yaml", p)
    result = cardreamer(python, cwd, "task", "validate", task.name, *imports)
    assert result.returncode == 0, result.stdout + result.stderr

    unfed = task_file(cwd / f"{p}_unfed.yaml", p, with_part=False)
    result = cardreamer(python, cwd, "task", "validate", unfed.name, *imports)
    assert result.returncode == 1, result.stdout + result.stderr  # the term's fact needs the plugin's part
    line = unfed.read_text().splitlines().index(f"    {p}_bonus: 1.0") + 1
    assert f"{unfed.name}:{line}:5: task.rewards.{p}_bonus: reward term '{p}_bonus' needs fact {p}_bonus, which no part " \
           f"of this task provides" in result.stdout, result.stdout

    result = cardreamer(python, cwd, "run", *imports, "--task", task.name, "--episodes", "1", "--policy", "random",
                        "--json")
    assert result.returncode == 0, result.stderr
    [episode] = json.loads(result.stdout)
    assert episode["episode_return"] == pytest.approx(2.5 * episode["episode_length"])  # only the plugin's term

    result = cardreamer(python, cwd, "train", *imports, "--backbone", f"{p}_net", "--task", task.name, "--steps", "60",
                        "--logdir", "run", "--eval-every", "0", "--run.progress=false", "--run.train_fill=20")
    assert result.returncode == 0, result.stderr
    saved = yaml.safe_load((cwd / "run" / "config.yaml").read_text())
    assert saved["backbone"] == f"{p}_net" and saved["plugins"] == plugins
    assert json.loads((cwd / "run" / "metrics.jsonl").read_text().splitlines()[-1])["train/updates"] > 0

    result = cardreamer(python, cwd, "eval", "--logdir", "run", "--episodes", "1", "--json")  # no --import
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["backbone"] == f"{p}_net" and summary["episodes"] == 1


def test_a_plain_module_named_with_import(tmp_path):
    (tmp_path / "my_ext.py").write_text(plugin_source("mine"))
    exercise(sys.executable, tmp_path, "mine", ["my_ext"])
    (tmp_path / "named.yaml").write_text("extends: mine_task\nplugins: [my_ext]\n")  # the task file names it
    result = cardreamer(sys.executable, tmp_path, "run", "--task", "named.yaml", "--episodes", "1", "--policy", "random",
                        "--json")
    assert result.returncode == 0, result.stderr
    [episode] = json.loads(result.stdout)
    assert episode["episode_return"] == pytest.approx(2.5 * episode["episode_length"])


def install_by_hand(venv: Path, name: str, module: str, source: str) -> None:
    """Install a one-module distribution ``name`` with the entry point ``name = module`` in group
    ``cardreamer.plugins`` into ``venv``, as pip writes it (the module and its ``.dist-info``
    metadata): pip cannot build a wheel offline here, and an entry point is only metadata."""
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site / f"{module}.py").write_text(source)
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[cardreamer.plugins]\n{name} = {module}\n")
    (info / "RECORD").write_text(f"{module}.py,,\n{info.name}/METADATA,,\n{info.name}/entry_points.txt,,\n"
                                 f"{info.name}/RECORD,,\n")


def test_an_installed_package_found_by_its_entry_point(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True,
                   timeout=120)
    install_by_hand(venv, "myplug", "myplug_ext", plugin_source("plug"))
    exercise(venv / "bin" / "python", tmp_path, "plug", [])
    outside = cardreamer(sys.executable, tmp_path, "task", "validate", "plug_task.yaml")  # the same, outside the venv
    assert outside.returncode == 1 and "unknown handler 'plug_speed'" in outside.stdout, outside.stdout
