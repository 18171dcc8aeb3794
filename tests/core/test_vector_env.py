"""CarDreamerVectorEnv: K worlds in one process behind Gymnasium's VectorEnv API, step for step
the same as gymnasium's SyncVectorEnv over the same envs."""
import logging

import gymnasium
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

import cardreamer  # noqa: F401  (registers CarDreamer/<Task>-v0)
from cardreamer.env import CarDreamerEnv
from cardreamer.vector import CarDreamerVectorEnv

WPT = "CarDreamer/Wpt-v0"
SHORT = {"task": {"terminal": {"time_limit": 12, "stall_time": None}, "traffic": {"background": 4}},
         "env": {"world": {"dt": 0.05}}}


def same(a, b, where="") -> None:
    """Equal values, types and dtypes, recursing into dicts, tuples, lists and object arrays."""
    if isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b), (where, a, b)
        for k, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{k}]")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, sorted(a), sorted(b))
        for key in a:
            same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, (where, a, b)
        if a.dtype == object:
            for x, y in zip(a, b):
                same(x, y, where)
        else:
            assert np.array_equal(a, b), (where, a, b)
    else:
        assert type(a) is type(b) and a == b, (where, a, b)


def test_make_vec_builds_it_from_each_tasks_vector_entry_point():
    envs = gymnasium.make_vec("CarDreamer/FourLane-v0", num_envs=3, vectorization_mode="vector_entry_point",
                              config=SHORT)
    assert isinstance(envs.unwrapped, CarDreamerVectorEnv) and envs.num_envs == 3
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    single = CarDreamerEnv("four_lane", config=SHORT)
    assert envs.single_observation_space == single.observation_space
    assert envs.single_action_space == single.action_space
    assert envs.observation_space == batch_space(single.observation_space, 3)
    assert envs.action_space == batch_space(single.action_space, 3)
    obs, _ = envs.reset(seed=0)
    assert envs.observation_space.contains(obs)
    obs, reward, terminated, truncated, _ = envs.step(envs.action_space.sample())
    assert envs.observation_space.contains(obs) and reward.shape == terminated.shape == truncated.shape == (3,)
    assert envs.unwrapped.envs[0].config.task.name == "four_lane"
    assert isinstance(gymnasium.make_vec(WPT, num_envs=2, config=SHORT).unwrapped, CarDreamerVectorEnv)


def test_reset_seed_s_gives_env_i_seed_s_plus_i_and_the_same_episodes():
    envs = CarDreamerVectorEnv(3, "wpt", config=SHORT)
    _, info = envs.reset(seed=7)
    for i in range(3):
        _, single_info = CarDreamerEnv("wpt", config=SHORT).reset(seed=7 + i)
        assert info["seed"][i] == single_info["seed"]

    def episodes(seed):
        envs.action_space.seed(seed)
        obs, _ = envs.reset(seed=seed)
        trace = [obs]
        for _ in range(15):
            trace.append(envs.step(envs.action_space.sample()))
        return trace

    first, again, other = episodes(5), episodes(5), episodes(6)
    same(first, again)
    assert not np.array_equal(first[0]["birdeye_wpt"], other[0]["birdeye_wpt"])
    _, info = envs.reset(seed=[3, None, 9])
    assert info["seed"][0] == CarDreamerEnv("wpt", config=SHORT).reset(seed=3)[1]["seed"]


@pytest.mark.parametrize("mode", list(AutoresetMode))
def test_steps_equal_sync_vector_env_bit_for_bit(mode):
    """Random actions through several autoresets (12-step episodes): observations, rewards, flags and
    every info array and mask equal SyncVectorEnv's over gymnasium.make of the same id."""
    ours = gymnasium.make_vec(WPT, num_envs=3, vectorization_mode="vector_entry_point", config=SHORT,
                              autoreset_mode=mode)
    sync = gymnasium.make_vec(WPT, num_envs=3, vectorization_mode="sync", config=SHORT,
                              vector_kwargs={"autoreset_mode": mode})
    assert ours.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"] == mode
    same(ours.reset(seed=11), sync.reset(seed=11))
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(40):
        actions = rng.integers(ours.single_action_space.n, size=3)
        step = ours.step(actions)
        same(step, sync.step(actions))
        done = step[2] | step[3]
        ends += int(done.sum())
        if mode == AutoresetMode.DISABLED and done.any():
            same(ours.reset(options={"reset_mask": done.copy()}), sync.reset(options={"reset_mask": done.copy()}))
    assert ends >= 6


