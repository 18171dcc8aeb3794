"""The training loop: collect with vector envs, store in replay, train at a fixed train ratio,
evaluate periodically, log, checkpoint and resume.

Run-directory layout (DreamerV3 style)::

    logdir/config.yaml  metrics.jsonl  scores.jsonl  checkpoints/<step>/  replay/  videos/

A fresh run may start from another run's checkpoint (``run.from_checkpoint``, for fine-tuning or
transfer to another task): its backbone state and optionally its replay; counters start at zero.

Checkpoints are written every ``run.save_every`` seconds and ``run.save_every_steps`` env steps,
at the end, and on SIGINT/SIGTERM, after which the run stops; running the same command resumes.
On resume, log rows past the restored checkpoint are dropped, so every log stays monotone.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import gymnasium as gym
import numpy as np
import yaml
from tqdm import tqdm

from cardreamer.atomic import atomic_output
from cardreamer.config_loading import ConfigError
from cardreamer.plugins import imported_modules
from cardreamer.world.slot import evaluation_slot, training_slots

from . import checkpoint
from .config import TrainingConfig, apply_overrides, load_config, make_config
from .envs import EnvFn, StandardObs, default_env_fn, make_vector_env, with_task_config
from .logger import Logger, make_outputs, make_publisher
from .protocol import batch_shape, make_backbone
from .replay import Replay, available_memory, check_memory, provenance, step_bytes
from .runlog import RunLog
from .status import RunStatus

EPISODE_KEYS = ("success", "collision", "route_completion", "mean_speed")


def _info_at(info: dict, index: int) -> dict[str, float | str]:
    """Scalar entries of env ``index`` in a vector env's info dict, and its ``terminal_reason``."""
    out = {}
    for key, values in info.items():
        if key.startswith("_") or not isinstance(values, np.ndarray) or values.ndim != 1:
            continue
        mask = info.get("_" + key)
        if mask is not None and not mask[index]:
            continue
        value = values[index]
        if isinstance(value, (np.bool_, bool, np.integer, np.floating, int, float)):
            out[key] = float(value)
    reason = info.get("terminal_reason")
    if reason is not None and info.get("_terminal_reason", np.ones(len(reason), bool))[index] and reason[index]:
        out["terminal_reason"] = str(reason[index])
    return out


class Collector:
    """Steps a vector env with a backbone's policy and turns transitions into replay steps.

    Step t holds the observation, the reward and flags that came with it, and the action then
    taken. With next-step autoreset, the step after an episode's last is the next one's first.
    """

    def __init__(self, envs: gym.vector.VectorEnv, seed: int):
        self.envs, n = envs, envs.num_envs
        self.obs, _ = envs.reset(seed=seed)
        self.reward = np.zeros(n, np.float32)
        self.is_first = np.ones(n, bool)
        self.is_last = np.zeros(n, bool)
        self.is_terminal = np.zeros(n, bool)
        self.end_info: list[dict] = [{} for _ in range(n)]
        self.info: dict = {}  # the vector env's info of the newest step
        self.ep_return = np.zeros(n, np.float64)
        self.ep_length = np.zeros(n, np.int64)
        self.policy_state: Any = None

    def step(self, agent, mode: str) -> tuple[dict[str, np.ndarray], list[tuple[int, dict]]]:
        """One vector step; returns the stored steps (batched over envs) and finished episodes."""
        inputs = {**self.obs, "is_first": self.is_first.copy()}
        action, self.policy_state = agent.policy(inputs, self.policy_state, mode)
        action = np.asarray(action)
        steps = {**self.obs, "action": action, "reward": self.reward.copy(), "is_first": self.is_first.copy(),
                 "is_last": self.is_last.copy(), "is_terminal": self.is_terminal.copy()}
        self.ep_return += self.reward
        self.ep_length += ~self.is_first
        finished = []
        for i in np.flatnonzero(self.is_last):
            episode = {"return": float(self.ep_return[i]), "length": int(self.ep_length[i]), **self.end_info[i]}
            finished.append((int(i), episode))
            self.ep_return[i], self.ep_length[i] = 0.0, 0
        obs, reward, terminated, truncated, info = self.envs.step(action)
        self.info = info
        restarted = self.is_last.copy()  # these envs were reset by this step
        self.obs = obs
        self.reward = np.where(restarted, 0.0, reward).astype(np.float32)
        self.is_first = restarted
        self.is_terminal = ~restarted & terminated
        self.is_last = ~restarted & (terminated | truncated)
        for i in np.flatnonzero(self.is_last):
            self.end_info[i] = _info_at(info, int(i))
        return steps, finished


