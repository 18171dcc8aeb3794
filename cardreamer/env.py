"""The Gymnasium environment: a task on a world, observed by handlers, driven by an agent."""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import gymnasium
import numpy as np

from cardreamer.actions import ActionMapper
from cardreamer.config import Config, build_config
from cardreamer.observer import DEFAULT_OBSERVATIONS, Observer
from cardreamer.roadmap import RoadMap
from cardreamer.task_runtime import Task
from cardreamer.world import make_world
from cardreamer.world.api import WorldLost

log = logging.getLogger(__name__)


class CarDreamerEnv(gymnasium.Env):
    """A CarDreamer driving task as a Gymnasium env.

    Observations are a dict of the enabled handlers' outputs (``env.observation.enabled``);
    actions are discrete (acceleration × steer grid) or continuous ``[acc, steer]``. ``info``
    carries every reward term as ``r_<term>``, the ego's speed, and on the last step the
    ``terminal_reason`` and episode metrics (success, collision, route_completion, mean_speed).
    Reaching ``task.terminal.time_limit`` steps truncates; every other end terminates.

    ``config`` is a mapping laid out like a task file (``{"task": {...}, "env": {...}}``), merged
    over the task before ``overrides`` (``gymnasium.make(id, config={...})``), or a validated Config.
    The env truncates itself, so ``gymnasium.make`` adds no TimeLimit; the spec it sets reports the
    time limit in force (after ``config`` and ``overrides``) as ``max_episode_steps``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, task: str | Path = "wpt", overrides: list[str] | None = None,
                 config: Mapping[str, Any] | Config | None = None, render_mode: str | None = None):
        self.config = config if isinstance(config, Config) else build_config(task, overrides, config)[0]
        self.render_mode = render_mode
        env_cfg = self.config.env
        self.road_map = RoadMap.load(self.config.task.map, env_cfg.world.map_dir).with_stop_signs(self.config.task.stop_signs)
        self.task = Task(self.config.task, self.road_map)
        self.world = make_world(env_cfg.world, self.road_map)
        self.actions = ActionMapper(env_cfg.action)
        self.observer = Observer(env_cfg.observation, env_cfg.observation["enabled"])
        self.action_space = self.actions.space
        self.observation_space = self.observer.observation_space
        self.time_limit = int(self.task.terminal_cfg["time_limit"])
        self.ego_id = -1
        self._renderer = None
        self._episode_seed = 0
        self._spec: gymnasium.envs.registration.EnvSpec | None = None

    @property
    def spec(self) -> gymnasium.envs.registration.EnvSpec | None:
        """What ``gymnasium.make`` built this env from, ``max_episode_steps`` being this env's time limit."""
        return self._spec

    @spec.setter
    def spec(self, spec: gymnasium.envs.registration.EnvSpec | None) -> None:
        if spec is not None and spec.max_episode_steps is None:
            spec = dataclasses.replace(spec, max_episode_steps=self.time_limit)
        self._spec = spec

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._episode_seed = int(self.np_random.integers(2**31 - 1))
        self.world.reset(self._episode_seed)
        self.ego_id = self.task.reset(self.world, np.random.default_rng(self._episode_seed))
        self.steps = 0
        self.episode_return = 0.0
        obs, obs_info = self.observer.reset(self.world, self.ego_id)
        info = {"seed": self._episode_seed, **obs_info}
        self._last_obs = obs
        return obs, info

    def step(self, action):
        try:
            self.apply_action(action)
            self.world.tick()
        except WorldLost as lost:
            return self._recover(lost)
        return self.after_tick()

    def apply_action(self, action) -> None:
        """The first part of ``step``: the action becomes the ego's control (the world ticks next)."""
        self.world.apply_control(self.ego_id, self.actions.to_control(action))

    def after_tick(self):
        """The rest of ``step`` once the world has ticked: the task's parts, reward, ends and the
        observation. A vector env that ticks several worlds at once calls the two parts itself."""
        try:
            self.task.after_tick(self.world)
            reward, terms, reason, ctx = self.task.evaluate(self.world)
        except WorldLost as lost:
            return self._recover(lost)
        self.steps += 1
        self.episode_return += reward
        obs, obs_info = self.observer.step(self.world, self.ego_id)
        terminated = reason is not None
        truncated = not terminated and self.steps >= self.time_limit
        info: dict[str, Any] = {f"r_{k}": v for k, v in terms.items()}
        info.update(obs_info, speed=ctx.speed, route_s=ctx.route_s, lateral_offset=ctx.lateral_offset)
        if terminated or truncated:
            info.update(self.episode_end_info(reason))
        self._last_obs = obs
        return obs, reward, terminated, truncated, info

    def episode_end_info(self, reason: str | None) -> dict[str, Any]:
        """``terminal_reason`` (``time_limit`` for None), the episode metrics and return, for the last step's info."""
        return {"terminal_reason": reason or "time_limit", **self.task.episode_metrics(reason),
                "episode_return": self.episode_return}

    def _recover(self, lost: WorldLost):
        """The simulator went away mid-episode: reconnect and end the episode as truncated (not the
        agent's doing), so a trainer simply resets into a fresh episode."""
        log.warning("env: %s; reconnecting, the episode ends here", lost)
        self.world.recover()
        info = {**self.episode_end_info("world_lost"), "incident": str(lost)}
        return self._last_obs, 0.0, False, True, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = Observer({"spectator": DEFAULT_OBSERVATIONS["spectator"]}, ["spectator"])
            self._renderer.reset(self.world, self.ego_id)
        obs, _ = self._renderer.step(self.world, self.ego_id)
        return obs["spectator"]

    def close(self):
        self.world.close()


class EpisodeEndInfo(gymnasium.Wrapper, gymnasium.utils.RecordConstructorArgs):
    """Completes the last step's ``info`` when a wrapper below ends the episode early (the
    TimeLimit of ``gymnasium.make(id, max_episode_steps=N)``): ``terminal_reason`` ``time_limit``
    and the episode metrics, as the env reports them at its own ends. Apply it over that TimeLimit
    (``EpisodeEndInfo(gymnasium.make(id, max_episode_steps=N))``); registered ids do not, as
    ``make_vec`` refuses a vector entry point on ids with additional wrappers."""

    def __init__(self, env: gymnasium.Env):
        gymnasium.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)
        limit = env.spec.max_episode_steps if env.spec is not None else None
        if limit is not None and limit > env.unwrapped.time_limit:
            log.warning("max_episode_steps=%d is beyond the task's time limit: episodes still end at %d steps; "
                        "raise task.terminal.time_limit to lengthen them", limit, env.unwrapped.time_limit)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if (terminated or truncated) and "terminal_reason" not in info:
            info = {**info, **self.env.unwrapped.episode_end_info(None)}
        return obs, reward, terminated, truncated, info


def make_env(task: str | Path, overrides: list[str] | None = None, seed: int | None = None,
             render_mode: str | None = None, config: Mapping[str, Any] | None = None) -> CarDreamerEnv:
    """Build a task's env with a ``config`` mapping and dotted overrides; ``seed`` seeds its first reset."""
    env = CarDreamerEnv(task, overrides, config, render_mode=render_mode)
    if seed is not None:
        env.reset(seed=seed)
    return env
