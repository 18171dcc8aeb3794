"""One CARLA server per env: training envs and the evaluation env each get their own port, a run with more
envs than servers is refused before it starts, the launcher starts one server per port, and a reset that
finds the server still gone is retried a bounded number of times."""
from __future__ import annotations

import argparse
import functools
import logging
import re

import gymnasium as gym
import numpy as np
import pytest
from carla_standin import StandInFactory
from test_carla_launcher import answering_root, free_port
from test_carla_worker import kill_soon, process_world  # noqa: F401 - the fixture

import cardreamer.env as env_module
from cardreamer.config import CarlaServer, WorldConfig
from cardreamer.config_loading import ConfigError
from cardreamer.roadmap import RoadMap
from cardreamer.training import make_config, train
from cardreamer.training.envs import RecoverOnReset, make_vector_env
from cardreamer.world import carla_backend, make_world
from cardreamer.world.api import WorldError, WorldLost
from cardreamer.world.carla_backend import cli as carla_cli
from cardreamer.world.carla_backend.world import CarlaWorld
from cardreamer.world.slot import current_slot, evaluation_slot, training_slots


class WorldEnv(gym.Env):
    """The least env on a world built by ``make_world``: its observation is its server's port."""

    observation_space = gym.spaces.Box(0, 65535, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, world_config: WorldConfig, road_map: RoadMap):
        self.world = make_world(world_config, road_map)

    def reset(self, *, seed=None, options=None):
        return np.array([self.world.config.port], np.float32), {}

    def step(self, action):
        return self.reset()[0], 0.0, False, True, {}

    def close(self):
        self.world.close()


