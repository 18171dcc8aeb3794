"""Environments for the training loop: the default env factory, observation standardising, and
vector envs (subprocesses for several envs).

Every env is wrapped by ``StandardObs`` so agents see a dict of HxWxC uint8 images and flat
float32 vectors, whatever the env gives, and by ``RecoverOnReset`` so a reset that finds the
simulator gone retries a bounded number of times. Each env is built as its own slot of the run
(``cardreamer.world.slot``), so a server backend gives each env its own server.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence

import cv2
import gymnasium as gym
import numpy as np

from cardreamer.config_loading import ConfigError
from cardreamer.plugins import imported_modules
from cardreamer.world.api import WorldError, WorldLost
from cardreamer.world.slot import EnvSlot, building, training_slots

from .config import TrainingConfig, apply_overrides

log = logging.getLogger(__name__)

EnvFn = Callable[[], gym.Env]
RESERVED_KEYS = ("action", "reward", "is_first", "is_last", "is_terminal")
RESET_RECOVERIES = 5   # times a reset that lost the simulator recovers the world and tries again
RESET_PAUSE = 10.0     # s before each of those recoveries (a crashed server takes a while to come back)


class StandardObs(gym.ObservationWrapper):
    """Dict observations of images (resized to ``image_size`` if given) and flat float32 vectors.

    A non-dict observation becomes ``{"image": obs}`` (HxWxC uint8) or ``{"vector": obs}``.
    Discrete observations become one-hot vectors.
    """

    def __init__(self, env: gym.Env, image_size: tuple[int, int] | None = None):
        super().__init__(env)
        space = env.observation_space
        self._single = not isinstance(space, gym.spaces.Dict)
        spaces = {self._default_key(space): space} if self._single else dict(space.spaces)
        self.image_size = tuple(image_size) if image_size and all(image_size) else None
        out = {}
        for key, sub in spaces.items():
            if key in RESERVED_KEYS:
                raise ValueError(f"observation key {key!r} clashes with a replay key; reserved: {RESERVED_KEYS}")
            if self._is_image(sub):
                h, w = self.image_size or sub.shape[:2]
                out[key] = gym.spaces.Box(0, 255, (h, w, sub.shape[2]), np.uint8)
            elif isinstance(sub, gym.spaces.Box):
                out[key] = gym.spaces.Box(-np.inf, np.inf, (int(np.prod(sub.shape)) or 1,), np.float32)
            elif isinstance(sub, gym.spaces.Discrete):
                out[key] = gym.spaces.Box(0, 1, (int(sub.n),), np.float32)
            else:
                raise ValueError(f"observation key {key!r}: unsupported space {sub}; use Box images/vectors or Discrete")
        self._spaces = spaces
        self.observation_space = gym.spaces.Dict(out)

    @staticmethod
    def _is_image(space: gym.Space) -> bool:
        return isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8

    @classmethod
    def _default_key(cls, space: gym.Space) -> str:
        return "image" if cls._is_image(space) else "vector"

    def observation(self, obs):
        obs = {self._default_key(self.env.observation_space): obs} if self._single else obs
        out = {}
        for key, sub in self._spaces.items():
            value = obs[key]
            if self._is_image(sub):
                value = np.asarray(value, np.uint8)
                if self.image_size and value.shape[:2] != self.image_size:
                    h, w = self.image_size
                    value = cv2.resize(value, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, -1)
            elif isinstance(sub, gym.spaces.Discrete):
                value = np.eye(sub.n, dtype=np.float32)[int(value) - sub.start]
            else:
                value = np.asarray(value, np.float32).reshape(-1)
            out[key] = value
        return out


def is_gym_id(task: str, overrides) -> bool:
    """Whether ``env.task`` names a registered gymnasium env (taken as is: no CarDreamer config)."""
    return task in gym.registry and not overrides


def make_task_env(task: str, overrides: list[str] | None = None, seed: int | None = None) -> gym.Env:
    """A gymnasium id (e.g. CartPole-v1) through ``gymnasium.make``, otherwise a CarDreamer task
    through ``cardreamer.env.make_env``."""
    if is_gym_id(task, overrides):
        return gym.make(task)
    try:
        from cardreamer.env import make_env
    except ImportError as error:
        raise ValueError(f"env.task={task!r} is not a gymnasium id and cardreamer.env.make_env is unavailable "
                         f"({error})") from error
    return make_env(task, list(overrides or []), seed)


def make_recorded_env(task_config: dict, plugins: list[str], seed: int | None = None) -> gym.Env:
    """The CarDreamer env of a recorded task config (``env.task_config``), after importing the
    plugins whose parts and terms it may use (this runs in vector-env subprocesses too)."""
    from cardreamer.config import recorded_config
    from cardreamer.env import CarDreamerEnv
    from cardreamer.plugins import load_plugins

    load_plugins(plugins)
    env = CarDreamerEnv(config=recorded_config(task_config, "env.task_config"))
    if seed is not None:
        env.reset(seed=seed)
    return env


def with_task_config(config: TrainingConfig) -> TrainingConfig:
    """``config`` with ``env.task_config`` (the CarDreamer task's config after ``extends:``, the
    task file and ``env.overrides``) and ``env.map_sha256`` (its map file's hash) recorded, so the
    run directory rebuilds the same task later; unchanged for a gymnasium id or one already recorded."""
    if config.env.task_config or is_gym_id(config.env.task, config.env.overrides):
        return config
    from cardreamer.config import build_config
    from cardreamer.roadmap import map_sha256

    task_config, _ = build_config(config.env.task, list(config.env.overrides))
    return apply_overrides(config, {"env": {"task_config": task_config.model_dump(mode="json"),
                                            "map_sha256": map_sha256(task_config.task.map,
                                                                     task_config.env.world.map_dir)}})


def with_env_overrides(config: TrainingConfig, overrides: Sequence[str]) -> TrainingConfig:
    """``config`` whose CarDreamer env has dotted ``overrides`` (``task.*``, ``env.*`` keys of the task
    config, e.g. ``task.traffic.background=30``) applied on top of the task config it recorded (a
    config.yaml of before that record: added to ``env.overrides``), checked now (ConfigError naming the
    override). A gymnasium id has no such keys: refused."""
    from cardreamer.config import build_config, recorded_config

    if not overrides:
        return config
    if config.env.task_config:
        task_config = recorded_config(config.env.task_config, "env.task_config", overrides)
        return apply_overrides(config, {"env": {"task_config": task_config.model_dump(mode="json")}})
    if is_gym_id(config.env.task, config.env.overrides):
        raise ConfigError(f"command line: --{overrides[0]}: the run's env {config.env.task!r} is a gymnasium id, "
                          f"which has no task.* or env.* keys to override")
    merged = [*config.env.overrides, *overrides]
    build_config(config.env.task, merged)
    return apply_overrides(config, {"env": {"overrides": merged}})


def map_changed(config: TrainingConfig) -> str | None:
    """One line saying that the map of a run's recorded task config is not the file it trained on
    (by hash), or None (same file, or nothing recorded)."""
    from cardreamer.roadmap import map_sha256

    if not config.env.task_config or not config.env.map_sha256:
        return None
    world = config.env.task_config.get("env", {}).get("world", {})
    name = config.env.task_config["task"]["map"]
    now = map_sha256(name, world.get("map_dir"))
    if now == config.env.map_sha256:
        return None
    return (f"map {name!r} differs from the file this run trained on (sha256 {config.env.map_sha256[:12]} then, "
            f"{now[:12]} now): evaluating on the map as it is now")


def default_env_fn(config) -> EnvFn:
    """A picklable zero-argument factory of ``config.env``: the recorded task config if there is
    one (see :func:`with_task_config`), else the task named, with its overrides."""
    if config.env.task_config:
        return functools.partial(make_recorded_env, dict(config.env.task_config), imported_modules(), config.seed)
    if not config.env.task:
        raise ValueError("env.task is empty: name a CarDreamer task or a gymnasium id, e.g. --task CartPole-v1")
    return functools.partial(make_task_env, config.env.task, list(config.env.overrides), config.seed)


class RecoverOnReset(gym.Wrapper):
    """A ``reset`` that raises WorldLost (the simulator is still down after an episode ended on its loss)
    recovers the env's world (``env.unwrapped.world.recover()``) after ``pause`` seconds and resets again, at
    most ``recoveries`` times, each with one log line; then raises WorldLost saying so. Other errors pass."""

    def __init__(self, env: gym.Env, recoveries: int = RESET_RECOVERIES, pause: float = RESET_PAUSE):
        super().__init__(env)
        self.recoveries, self.pause = recoveries, pause

    def reset(self, **kwargs):
        for attempt in range(1, self.recoveries + 2):
            try:
                return self.env.reset(**kwargs)
            except WorldLost as lost:
                problem: WorldError = lost
            if attempt > self.recoveries:
                break
            log.warning("env reset: %s; recovering the world in %g s (%d of %d)", problem, self.pause, attempt,
                        self.recoveries)
            time.sleep(self.pause)
            try:
                self.env.unwrapped.world.recover()
            except WorldError as error:  # still down: the world stays lost and the next reset says so
                problem = error
        raise WorldLost(f"env reset: the simulator was lost and did not come back after {self.recoveries} "
                        f"recoveries {self.pause:g} s apart; last: {problem}. Bring it back and resume the run "
                        f"(same --logdir: it continues from the last checkpoint)") from problem


def _wrapped(env_fn: EnvFn, image_size, slot: EnvSlot) -> gym.Env:
    with building(slot):
        env = env_fn()
    return StandardObs(RecoverOnReset(env), image_size)


def make_vector_env(env_fn: EnvFn, num_envs: int, parallel: bool, image_size=None,
                    slots: Sequence[EnvSlot] | None = None) -> gym.vector.VectorEnv:
    """Vector env with next-step autoreset: after an episode's last step, the next ``step`` call
    resets that env (ignoring its action) and returns the new episode's first observation.
    Env ``i`` is built as ``slots[i]`` (default: the run's training envs, no evaluation env)."""
    slots = list(slots) if slots is not None else training_slots(num_envs, evaluation=False)
    if len(slots) != num_envs:
        raise ValueError(f"{len(slots)} env slots for {num_envs} envs")
    fns = [functools.partial(_wrapped, env_fn, image_size, slot) for slot in slots]
    mode = gym.vector.AutoresetMode.NEXT_STEP
    if num_envs > 1 and parallel:
        return gym.vector.AsyncVectorEnv(fns, context="spawn", autoreset_mode=mode)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)
