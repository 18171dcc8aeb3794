"""Many CarDreamer worlds in one process, as one Gymnasium vector env.

``gymnasium.make_vec("CarDreamer/FourLane-v0", num_envs=K, vectorization_mode="vector_entry_point")``
builds a :class:`CarDreamerVectorEnv`: K independent envs of one task, built from one validated
config and stepped in this process, with no subprocesses and no per-env wrappers; embedded worlds
tick as one batch (the numpy motion of all their vehicles in one pass). It follows the API of
``gymnasium.vector.SyncVectorEnv`` step for step (spaces, seeding, autoreset modes, the info
layout), so it can stand in for it; a test compares the two bit for bit.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from cardreamer.config import Config, build_config
from cardreamer.env import CarDreamerEnv
from cardreamer.rewards import terminal_defaults
from cardreamer.world.embedded.world import EmbeddedWorld, tick_worlds

log = logging.getLogger(__name__)


class CarDreamerVectorEnv(gymnasium.vector.VectorEnv):
    """``num_envs`` envs of one CarDreamer task stepped in turn in this process.

    ``task``, ``overrides`` and ``config`` are those of :class:`~cardreamer.env.CarDreamerEnv`; the
    config is built and validated once and shared by every env. ``reset(seed=s)`` seeds env ``i``
    with ``s + i`` (a list gives one seed per env), so the same seed gives the same episodes.

    ``autoreset_mode`` (in ``metadata["autoreset_mode"]``) is ``NEXT_STEP`` by default: after an
    episode's last step, the next ``step`` resets that env (its action is ignored, reward 0, not
    terminated or truncated) and returns the new episode's first observation. ``SAME_STEP`` resets
    within the last step and puts that step's observation and info under ``info["final_obs"]`` and
    ``info["final_info"]``; ``DISABLED`` leaves resets to ``reset(options={"reset_mask": mask})``.
    ``max_episode_steps`` (as ``make_vec`` passes it) shortens the task's time limit; episodes then
    end with the same ``terminal_reason`` and metrics as at the task's own limit.
    ``copy=False`` returns the internal observation buffers, overwritten by the next call.
    """

    def __init__(self, num_envs: int, task: str | Path = "wpt", overrides: list[str] | None = None,
                 config: Mapping[str, Any] | Config | None = None, render_mode: str | None = None,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP, copy: bool = True,
                 max_episode_steps: int | None = None):
        if not (isinstance(num_envs, int) and num_envs >= 1):
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        try:
            self.autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ValueError(f"autoreset_mode={autoreset_mode!r}; valid: {[m.value for m in AutoresetMode]}") from None
        shared = config if isinstance(config, Config) else build_config(task, overrides, config)[0]
        shared = _with_episode_limit(shared, max_episode_steps)
        self.envs = [CarDreamerEnv(config=shared, render_mode=render_mode) for _ in range(num_envs)]
        self._batched = all(isinstance(env.world, EmbeddedWorld) for env in self.envs)
        self.num_envs = num_envs
        self.copy = copy
        self.render_mode = render_mode
        self.metadata = {**CarDreamerEnv.metadata, "autoreset_mode": self.autoreset_mode}
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._observations = create_empty_array(self.single_observation_space, n=num_envs, fn=np.zeros)
        self._env_obs: list[Any] = [None] * num_envs
        self._rewards = np.zeros(num_envs, dtype=np.float64)
        self._terminations = np.zeros(num_envs, dtype=np.bool_)
        self._truncations = np.zeros(num_envs, dtype=np.bool_)
        self._autoreset_envs = np.zeros(num_envs, dtype=np.bool_)

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None):
        """Reset every env (or those of ``options["reset_mask"]``); ``seed`` as in the class docstring."""
        seeds = _seeds(seed, self.num_envs)
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            mask = np.ones(self.num_envs, dtype=np.bool_)
        elif not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == (self.num_envs,)
                  and mask.any()):
            raise ValueError(f"options['reset_mask'] must be a numpy bool array of shape ({self.num_envs},) with at "
                             f"least one True, got {mask!r}")
        self._terminations[mask] = self._truncations[mask] = self._autoreset_envs[mask] = False
        infos: list[dict[str, Any] | None] = [None] * self.num_envs
        for i in np.flatnonzero(mask).tolist():
            self._env_obs[i], infos[i] = self.envs[i].reset(seed=seeds[i], options=options or None)
        return self._batched_obs(), _merge(infos, self.num_envs)

    def step(self, actions):
        """Step every env with its action (or autoreset it, see the class docstring). Embedded
        worlds tick as one batch (``tick_worlds``); each env's results are the same as its own step's."""
        infos: list[dict[str, Any] | None] = [None] * self.num_envs
        stepping = []
        for i, action in enumerate(iterate(self.action_space, actions)):
            ended = self._autoreset_envs[i]  # its last step was the previous one
            if ended and self.autoreset_mode == AutoresetMode.DISABLED:
                raise RuntimeError(f"env {i}'s episode has ended: reset it with reset(options={{'reset_mask': ...}}) "
                                   f"before stepping (autoreset_mode=DISABLED)")
            if ended and self.autoreset_mode == AutoresetMode.NEXT_STEP:
                self._env_obs[i], infos[i] = self.envs[i].reset()
                self._rewards[i] = 0.0
                self._terminations[i] = self._truncations[i] = False
            else:
                stepping.append((i, action))
        if self._batched:
            for i, action in stepping:
                self.envs[i].apply_action(action)
            tick_worlds([self.envs[i].world for i, _ in stepping])
            results = [self.envs[i].after_tick() for i, _ in stepping]
        else:
            results = [self.envs[i].step(action) for i, action in stepping]
        for (i, _), (obs, reward, terminated, truncated, info) in zip(stepping, results):
            self._rewards[i], self._terminations[i], self._truncations[i] = reward, terminated, truncated
            if self.autoreset_mode == AutoresetMode.SAME_STEP and (terminated or truncated):
                final = {"final_obs": obs, "final_info": info}
                obs, info = self.envs[i].reset()
                info = {**final, **info}
            self._env_obs[i], infos[i] = obs, info
        self._autoreset_envs = self._terminations | self._truncations
        return (self._batched_obs(), self._rewards.copy(), self._terminations.copy(), self._truncations.copy(),
                _merge(infos, self.num_envs))

    def _batched_obs(self):
        self._observations = concatenate(self.single_observation_space, self._env_obs, self._observations)
        return deepcopy(self._observations) if self.copy else self._observations

    def render(self) -> tuple[np.ndarray | None, ...]:
        return tuple(env.render() for env in self.envs)

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()


def _seeds(seed: int | Sequence[int | None] | None, n: int) -> list[int | None]:
    if seed is None:
        return [None] * n
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + i for i in range(n)]
    seeds = list(seed)
    if len(seeds) != n:
        raise ValueError(f"reset(seed=...) got {len(seeds)} seeds for num_envs={n}; give one per env or one int")
    return seeds


def _with_episode_limit(config: Config, max_episode_steps: int | None) -> Config:
    """``config`` with its time limit lowered to ``max_episode_steps`` (a longer one is refused in a warning)."""
    if max_episode_steps is None:
        return config
    limit = int({**terminal_defaults(), **config.task.terminal}["time_limit"])
    if not (isinstance(max_episode_steps, int) and max_episode_steps >= 1):
        raise ValueError(f"max_episode_steps must be an integer >= 1, got {max_episode_steps!r}")
    if max_episode_steps > limit:
        log.warning("max_episode_steps=%d is beyond the task's time limit: episodes still end at %d steps; "
                    "raise task.terminal.time_limit to lengthen them", max_episode_steps, limit)
        return config
    terminal = {**config.task.terminal, "time_limit": max_episode_steps}
    return config.model_copy(update={"task": config.task.model_copy(update={"terminal": terminal})})


def _merge(infos: Sequence[Mapping[str, Any] | None], n: int) -> dict[str, Any]:
    """The envs' infos in Gymnasium's vector layout (an array per key and a ``_key`` mask of the envs
    that have it), built once per key rather than once per env and key: what ``VectorEnv._add_info``
    builds from ``infos[i]`` for every env ``i`` in turn. The first value of a key fixes its array's
    type (int, float, bool and numpy numbers: that dtype; arrays: their shape and dtype; dicts:
    merged the same way; anything else and ``final_obs``: objects)."""
    rows: dict[str, tuple[list[int], list[Any]]] = {}
    for i, info in enumerate(infos):
        for key, value in (info or {}).items():
            index, values = rows.setdefault(key, ([], []))
            index.append(i)
            values.append(value)
    out: dict[str, Any] = {}
    for key, (index, values) in rows.items():
        first = values[0]
        if key != "final_obs" and isinstance(first, dict):
            nested: list[Mapping[str, Any] | None] = [None] * n
            for i, value in zip(index, values):
                nested[i] = value
            array: Any = _merge(nested, n)
        elif key != "final_obs" and (type(first) in (int, float, bool) or isinstance(first, np.number)):
            array = np.zeros(n, dtype=type(first))
            array[index] = values
        elif key != "final_obs" and isinstance(first, np.ndarray):
            array = np.zeros((n, *first.shape), dtype=first.dtype)
            for i, value in zip(index, values):
                array[i] = value
        else:
            array = np.full(n, None, dtype=object)
            for i, value in zip(index, values):
                array[i] = value
        mask = np.zeros(n, dtype=np.bool_)
        mask[index] = True
        out[key], out[f"_{key}"] = array, mask
    return out