def test_batched_tick_moves_every_vehicle_as_its_own_world_would():
    """four_lane (50 vehicles, lane changes, route extensions): after every step, each world's vehicles
    (ids, poses, speeds, velocities) equal those of the same env stepped alone by SyncVectorEnv."""
    ours = gymnasium.make_vec("CarDreamer/FourLane-v0", num_envs=3, vectorization_mode="vector_entry_point")
    sync = gymnasium.make_vec("CarDreamer/FourLane-v0", num_envs=3, vectorization_mode="sync")
    ours.reset(seed=2)
    sync.reset(seed=2)
    rng = np.random.default_rng(1)
    for _ in range(40):
        actions = rng.integers(ours.single_action_space.n, size=3)
        ours.step(actions)
        sync.step(actions)
        for mine, theirs in zip(ours.unwrapped.envs, sync.envs):
            a, b = mine.world.vehicles(), theirs.unwrapped.world.vehicles()
            assert len(a.ids) > 40
            for field in ("ids", "xy", "yaw", "speed", "velocity", "acceleration"):
                assert np.array_equal(getattr(a, field), getattr(b, field)), field


def test_disabled_autoreset_refuses_to_step_an_ended_env():
    envs = CarDreamerVectorEnv(2, "wpt", config=SHORT, autoreset_mode="Disabled")
    envs.reset(seed=0)
    action = np.zeros(2, dtype=np.int64)
    for _ in range(12):
        envs.step(action)
    with pytest.raises(RuntimeError, match=r"env 0's episode has ended: reset it with reset\(options="):
        envs.step(action)


def test_max_episode_steps_shortens_episodes_with_their_end_info(caplog):
    envs = gymnasium.make_vec(WPT, num_envs=2, vectorization_mode="vector_entry_point", config=SHORT,
                              max_episode_steps=4)
    envs.reset(seed=0)
    for _ in range(3):
        assert not envs.step(np.zeros(2, dtype=np.int64))[3].any()
    *_, truncated, info = envs.step(np.zeros(2, dtype=np.int64))
    assert truncated.all() and list(info["terminal_reason"]) == ["time_limit"] * 2
    assert list(info["episode_length"]) == [4, 4] and info["_success"].all()
    with caplog.at_level(logging.WARNING):
        CarDreamerVectorEnv(1, "wpt", config=SHORT, max_episode_steps=40)
    assert "max_episode_steps=40 is beyond the task's time limit: episodes still end at 12 steps" in caplog.text


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_envs": 0}, r"^num_envs must be an integer >= 1, got 0$"),
    ({"num_envs": 1, "autoreset_mode": "later"}, r"^autoreset_mode='later'; valid: \['NextStep', 'SameStep', 'Disabled'\]$"),
    ({"num_envs": 1, "max_episode_steps": 0}, r"^max_episode_steps must be an integer >= 1, got 0$"),
])
def test_bad_arguments_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CarDreamerVectorEnv(task="wpt", config=SHORT, **kwargs)


def test_reset_refuses_seeds_and_masks_of_the_wrong_length():
    envs = CarDreamerVectorEnv(2, "wpt", config=SHORT)
    with pytest.raises(ValueError, match=r"^reset\(seed=...\) got 3 seeds for num_envs=2; give one per env or one int$"):
        envs.reset(seed=[1, 2, 3])
    with pytest.raises(ValueError, match=r"^options\['reset_mask'\] must be a numpy bool array of shape \(2,\)"):
        envs.reset(options={"reset_mask": np.array([True])})