def run_episodes(agent, envs: gym.vector.VectorEnv, episodes: int, mode: str, seed: int,
                 video_keys: tuple[str, ...] = (), max_frames: int = 1000,
                 on_episode: Callable[[int], None] | None = None) -> tuple[list[dict], dict]:
    """Play ``episodes`` complete episodes (counted in the order they end); returns their stats and
    the frames of env 0's first episode for each of ``video_keys``. ``on_episode(n)`` is called
    with the number of episodes done after each one ends."""
    collector = Collector(envs, seed)
    results: list[dict] = []
    frames: dict[str, list] = {k: [] for k in video_keys}
    recording = True
    while len(results) < episodes:
        steps, finished = collector.step(agent, mode)
        if recording:
            for key in video_keys:
                if len(frames[key]) < max_frames:
                    frames[key].append(steps[key][0])
        for env, episode in finished:
            recording = recording and env != 0
            if len(results) < episodes:
                results.append(episode)
                if on_episode:
                    on_episode(len(results))
    return results, {k: np.stack(v) for k, v in frames.items() if v}


class EpisodeFrames:
    """The frames of env 0's every ``every``-th training episode (its first one included), for
    each of ``keys``, at most ``max_frames`` of each; ``every=0`` records none."""

    def __init__(self, every: int, keys: tuple[str, ...], max_frames: int):
        self.every, self.keys, self.max_frames = every, keys if every else (), max_frames
        self.started = 0  # env 0's episodes begun in this process
        self.frames: dict[str, list[np.ndarray]] | None = None  # None: not recording this episode

    def add(self, steps: dict[str, np.ndarray]) -> None:
        """Env 0's observations of one vector step (``steps`` batched over envs)."""
        if not self.keys:
            return
        if steps["is_first"][0]:
            self.frames = {key: [] for key in self.keys} if self.started % self.every == 0 else None
            self.started += 1
        if self.frames is not None and len(self.frames[self.keys[0]]) < self.max_frames:
            for key in self.keys:
                self.frames[key].append(steps[key][0].copy())

    def take(self) -> dict[str, np.ndarray]:
        """The frames of env 0's episode that just ended (empty if it was not recorded)."""
        frames, self.frames = self.frames, None
        return {key: np.stack(v) for key, v in frames.items() if v} if frames else {}


def summarize(episodes: list[dict]) -> dict[str, float | None]:
    """Mean return/length and rates of the driving info keys (None where no episode reported one)."""
    out: dict[str, float | None] = {"episodes": len(episodes)}
    returns = [e["return"] for e in episodes]
    out["return"] = float(np.mean(returns)) if returns else None
    out["return_std"] = float(np.std(returns)) if returns else None
    out["length"] = float(np.mean([e["length"] for e in episodes])) if episodes else None
    for key in EPISODE_KEYS:
        values = [e[key] for e in episodes if e.get(key) is not None]
        name = f"{key}_rate" if key in ("success", "collision") else key
        out[name] = float(np.mean(values)) if values else None
    return out


def recorded_config(config: TrainingConfig) -> dict[str, Any]:
    """``config`` as config.yaml (and W&B) record it: without the visualizer's token."""
    data = config.to_dict()
    data["run"]["serve_url"] = urlsplit(data["run"]["serve_url"])._replace(query="").geturl()
    data["run"]["serve_token"] = ""
    return data


