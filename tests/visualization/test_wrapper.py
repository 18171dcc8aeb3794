"""The live display wrapper: a CarDreamer env publishing to a real server, and a core that never
imports the visualizer."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import Viewer, decode, wait_until

from cardreamer.cli import main as cardreamer_main
from cardreamer.config_loading import ConfigError
from cardreamer.env import build_config, make_env
from visualization.wrapper import LiveDisplay

ROOT = Path(__file__).resolve().parents[2]
TWO_IMAGES = ["env.observation.enabled=[birdeye_wpt,birdeye_raw,state]"]


def test_wrapped_env_publishes_the_chosen_frames_and_step_info_to_a_server(server):
    viewer = Viewer(server["base"], "wrapped")
    env = LiveDisplay(make_env("wpt", TWO_IMAGES), server["url"], run="wrapped", keys=["birdeye_wpt"])
    try:
        assert env.publisher.wait_connected(10), "the wrapper's publisher did not connect"
        obs, info = env.reset(seed=3)
        action = env.unwrapped.actions.nearest(1.0, 0.0)
        for _ in range(20):
            obs, reward, _, _, info = env.step(action)
            time.sleep(0.02)
        # The newest frame and step info reach the viewer: the last observation, pixel for pixel
        # (bird's-eye streams go as PNG), and the last step's info with its reward.
        assert wait_until(lambda: viewer.frames("0/birdeye_wpt")
                        and np.array_equal(decode(viewer.frames("0/birdeye_wpt")[-1]), obs["birdeye_wpt"]))
        assert wait_until(lambda: viewer.steps()
                          and viewer.steps()[-1]["info"]["route_s"] == pytest.approx(info["route_s"]))
        shown = viewer.steps()[-1]["info"]
        assert shown["reward"] == pytest.approx(reward)
        assert {"speed", "lateral_offset"} | {k for k in info if k.startswith("r_")} <= set(shown)
        assert {d["key"] for d in viewer.frames()} == {"0/birdeye_wpt"}  # birdeye_raw was not chosen
    finally:
        env.close()
        viewer.close()
    assert wait_until(lambda: not env.publisher.connected), "close did not disconnect the publisher"


def test_without_a_url_the_wrapper_changes_nothing():
    bare, wrapped = make_env("wpt"), LiveDisplay(make_env("wpt"), None)
    try:
        for env in (bare, wrapped):
            env.reset(seed=5)
        action = bare.actions.nearest(1.0, 0.2)
        for _ in range(30):
            a, b = bare.step(action), wrapped.step(action)
            assert np.array_equal(a[0]["birdeye_wpt"], b[0]["birdeye_wpt"]) and a[1:] == b[1:]
    finally:
        bare.close()
        wrapped.close()


def test_keys_that_are_not_image_observations_are_refused():
    env = make_env("wpt", TWO_IMAGES)
    try:
        with pytest.raises(ValueError, match=r"\['birdeye', 'state'\] are not image observations of this env; "
                                             r"its image observations: birdeye_raw, birdeye_wpt"):
            LiveDisplay(env, None, keys=["birdeye_wpt", "birdeye", "state"])
    finally:
        env.close()


CORE_ONLY = """
import importlib, pkgutil, sys
import cardreamer
for module in pkgutil.walk_packages(cardreamer.__path__, "cardreamer."):
    if module.name != "cardreamer.cli":  # the command line gathers every package's subcommands
        importlib.import_module(module.name)
from cardreamer.env import make_env
env = make_env("wpt", seed=0)
for _ in range(5):
    env.step(env.action_space.sample())
env.close()
print(sorted(m for m in sys.modules if m.split(".")[0] == "visualization"))
"""


def test_the_core_and_a_stepped_env_never_import_the_visualizer():
    result = subprocess.run([sys.executable, "-c", CORE_ONLY], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_old_display_section_is_refused_in_one_line_naming_its_replacements(capsys):
    with pytest.raises(ConfigError) as error:
        build_config("wpt", ["env.display.enable=true", "env.display.url=http://127.0.0.1:9000"])
    message = str(error.value)
    assert message.startswith("command line: --env.display.enable=true: env.display: removed:")
    assert "cardreamer train --serve" in message and "LiveDisplay" in message and "\n" not in message
    assert cardreamer_main(["run", "--task", "wpt", "--episodes", "1", "--env.display.enable=true"]) == 2
    assert capsys.readouterr().err.strip() == f"cardreamer: error: {message}"


def test_a_task_file_with_the_old_display_section_is_refused_at_its_line(tmp_path):
    task = tmp_path / "watched.yaml"
    task.write_text((ROOT / "cardreamer" / "tasks" / "wpt.yaml").read_text().replace("env:\n", "env:\n  display: {enable: true}\n", 1))
    line = task.read_text().splitlines().index("  display: {enable: true}") + 1
    with pytest.raises(ConfigError, match=rf"^{task}:{line}:3: env.display: removed: .*LiveDisplay"):
        build_config(task)


def test_run_with_a_malformed_url_says_so_in_one_line(capsys):
    assert cardreamer_main(["run", "--task", "wpt", "--episodes", "1", "--url", "127.0.0.1:9000"]) == 2
    assert capsys.readouterr().err.strip() == ("cardreamer: error: visualization url '127.0.0.1:9000' must look like "
                                               "http://127.0.0.1:9000")