class SlotEnv(gym.Env):
    """Observes the slot it was built as (index, count)."""

    observation_space = gym.spaces.Box(0, 100, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.slot = current_slot()

    def reset(self, *, seed=None, options=None):
        return np.array([self.slot.index, self.slot.count], np.float32), {}

    def step(self, action):
        return self.reset()[0], 0.0, False, True, {}


@pytest.fixture
def standin_worlds(carla_maps_dir, monkeypatch):
    """make_world builds in-process CarlaWorlds on stand-in servers, one per host:port (like real servers)."""
    path = carla_maps_dir / "Town01.xodr"
    factory = StandInFactory((("Town01", str(path)),))
    monkeypatch.setattr(carla_backend, "CarlaWorld", functools.partial(CarlaWorld, client_factory=factory))
    return RoadMap.load(str(path))


def carla_config(**server) -> WorldConfig:
    return WorldConfig(backend="carla", carla=CarlaServer(timeout=1.0, isolate=False, **server))


def test_each_training_env_and_the_evaluation_env_have_their_own_server(standin_worlds):
    env_fn = functools.partial(WorldEnv, carla_config(servers=3), standin_worlds)
    envs = make_vector_env(env_fn, 2, False, slots=training_slots(2, evaluation=True))
    evaluation = make_vector_env(env_fn, 1, False, slots=[evaluation_slot(2)])
    try:
        assert envs.reset()[0]["vector"][:, 0].tolist() == [2000, 2003]
        assert evaluation.reset()[0]["vector"][:, 0].tolist() == [2006]
        addresses = {env.unwrapped.world.client.server.address for env in (*envs.envs, *evaluation.envs)}
        assert addresses == {"127.0.0.1:2000", "127.0.0.1:2003", "127.0.0.1:2006"}
    finally:
        envs.close()
        evaluation.close()


def test_vector_env_workers_are_built_as_their_slots():
    envs = make_vector_env(SlotEnv, 2, True, slots=training_slots(2, evaluation=True))  # spawned workers
    try:
        assert envs.reset()[0]["vector"].tolist() == [[0, 3], [1, 3]]
    finally:
        envs.close()


def test_a_run_with_more_envs_than_servers_is_refused_before_it_starts(standin_worlds, tmp_path):
    env_fn = functools.partial(WorldEnv, carla_config(), standin_worlds)
    config = make_config(None, [f"logdir={tmp_path / 'run'}", "backbone=random", "run.steps=10", "run.progress=false",
                                "run.eval_every=5"])
    with pytest.raises(ConfigError, match=re.escape(
            "env.world.carla.servers=1, but this run has 1 training env and 1 evaluation env, and each needs a CARLA "
            "server of its own")) as refused:
        train(config, env_fn=env_fn)
    assert "start them on ports 2000, 2003" in str(refused.value) and "run.eval_every=0" in str(refused.value)
    assert not (tmp_path / "run").exists()


def test_server_ports_and_launch_commands_per_env():
    server = CarlaServer(port=3000, servers=2, port_stride=5, launch_command="CarlaUE4.sh -carla-rpc-port={port}")
    assert server.ports() == [3000, 3005]
    second = server.for_env(training_slots(2, evaluation=False)[1])
    assert (second.port, second.servers, second.launch_command) == (3005, 1, "CarlaUE4.sh -carla-rpc-port=3005")
    with pytest.raises(ValueError, match=r"launch_command 'CarlaUE4.sh' has no \{port\}"):
        CarlaServer(servers=2, launch_command="CarlaUE4.sh")
    with pytest.raises(ValueError, match="reach port 65537"):
        CarlaServer(port=65529, servers=3)
    with pytest.raises(ValueError, match="port_stride"):
        CarlaServer(port_stride=2)


def test_cli_starts_one_server_per_port(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="cardreamer")
    carla_cli.register(parser.add_subparsers(dest="command"))
    port = free_port()
    args = parser.parse_args(["carla", "start", "--root", str(answering_root(tmp_path, "2")), "--port", str(port),
                              "--servers", "2", "--port-stride", "4"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f"answering on 127.0.0.1:{port} (pid" in out and f"127.0.0.1:{port + 4} (pid" in out
    assert "--env.world.carla.servers=2 --env.world.carla.port_stride=4" in out


class LostEnv(gym.Env):
    """Its reset raises WorldLost ``failures`` times; its world counts recoveries."""

    observation_space = gym.spaces.Box(0, 1, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, failures: int):
        self.failures = failures
        self.world = self
        self.recovered = 0

    def recover(self):
        self.recovered += 1
        if self.recovered == 1:
            raise WorldError("no CARLA server answered at 127.0.0.1:2000")

    def reset(self, *, seed=None, options=None):
        if self.failures:
            self.failures -= 1
            raise WorldLost("the CARLA worker process (pid 1) died during reset")
        return np.zeros(1, np.float32), {}


def test_a_reset_that_lost_the_world_recovers_and_retries(caplog):
    env = RecoverOnReset(LostEnv(failures=2), recoveries=3, pause=0.0)
    with caplog.at_level(logging.WARNING):
        obs, _ = env.reset(seed=1)
    assert obs.tolist() == [0.0] and env.unwrapped.recovered == 2
    lines = [r.getMessage() for r in caplog.records if "env reset" in r.getMessage()]
    assert len(lines) == 2 and "recovering the world in 0 s (2 of 3)" in lines[1]


def test_a_reset_that_keeps_losing_the_world_fails_after_the_bound():
    env = RecoverOnReset(LostEnv(failures=10), recoveries=3, pause=0.0)
    with pytest.raises(WorldLost, match=r"did not come back after 3 recoveries 0 s apart; last: the CARLA worker .* "
                                        r"died during reset\. Bring it back and resume the run"):
        env.reset()
    assert env.unwrapped.recovered == 3


def test_an_env_reset_after_its_worker_died_between_episodes_runs_on_a_fresh_worker(process_world, lane_task,  # noqa: F811
                                                                                     monkeypatch):
    worlds = []

    def carla_world(config, road_map, seed=0):
        worlds.append(process_world("Town04", road_map=road_map, dt=config.dt, seed=seed))
        return worlds[-1]

    monkeypatch.setattr(env_module, "make_world", carla_world)
    task = lane_task(2)
    env = RecoverOnReset(env_module.make_env(str(task)), pause=0.0)
    env.reset(seed=3)
    pid = worlds[0].worker_pid
    kill_soon(pid, 0.0).join()
    obs, _ = env.reset(seed=4)  # without the wrapper: CarlaServerLost out of reset
    assert worlds[0].worker_pid not in (None, pid) and obs["birdeye_wpt"].any()
    env.step(env.action_space.sample())
    env.close()