def _write_config(logdir: str, config: TrainingConfig) -> None:
    with atomic_output(os.path.join(logdir, "config.yaml"), "w") as f:
        yaml.safe_dump(recorded_config(config), f, sort_keys=False)


def _as_config(config: TrainingConfig | Mapping | None) -> TrainingConfig:
    if isinstance(config, TrainingConfig):
        return config
    return make_config(overrides=dict(config or {}))


def with_plugins(config: TrainingConfig) -> TrainingConfig:
    """``config`` recording the plugin modules this process imported too (eval re-imports them)."""
    plugins = list(dict.fromkeys([*config.plugins, *imported_modules()]))
    return config if plugins == config.plugins else apply_overrides(config, {"plugins": plugins})


def video_keys(obs_space: gym.spaces.Dict) -> tuple[str, ...]:
    """Image keys with 1 or 3 channels, which can be written as video."""
    return tuple(k for k, s in obs_space.spaces.items() if len(s.shape) == 3 and s.shape[-1] in (1, 3))


class Trainer:
    """One training run: collection, replay, updates at the train ratio, reports, evaluations,
    logs and checkpoints. ``run()`` resumes from the run directory's newest checkpoint; a run without
    one starts from ``start`` (see :func:`starting_checkpoint`) if given."""

    def __init__(self, config: TrainingConfig, logdir: str, env_fn: EnvFn, envs: gym.vector.VectorEnv, publisher,
                 start: tuple[str, str] | None = None, run_log: RunLog | None = None):
        self.config, self.logdir, self.env_fn, self.envs = config, logdir, env_fn, envs
        self.own_log = run_log is None  # a run log of its own, which close() closes
        self.run_log = run_log or RunLog(logdir)
        self.run_cfg = config.run
        self.agent = make_backbone(config.backbone, envs.single_observation_space, envs.single_action_space, config)
        self.batch_size, self.batch_length = batch_shape(self.agent)
        # Replay context: sequences carry that many steps before the trained ones, and the replay
        # keeps the latents the agent returns (a backbone without these attributes has none).
        self.context = int(getattr(self.agent, "replay_context", 0))
        self.replay = Replay(self.batch_length + self.context, config.replay.capacity,
                             config.replay.chunk_size, config.replay.online, config.seed,
                             latents=getattr(self.agent, "replay_latents", {}) if self.context else {})
        self.counters = {"env_steps": 0, "updates": 0, "episodes": 0, "next_eval": self.run_cfg.eval_every}
        self.layout = checkpoint.space_layout(envs.single_observation_space, envs.single_action_space)
        loaded = checkpoint.load_latest(logdir, self.agent.load)
        if loaded:
            self.counters.update(loaded[1])
            self.replay.load(os.path.join(logdir, "replay"))
        elif start is not None:
            self._start_from(*start)
        begun = (f"resumed at {self.counters['env_steps']:,} env steps" if loaded else
                 f"fresh, from the checkpoint {start[1]}" if start else "fresh")
        size, task = f" ({config.size})" if config.size else "", f" on {config.env.task}" if config.env.task else ""
        self.run_log.info(f"start: {config.backbone}{size}{task}, {self.run_cfg.steps:,} env steps, {begun}")
        self.pretrain_updates = 0
        if not loaded and self.run_cfg.pretrain_data:
            self._fill_from_dataset(self.run_cfg.pretrain_data)
        check_memory(step_bytes(envs.single_observation_space, envs.single_action_space, self.replay.latents),
                     config.replay.capacity, len(self.replay), self.run_cfg.steps - self.counters["env_steps"],
                     envs.num_envs, config.replay.chunk_size, available_memory())
        self.logger = Logger(logdir, publisher, make_outputs(self.run_cfg.loggers, logdir, recorded_config(config),
                                                             self.counters["env_steps"], self.run_log.warning))
        self.logger.truncate(self.counters["env_steps"])  # rows written after the restored checkpoint
        self.publisher = publisher
        self.video_keys = video_keys(envs.single_observation_space)
        self.episode_frames = EpisodeFrames(self.run_cfg.train_video_every, self.video_keys,
                                            self.run_cfg.max_video_frames)
        self.recent: collections.deque[dict] = collections.deque(maxlen=20)
        self.train_metrics: dict[str, list[float]] = collections.defaultdict(list)
        self.owed_updates = 0.0
        self.training = False
        self.compiled = False  # whether this process has run a train step (the first one compiles it)
        self.status = RunStatus(publisher, counters=self.counters, total_steps=self.run_cfg.steps,
                                name=os.path.basename(logdir), log=self.run_log.info)
        self.last_eval: dict = {}
        self.eval_envs: gym.vector.VectorEnv | None = None
        self.stop_signal: str | None = None  # set by SIGINT/SIGTERM: save and stop

    def _start_from(self, source_dir: str, folder: str) -> None:
        """Start this fresh run from another run's checkpoint ``folder`` (counters start at zero): the
        backbone's state and, if ``run.from_checkpoint_parts`` says so, the replay of ``source_dir``."""
        checkpoint.load_checkpoint(folder, self.agent.load)
        if "replay" in self.run_cfg.from_checkpoint_parts.split(","):
            self.replay.adopt(os.path.join(source_dir, "replay"))

    def _fill_from_dataset(self, path: str) -> None:
        """Put a collected dataset's episodes into the replay, observations standardised as the
        env's, and schedule ``run.pretrain_updates`` updates on them before collection."""
        from task_dev_suite.dataset import fill_replay

        raw_env = self.env_fn()
        try:
            transform = StandardObs(raw_env, self.config.env.image_size).observation
            added = fill_replay(self.replay, path, keys=list(self.envs.single_observation_space.spaces),
                                transform=transform)
        finally:
            raw_env.close()
        if not added:
            raise ValueError(f"run.pretrain_data={path!r}: the dataset holds no steps")
        self.pretrain_updates = self.run_cfg.pretrain_updates

    def _pretrain(self) -> None:
        """Offline updates on the replay filled from a dataset (world model and behaviour)."""
        self.status.set("pretraining", f"{self.pretrain_updates} updates")
        for _ in tqdm(range(self.pretrain_updates), desc="pretrain", unit="update", disable=not self.run_cfg.progress):
            self._update(online=False)
        self.pretrain_updates = 0

    def _update(self, online: bool) -> None:
        """One update on a sampled batch; the latents it returns go back into the replay."""
        batch, positions = self.replay.sample_with_positions(self.batch_size, online)
        first = contextlib.nullcontext() if self.compiled else self.status.during(
            "compiling", then="training" if online else None)  # the first train step compiles it
        with first:
            outputs, metrics = self.agent.train(batch, None)
        self.compiled = True
        if isinstance(outputs, Mapping) and "replay" in outputs:
            self.replay.update(positions, outputs["replay"], offset=self.context)
        for key, value in metrics.items():
            self.train_metrics[key].append(value)
        self.counters["updates"] += 1

    def run(self) -> dict:
        run, counters = self.run_cfg, self.counters
        bar = tqdm(total=run.steps, initial=counters["env_steps"], unit="step", disable=not run.progress,
                   dynamic_ncols=True, desc=os.path.basename(self.logdir))
        self.status.bar = bar
        if self.pretrain_updates:
            self._pretrain()
        ready = counters["env_steps"] >= run.train_fill and self.replay.ready()
        self.status.set("training" if ready else "filling")
        collector = Collector(self.envs, self.config.seed + counters["env_steps"])
        now = time.time()
        last = {"log": now, "save": now, "report": now, "bar": now}
        marks = {"log": (counters["env_steps"], counters["updates"]), "bar": (counters["env_steps"], counters["updates"])}
        saved_at = counters["env_steps"]
        while counters["env_steps"] < run.steps and not self.stop_signal:
            self._collect(collector)
            bar.update(self.envs.num_envs)
            self._train()
            now = time.time()
            self.status.tick()
            if now - last["bar"] >= 1.0:
                bar.set_postfix(_postfix(*self._rates(marks, last, "bar", now), self.recent), refresh=False)
            if run.report_every and counters["updates"] and now - last["report"] >= run.report_every:
                last["report"] = now
                self._report()
            if run.eval_every and counters["env_steps"] >= counters["next_eval"]:
                while counters["next_eval"] <= counters["env_steps"]:
                    counters["next_eval"] += run.eval_every
                self._evaluate()
            if now - last["log"] >= run.log_every or counters["env_steps"] >= run.steps:
                self._log(*self._rates(marks, last, "log", now))
            due_steps = run.save_every_steps and counters["env_steps"] - saved_at >= run.save_every_steps
            if now - last["save"] >= run.save_every or due_steps:
                last["save"], saved_at = now, counters["env_steps"]
                self.save()
        self.save()
        if self.stop_signal:
            self.run_log.info(f"stopped by {self.stop_signal} at {counters['env_steps']:,} env steps, checkpoint saved")
        self.status.set("done")
        bar.close()
        recent = float(np.mean([e["return"] for e in self.recent])) if self.recent else None
        return {"logdir": self.logdir, **counters, "recent_return": recent, "eval": self.last_eval,
                "stopped_by": self.stop_signal}

    def _rates(self, marks: dict, last: dict, name: str, now: float) -> tuple[float, float]:
        """Env steps/s and updates/s since the previous call for ``name``."""
        elapsed = max(now - last[name], 1e-6)
        steps, updates = marks[name]
        marks[name], last[name] = (self.counters["env_steps"], self.counters["updates"]), now
        return (self.counters["env_steps"] - steps) / elapsed, (self.counters["updates"] - updates) / elapsed

    def _collect(self, collector: Collector) -> None:
        steps, finished = collector.step(self.agent, "train")
        publish_step = getattr(self.publisher, "publish_step", None)  # optional publisher method
        for i in range(self.envs.num_envs):
            self.replay.add({k: v[i] for k, v in steps.items()}, env=i, env_step=self.counters["env_steps"] + i)
            for key in self.video_keys:
                self.publisher.publish_frame(key, steps[key][i], i)
            if publish_step:  # the step the env just took: its reward, r_* terms, speed, terminal reason
                publish_step({"reward": float(collector.reward[i]), **_info_at(collector.info, i)}, i)
        self.episode_frames.add(steps)
        self.counters["env_steps"] += self.envs.num_envs
        for env, episode in finished:
            self.counters["episodes"] += 1
            # Its last step was just added: the replay's number of the episode, which dreams name too.
            episode["number"] = self.replay.episode_of(env)
            self.recent.append(episode)
            if env == 0:  # its videos before its row, so that a viewer of the row finds them
                for key, video in self.episode_frames.take().items():
                    self.logger.video(f"train-{key}", self.counters["env_steps"], video, self.run_cfg.video_fps,
                                      episode=episode["number"])
            # episode/score too: the key DreamerV3's own plotting reads
            row = {**{f"episode/{k}": v for k, v in episode.items()}, "episode/score": episode["return"]}
            self.logger.score(self.counters["env_steps"], row, labels=("episode/number",))
            self.logger.episode(episode, env)

    def _train(self) -> None:
        """Updates so that replayed steps per env step match the train ratio."""
        if not self.training:  # stays on once the replay is filled
            self.training = self.counters["env_steps"] >= self.run_cfg.train_fill and self.replay.ready()
            if not self.training:
                return
        batch_steps = self.batch_size * self.batch_length
        self.owed_updates += self.envs.num_envs * self.run_cfg.train_ratio / batch_steps
        while self.owed_updates >= 1:
            self._update(online=True)
            self.owed_updates -= 1

    def _report(self) -> None:
        step = self.counters["env_steps"]
        with self.status.during("reporting"):
            batch, positions = self.replay.sample_with_positions(self.batch_size, online=False)
            report = self.agent.report(batch)
        # Open-loop videos stack replay samples of an observation key vertically (the batch's
        # first ones); the frames the model observed first are the backbone's report_context, if
        # its config has one. Each sample is published with the env, episode and steps it shows.
        context = getattr(self.config.model, "report_context", None)
        spaces = self.envs.single_observation_space.spaces
        for name, value in report.items():
            if np.ndim(value) == 4:
                self.logger.video(name.replace("/", "-"), step, value, self.run_cfg.video_fps)
                space = spaces.get(name.split("/", 1)[-1])
                height = space.shape[0] if space is not None and len(space.shape) == 3 else 0
                rows = value.shape[1] // height if height and value.shape[1] % height == 0 else 1
                origins = self.replay.origins(positions[:rows], min(len(value), self.replay.length))
                self.logger.dream(step, value, context, rows, [provenance(o) for o in origins])
            elif np.ndim(value) == 0:
                self.train_metrics[name].append(float(value))

    def _evaluate(self) -> None:
        step = self.counters["env_steps"]
        if self.eval_envs is None:
            self.eval_envs = make_vector_env(self.env_fn, 1, False, self.config.env.image_size,
                                             [evaluation_slot(self.envs.num_envs)])
        total = self.run_cfg.eval_episodes
        number = step // self.run_cfg.eval_every  # 1 for the first evaluation, also after a resume
        recorded = self.video_keys if (number - 1) % self.run_cfg.video_every == 0 else ()
        with self.status.during("evaluating", f"episode 0/{total}"):
            episodes, frames = run_episodes(
                self.agent, self.eval_envs, total, "eval", self.config.seed + 10_000 + step, recorded,
                self.run_cfg.max_video_frames, on_episode=lambda n: self.status.set("evaluating", f"episode {n}/{total}"))
        self.last_eval = summarize(episodes)
        self.run_log.info(f"evaluation at {step:,} env steps: " + _eval_line(self.last_eval))
        for key, video in frames.items():  # before the row, so that a viewer of the row finds them
            self.logger.video(f"eval-{key}", step, video, self.run_cfg.video_fps)
        self.logger.evaluation(step, {f"eval/{k}": v for k, v in self.last_eval.items()})

    def _log(self, fps: float, ups: float) -> None:
        row = {f"train/{k}": float(np.mean(v)) for k, v in self.train_metrics.items()}
        row.update({"fps/env": fps, "fps/updates": ups, "replay/steps": len(self.replay), **self.counters})
        if self.recent:
            row["episode/return_recent"] = float(np.mean([e["return"] for e in self.recent]))
        self.logger.metrics(self.counters["env_steps"], row)
        self.train_metrics.clear()

    def save(self) -> None:
        with self.status.during("saving"):
            self.replay.save(os.path.join(self.logdir, "replay"))
            checkpoint.save_checkpoint(self.logdir, self.counters["env_steps"], self.agent.save, self.counters,
                                       self.run_cfg.keep_checkpoints, self.layout)

    def close(self) -> None:
        self.logger.close()
        if self.eval_envs is not None:
            self.eval_envs.close()
        if self.own_log:
            self.run_log.close()


