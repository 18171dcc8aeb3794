"""The training loop: collect with vector envs, store in replay, train at a fixed train ratio,
evaluate periodically, log, checkpoint and resume.

Run-directory layout (DreamerV3 style)::

    logdir/config.yaml  metrics.jsonl  scores.jsonl  checkpoints/<step>/  replay/  videos/
"""

from __future__ import annotations

import collections
import os
import tempfile
import time
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import yaml
from tqdm import tqdm

from . import checkpoint
from .config import Config, make_config
from .envs import EnvFn, default_env_fn, make_vector_env
from .logger import Logger, NullPublisher, make_publisher
from .protocol import make_backbone
from .replay import Replay

EPISODE_KEYS = ("success", "collision", "route_completion", "mean_speed")


def _info_at(info: dict, index: int) -> dict[str, float]:
    """Scalar entries of env ``index`` in a vector env's info dict."""
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
                 video_keys: tuple[str, ...] = (), max_frames: int = 1000) -> tuple[list[dict], dict]:
    """Play ``episodes`` complete episodes (counted in the order they end); returns their stats and
    the frames of env 0's first episode for each of ``video_keys``."""
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
    return results, {k: np.stack(v) for k, v in frames.items() if v}


def summarize(episodes: list[dict]) -> dict[str, float | None]:
    """Mean return/length and rates of the driving info keys (None where no episode reported one)."""
    out: dict[str, float | None] = {"episodes": len(episodes)}
    returns = [e["return"] for e in episodes]
    out["return"] = float(np.mean(returns)) if returns else None
    out["return_std"] = float(np.std(returns)) if returns else None
    out["length"] = float(np.mean([e["length"] for e in episodes])) if episodes else None
    for key in EPISODE_KEYS:
        values = [e[key] for e in episodes if key in e]
        name = f"{key}_rate" if key in ("success", "collision") else key
        out[name] = float(np.mean(values)) if values else None
    return out


def _write_config(logdir: str, config: Config) -> None:
    with tempfile.NamedTemporaryFile("w", dir=logdir, suffix=".tmp", delete=False) as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)
    os.replace(f.name, os.path.join(logdir, "config.yaml"))


def _as_config(config: Config | Mapping | None) -> Config:
    if isinstance(config, Config):
        return config
    return make_config(overrides=dict(config or {}))


def video_keys(obs_space: gym.spaces.Dict) -> tuple[str, ...]:
    """Image keys with 1 or 3 channels, which can be written as video."""
    return tuple(k for k, s in obs_space.spaces.items() if len(s.shape) == 3 and s.shape[-1] in (1, 3))


