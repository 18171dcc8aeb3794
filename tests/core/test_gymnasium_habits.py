"""Gymnasium users' habits: ``make(id, config={...})``, the horizon in the spec, RecordVideo, --help defaults."""
import gymnasium
import numpy as np
import pytest

import cardreamer  # noqa: F401  (registers CarDreamer/<Task>-v0)
from cardreamer.cli import build_parser
from cardreamer.config_loading import ConfigError
from cardreamer.env import EpisodeEndInfo, make_env

WPT = "CarDreamer/Wpt-v0"
SHORT = {"task": {"terminal": {"time_limit": 12, "stall_time": None}, "traffic": {"background": 4}},
         "env": {"world": {"dt": 0.05}}}
SHORT_OVERRIDES = ["--task.terminal.time_limit=12", "--task.terminal.stall_time=null",
                   "--task.traffic.background=4", "--env.world.dt=0.05"]


def wrappers(env: gymnasium.Env) -> list[str]:
    names = []
    while isinstance(env, gymnasium.Wrapper):
        names.append(type(env).__name__)
        env = env.env
    return names


def run_episode(env: gymnasium.Env, seed: int = 0) -> tuple[int, list[bool], dict]:
    """Steps until the episode ends (straight ahead), the truncation flags of every step, the last info."""
    env.reset(seed=seed)
    action = env.unwrapped.actions.nearest(0.0, 0.0)
    truncations = []
    while True:
        _, _, terminated, truncated, info = env.step(action)
        truncations.append(truncated)
        if terminated or truncated:
            return len(truncations), truncations, info


def test_make_with_config_equals_the_same_overrides():
    by_config = gymnasium.make(WPT, config=SHORT)
    by_overrides = gymnasium.make(WPT, overrides=SHORT_OVERRIDES)
    assert by_config.unwrapped.config == by_overrides.unwrapped.config
    obs_a, info_a = by_config.reset(seed=3)
    obs_b, info_b = by_overrides.reset(seed=3)
    assert info_a["seed"] == info_b["seed"]
    for key in obs_a:
        assert np.array_equal(obs_a[key], obs_b[key]), key
    assert by_config.unwrapped.config.task.traffic.background == 4


def test_overrides_come_after_config():
    env = make_env("wpt", ["--task.traffic.background=2"], config=SHORT)
    assert env.config.task.traffic.background == 2 and env.config.env.world.dt == 0.05


@pytest.mark.parametrize(("config", "message"), [
    ({"task": {"rewardz": {}}}, r"^config: task.rewardz: unknown key 'rewardz' \(did you mean 'rewards'\?\)$"),
    ({"env": {"world": {"backnd": "carla"}}},
     r"^config: env.world.backnd: unknown key 'backnd' \(did you mean 'backend'\?\)$"),
    ({"task": {"terminal": {"time_limt": 5}}},
     r"^config: task.terminal.time_limt: unknown terminal setting 'time_limt' \(did you mean 'time_limit'\?\)$"),
    ({"extends": "four_lane"}, r"^config: extends: .*task="),
    ({"plugins": "my_module"}, r"^config: plugins: must be a list"),
    ({"plugins": ["no_such_plugin_module"]}, r"^config: plugins: plugin module 'no_such_plugin_module' not found"),
    (["task.traffic.background=3"], r"^config: must be a mapping like a task file"),
])
def test_config_errors_name_the_key(config, message):
    with pytest.raises(ConfigError, match=message):
        gymnasium.make(WPT, config=config)


def test_config_plugins_are_imported(tmp_path, monkeypatch):
    plugin = tmp_path / "habits_plugin.py"
    plugin.write_text("from cardreamer.rewards import reward_term\n\n"
                      "@reward_term('habits_bonus')\n"
                      "def habits_bonus(ctx):\n    return 1.0\n")
    monkeypatch.chdir(tmp_path)
    env = make_env("wpt", config={"plugins": ["habits_plugin.py"], "task": {"rewards": {"habits_bonus": 0.5}}})
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.actions.nearest(0.0, 0.0))
    assert info["r_habits_bonus"] == pytest.approx(0.5)


def test_spec_reports_the_time_limit_and_the_env_truncates_once():
    env = gymnasium.make(WPT)
    assert env.spec.max_episode_steps == env.unwrapped.time_limit == 1500
    assert "TimeLimit" not in wrappers(env)
    short = gymnasium.make(WPT, config=SHORT)
    assert short.spec.max_episode_steps == 12 and "TimeLimit" not in wrappers(short)
    length, truncations, info = run_episode(short)
    assert length == 12 and truncations == [False] * 11 + [True]
    assert info["terminal_reason"] == "time_limit" and info["episode_length"] == 12
    assert {"success", "collision", "route_completion", "mean_speed", "episode_return"} <= set(info)


def test_users_max_episode_steps_truncates_with_the_episode_metrics_under_episode_end_info():
    plain = gymnasium.make(WPT, max_episode_steps=5, config=SHORT)
    length, _, info = run_episode(plain)
    assert length == 5 and "terminal_reason" not in info  # the TimeLimit cut it, the env did not end it
    env = EpisodeEndInfo(gymnasium.make(WPT, max_episode_steps=5, config=SHORT))
    assert env.spec.max_episode_steps == 5 and wrappers(env).count("TimeLimit") == 1
    length, truncations, info = run_episode(env)
    assert length == 5 and truncations == [False] * 4 + [True]
    assert info["terminal_reason"] == "time_limit" and info["episode_length"] == 5
    assert {"success", "collision", "route_completion", "mean_speed", "episode_return"} <= set(info)
    length, _, _ = run_episode(env, seed=1)  # the limit counts again from each reset
    assert length == 5


def test_a_longer_max_episode_steps_says_the_task_limit_still_ends_episodes(caplog):
    env = EpisodeEndInfo(gymnasium.make(WPT, max_episode_steps=40, config=SHORT))
    assert "max_episode_steps=40 is beyond the task's time limit: episodes still end at 12 steps" in caplog.text
    assert run_episode(env)[0] == 12


def test_env_rebuilt_from_its_spec_runs_the_same_config():
    env = gymnasium.make(WPT, config=SHORT)
    again = gymnasium.make(env.spec)
    assert again.unwrapped.config == env.unwrapped.config
    assert run_episode(again)[0] == 12


def test_record_video_writes_an_episode(tmp_path):
    pytest.importorskip("moviepy", reason="RecordVideo needs moviepy: pip install .[video]")
    from gymnasium.wrappers import RecordVideo

    env = RecordVideo(gymnasium.make(WPT, config=SHORT, render_mode="rgb_array"), str(tmp_path),
                      episode_trigger=lambda episode: True, disable_logger=True)
    run_episode(env)
    env.close()
    videos = list(tmp_path.glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--episodes EPISODES (default: 5)" in text
    assert "task name or task .yaml path (default: wpt)" in text
    assert "--json print the per-episode metrics as JSON --url" in text  # flags and None defaults show none


@pytest.mark.parametrize(("command", "shown"), [
    (["serve"], "frames per second per stream and viewer (default: 30.0)"),  # visualization's
    (["map", "build"], "(default: 1.0)"),  # task_dev_suite's, one level deeper
    (["carla", "start"], "(default: 2000)"),  # the CARLA backend's
])
def test_help_of_every_package_shows_defaults(command, shown, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    assert shown in " ".join(capsys.readouterr().out.split())