def starting_checkpoint(config: TrainingConfig, logdir: str, layout: dict) -> tuple[str, str] | None:
    """(run dir, checkpoint folder) of ``run.from_checkpoint`` for a run in ``logdir`` without
    checkpoints of its own, else None. Refuses (CheckpointError) one of another backbone, size or
    observation/action ``layout``, naming the difference."""
    path = config.run.from_checkpoint
    if not path or checkpoint.checkpoint_dirs(logdir):
        return None
    where = f"run.from_checkpoint={path}"
    try:
        source_dir, folder = checkpoint.resolve(path)
    except FileNotFoundError as error:
        raise checkpoint.CheckpointError(f"{where}: {error}") from None
    source = load_config(os.path.join(source_dir, "config.yaml"))
    for key in ("backbone", "size"):
        there, here = getattr(source, key), getattr(config, key)
        if there != here:
            raise checkpoint.CheckpointError(f"{where}: {key} {there!r} in that run, {here!r} in this one")
    checkpoint.check_layout(folder, layout, where)
    return source_dir, folder


def train(config: TrainingConfig | Mapping, env_fn: EnvFn | None = None, publisher=None) -> dict:
    """Train ``config.backbone`` on ``config.env`` (or ``env_fn``) into ``config.logdir``.

    An existing logdir with checkpoints is resumed: model, optimizer, replay and counters.
    config.yaml records the CarDreamer task's resolved config and its map's hash (``env.task_config``,
    ``env.map_sha256``; not when ``env_fn`` is given), which the envs are built from.
    ``publisher`` receives metrics and frames (default: the visualizer's when ``run.serve``).
    Returns a summary dict of counters and the last evaluation.
    """
    config = _as_config(config)
    if not config.logdir:
        raise ValueError("logdir is empty: pass --logdir or set logdir in the config")
    config = with_plugins(config if env_fn else with_task_config(config))
    logdir = os.path.abspath(os.path.expanduser(config.logdir))
    env_fn = env_fn or default_env_fn(config)
    envs = make_vector_env(env_fn, config.env.num_envs, config.env.parallel, config.env.image_size,
                           training_slots(config.env.num_envs, evaluation=bool(config.run.eval_every)))
    trainer = own_publisher = None
    try:
        layout = checkpoint.space_layout(envs.single_observation_space, envs.single_action_space)
        start = starting_checkpoint(config, logdir, layout)  # refused before anything is written
        os.makedirs(logdir, exist_ok=True)
        _write_config(logdir, config)
        if publisher is None:  # made once the run's directory exists: it announces it to the server
            publisher = own_publisher = make_publisher(config, config.run.serve_name or os.path.basename(logdir),
                                                       logdir)
        run_log = RunLog(logdir, publisher)
        try:
            with run_log.capture():
                trainer = Trainer(config, logdir, env_fn, envs, publisher, start, run_log)
                with _stop_on_signals(trainer):
                    return trainer.run()
        except BaseException as error:
            run_log.error(error, brief=isinstance(error, (ConfigError, checkpoint.CheckpointError)))
            raise
        finally:
            run_log.close()
    finally:
        if trainer is not None:
            trainer.close()
        envs.close()
        if own_publisher is not None:
            own_publisher.close()