def train(config: Config | Mapping, env_fn: EnvFn | None = None, publisher=None) -> dict:
    """Train ``config.backbone`` on ``config.env`` (or ``env_fn``) into ``config.logdir``.

    An existing logdir with checkpoints is resumed: model, optimizer, replay and counters.
    Returns a summary dict of counters and the last evaluation.
    """
    config = _as_config(config)
    if not config.logdir:
        raise ValueError("logdir is empty: pass --logdir or set logdir in the config")
    logdir = os.path.abspath(os.path.expanduser(config.logdir))
    os.makedirs(logdir, exist_ok=True)
    _write_config(logdir, config)
    own_publisher = publisher is None
    publisher = publisher or make_publisher(config, os.path.basename(logdir))
    env_fn = env_fn or default_env_fn(config)
    run, model = config.run, config.model
    envs = make_vector_env(env_fn, config.env.num_envs, config.env.parallel, config.env.image_size)
    eval_envs = None
    try:
        agent = make_backbone(config.backbone, envs.single_observation_space, envs.single_action_space, config)
        replay = Replay(model.batch_length, config.replay.capacity, config.replay.chunk_size, config.replay.online,
                        config.seed)
        counters = {"env_steps": 0, "updates": 0, "episodes": 0, "next_eval": run.eval_every}
        loaded = checkpoint.load_latest(logdir, agent.load)
        if loaded:
            counters.update(loaded[1])
            replay.load(os.path.join(logdir, "replay"))
        logger = Logger(logdir, publisher)
        keys = video_keys(envs.single_observation_space)
        collector = Collector(envs, config.seed + counters["env_steps"])
        recent = collections.deque(maxlen=20)
        train_metrics: dict[str, list[float]] = collections.defaultdict(list)
        owed = 0.0
        per_update = model.batch_size * model.batch_length
        last_log = last_save = last_report = time.time()
        mark_steps, mark_updates = counters["env_steps"], counters["updates"]
        bar_mark = (last_log, mark_steps, mark_updates)
        last_eval: dict = {}
        bar = tqdm(total=run.steps, initial=counters["env_steps"], unit="step", disable=not run.progress,
                   dynamic_ncols=True, desc=os.path.basename(logdir))

        def save() -> None:
            replay.save(os.path.join(logdir, "replay"))
            checkpoint.save_checkpoint(logdir, counters["env_steps"], agent.save, counters, run.keep_checkpoints)

        while counters["env_steps"] < run.steps:
            steps, finished = collector.step(agent, "train")
            for i in range(envs.num_envs):
                replay.add({k: v[i] for k, v in steps.items()}, env=i)
                for key in keys:
                    publisher.publish_frame(key, steps[key][i], i)
            counters["env_steps"] += envs.num_envs
            bar.update(envs.num_envs)
            for env, episode in finished:
                counters["episodes"] += 1
                recent.append(episode)
                logger.score(counters["env_steps"], {f"episode/{k}": v for k, v in episode.items()})
                logger.episode(episode, env)

            if counters["env_steps"] >= run.train_fill and replay.ready():
                owed += envs.num_envs * run.train_ratio / per_update
                while owed >= 1:
                    _, metrics = agent.train(replay.sample(model.batch_size), None)
                    for k, v in metrics.items():
                        train_metrics[k].append(v)
                    counters["updates"] += 1
                    owed -= 1

            now = time.time()
            if now - bar_mark[0] >= 1.0:
                elapsed = now - bar_mark[0]
                fps = (counters["env_steps"] - bar_mark[1]) / elapsed
                ups = (counters["updates"] - bar_mark[2]) / elapsed
                bar.set_postfix(_postfix(fps, ups, recent), refresh=False)
                bar_mark = (now, counters["env_steps"], counters["updates"])
            if run.report_every and counters["updates"] and now - last_report >= run.report_every:
                last_report = now
                for name, value in agent.report(replay.sample(model.batch_size)).items():
                    if np.ndim(value) == 4:
                        logger.video(name.replace("/", "-"), counters["env_steps"], value, run.video_fps)
                        logger.dream(counters["env_steps"], value)
                    elif np.ndim(value) == 0:
                        train_metrics[name].append(float(value))

            if run.eval_every and counters["env_steps"] >= counters["next_eval"]:
                while counters["next_eval"] <= counters["env_steps"]:
                    counters["next_eval"] += run.eval_every
                if eval_envs is None:
                    eval_envs = make_vector_env(env_fn, 1, False, config.env.image_size)
                episodes, frames = run_episodes(agent, eval_envs, run.eval_episodes, "eval",
                                                config.seed + 10_000 + counters["env_steps"], keys,
                                                run.max_video_frames)
                last_eval = summarize(episodes)
                row = {f"eval/{k}": v for k, v in last_eval.items()}
                logger.score(counters["env_steps"], row)
                logger.metrics(counters["env_steps"], row)
                for key, video in frames.items():
                    logger.video(f"eval-{key}", counters["env_steps"], video, run.video_fps)

            if now - last_log >= run.log_every or counters["env_steps"] >= run.steps:
                elapsed = max(now - last_log, 1e-6)
                row = {f"train/{k}": float(np.mean(v)) for k, v in train_metrics.items()}
                fps = (counters["env_steps"] - mark_steps) / elapsed
                ups = (counters["updates"] - mark_updates) / elapsed
                row.update({"fps/env": fps, "fps/updates": ups, "replay/steps": len(replay), **counters})
                if recent:
                    row["episode/return_recent"] = float(np.mean([e["return"] for e in recent]))
                logger.metrics(counters["env_steps"], row)
                train_metrics.clear()
                last_log, mark_steps, mark_updates = now, counters["env_steps"], counters["updates"]

            if now - last_save >= run.save_every:
                save()
                last_save = now
        save()
        bar.close()
        return {"logdir": logdir, **counters, "recent_return": float(np.mean([e["return"] for e in recent]))
                if recent else None, "eval": last_eval}
    finally:
        envs.close()
        if eval_envs is not None:
            eval_envs.close()
        if own_publisher:
            publisher.close()


def _postfix(fps: float, ups: float, recent) -> dict[str, str]:
    post = {"env/s": f"{fps:.1f}", "upd/s": f"{ups:.2f}"}
    if recent:
        post["return"] = f"{np.mean([e['return'] for e in recent]):.1f}"
        successes = [e["success"] for e in recent if "success" in e]
        if successes:
            post["success"] = f"{np.mean(successes):.0%}"
    return post


__all__ = ["train", "run_episodes", "summarize", "Collector", "NullPublisher"]