@contextlib.contextmanager
def _stop_on_signals(trainer: Trainer) -> Iterator[None]:
    """While active (main thread only), SIGINT and SIGTERM ask the trainer to save and stop; a
    second signal interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        if trainer.stop_signal:
            raise KeyboardInterrupt
        trainer.stop_signal = signal.Signals(signum).name

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _eval_line(summary: dict) -> str:
    """An evaluation's summary in words: episodes, return, and the driving rates it has."""
    parts = [f"{summary['episodes']} episodes", f"return {summary['return']:.1f} ± {summary['return_std']:.1f}"]
    for key, name in (("success_rate", "success"), ("collision_rate", "collisions"), ("route_completion", "route")):
        if summary.get(key) is not None:
            parts.append(f"{name} {summary[key]:.0%}")
    return ", ".join(parts)


def _postfix(fps: float, ups: float, recent) -> dict[str, str]:
    post = {"env/s": f"{fps:.1f}", "upd/s": f"{ups:.2f}"}
    if recent:
        post["return"] = f"{np.mean([e['return'] for e in recent]):.1f}"
        successes = [e["success"] for e in recent if "success" in e]
        if successes:
            post["success"] = f"{np.mean(successes):.0%}"
    return post


__all__ = ["Collector", "Trainer", "run_episodes", "summarize", "train"]
