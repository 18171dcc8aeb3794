"""``cardreamer collect``: record episodes of a task with a policy into a dataset folder.

Every enabled observation, the actions, rewards, episode flags and the numeric step info are
recorded in the format described in ``task_dev_suite.dataset``. Episodes are written atomically
(temporary file, then rename) and only then appended to ``index.jsonl``; at start the folder is
repaired (index lines whose file is missing and files without an index line are dropped), so a
killed collection leaves complete episodes and a consistent index, and re-running appends
episodes with seeds not used yet. With ``envs > 1`` episodes are recorded by that many worker
processes (spawn context); the parent alone writes the index.

Policies: ``expert`` (the scripted expert), ``random``, ``checkpoint:PATH`` (a trained backbone:
a run directory or one of its checkpoint folders) and ``human`` (keyboard, in the visualizer page).
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import multiprocessing as mp
import os
import queue
import re
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cardreamer.atomic import atomic_output
from cardreamer.config_loading import ConfigError
from task_dev_suite.dataset import INDEX_FILE, is_point_key, read_index

POLICY_NAMES = ("expert", "random", "checkpoint:PATH", "human")
EPISODE_METRICS = ("success", "collision", "route_completion", "mean_speed", "terminal_reason")


class CollectError(ValueError):
    """Bad collection arguments (policy, folder, counts); the message says what would be valid."""


# ----------------------------------------------------------------------------- policies
class ExpertAgent:
    def __init__(self, env):
        from cardreamer.expert import ExpertPolicy

        self.expert = ExpertPolicy(env)

    def reset(self, seed: int) -> None:
        pass

    def act(self, obs: dict, is_first: bool):
        return self.expert.act()


class RandomAgent:
    def __init__(self, env):
        self.space = env.action_space

    def reset(self, seed: int) -> None:
        self.space.seed(seed)

    def act(self, obs: dict, is_first: bool):
        return self.space.sample()


class CheckpointAgent:
    """A trained backbone loaded from a run directory or a checkpoint folder, acting greedily."""

    def __init__(self, env, path: str):
        try:
            from cardreamer.training import checkpoint
            from cardreamer.training.config import load_config
            from cardreamer.training.envs import StandardObs
            from cardreamer.training.protocol import make_backbone
        except ImportError as exc:
            raise CollectError(f"policy checkpoint:{path} needs the cardreamer.training package ({exc})") from None
        try:
            logdir, _ = checkpoint.resolve(path)
        except FileNotFoundError as error:
            raise CollectError(f"policy checkpoint:{error}") from None
        config = load_config(os.path.join(logdir, "config.yaml"))
        self.standard = StandardObs(env, config.env.image_size)
        self.agent = make_backbone(config.backbone, self.standard.observation_space, env.action_space, config)
        try:
            checkpoint.restore(path, self.agent.load)
        except checkpoint.CheckpointError as error:
            raise CollectError(f"policy checkpoint:{error}") from None
        self.state = None

    def reset(self, seed: int) -> None:
        self.state = None

    def act(self, obs: dict, is_first: bool):
        inputs = {k: np.asarray(v)[None] for k, v in self.standard.observation(obs).items()}
        inputs["is_first"] = np.array([is_first])
        action, self.state = self.agent.policy(inputs, self.state, "eval")
        return np.asarray(action)[0]


class HumanAgent:
    """Keyboard driving in the visualizer page (arrows/WASD), stepped at 10 Hz."""

    HZ = 10.0

    def __init__(self, env, logdir: str):
        try:
            from visualization.cli import start_server_subprocess
            from visualization.drive import KeyboardActions
            from visualization.publisher import make_publisher
            from visualization.wrapper import publish_observation
        except ImportError as exc:
            raise CollectError(f"policy 'human' needs the visualization package ({exc})") from None
        self.keys = KeyboardActions.for_env(env, discrete_actions=getattr(env.actions, "grid", None))
        self.process, url = start_server_subprocess(logdir)  # prints the page's URL
        self.publisher = make_publisher(url, None, "collect-human", interactive=True, max_fps=30.0)
        self.publish = publish_observation
        self.next_tick = time.monotonic()

    def reset(self, seed: int) -> None:
        self.next_tick = time.monotonic()

    def act(self, obs: dict, is_first: bool):
        self.publish(self.publisher, obs, None)
        self.next_tick = max(self.next_tick + 1.0 / self.HZ, time.monotonic())
        time.sleep(max(0.0, self.next_tick - time.monotonic()))
        control = self.publisher.poll_control(max_age=1.0)
        return self.keys.action(control.keys if control is not None else {})

    def close(self) -> None:
        self.publisher.close()
        self.process.terminate()
        self.process.wait(timeout=10)


def make_agent(policy: str, env, out: Path):
    """The agent of a ``--policy`` value; each has ``reset(seed)`` and ``act(obs, is_first)``."""
    if policy == "expert":
        return ExpertAgent(env)
    if policy == "random":
        return RandomAgent(env)
    if policy.startswith("checkpoint:") and len(policy) > len("checkpoint:"):
        return CheckpointAgent(env, policy.split(":", 1)[1])
    if policy == "human":
        return HumanAgent(env, str(out / ".visualizer"))
    raise CollectError(f"unknown policy {policy!r}; valid: {', '.join(POLICY_NAMES)}")


# ----------------------------------------------------------------------------- recording
@dataclass
class EpisodeRecorder:
    """Accumulates the steps of one episode and packs them into the dataset's flat arrays."""

    obs: list[dict] = field(default_factory=list)
    infos: list[dict] = field(default_factory=list)
    actions: list[Any] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    terminated: bool = False

    def add(self, obs: dict, reward: float, info: dict) -> None:
        self.obs.append(obs)
        self.rewards.append(float(reward))
        self.infos.append(info)

    def pack(self) -> dict[str, np.ndarray]:
        steps = len(self.obs)
        actions = [np.asarray(a) for a in self.actions]
        actions.append(np.zeros_like(actions[-1]))  # no action follows the last step
        arrays: dict[str, np.ndarray] = {"action": np.stack(actions),
                                         "reward": np.asarray(self.rewards, np.float32)}
        flags = np.zeros(steps, bool)
        arrays["is_first"] = flags.copy()
        arrays["is_first"][0] = True
        arrays["is_last"] = flags.copy()
        arrays["is_last"][-1] = True
        arrays["is_terminal"] = flags.copy()
        arrays["is_terminal"][-1] = self.terminated
        for key in self.obs[0]:
            values = [np.asarray(o[key]) for o in self.obs]
            if is_point_key(key) or len({v.shape for v in values}) > 1:
                rows = [np.atleast_1d(v) for v in values]
                arrays[f"obs/{key}"] = np.concatenate(rows)
                arrays[f"offsets/{key}"] = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
            else:
                arrays[f"obs/{key}"] = np.stack(values)
        arrays.update(pack_info(self.infos))
        return arrays


NUMERIC = (bool, int, float, np.bool_, np.integer, np.floating)


def pack_info(infos: list[dict]) -> dict[str, np.ndarray]:
    """Numeric scalars of the step infos as ``info/<key>`` arrays (see the dataset format)."""
    keys = dict.fromkeys(k for info in infos for k, v in info.items() if isinstance(v, NUMERIC))
    out = {}
    for key in keys:
        values = [info.get(key) for info in infos]
        if all(isinstance(v, (bool, np.bool_)) for v in values):
            out[f"info/{key}"] = np.asarray(values, bool)
        elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            out[f"info/{key}"] = np.asarray(values, np.int64)
        else:
            out[f"info/{key}"] = np.asarray([float(v) if isinstance(v, NUMERIC) else np.nan for v in values])
    return out


def run_episode(env, agent, seed: int, alive=lambda: True) -> tuple[dict[str, np.ndarray], dict]:
    """Play one episode with ``env.reset(seed=seed)``; returns its arrays and end-of-episode info."""
    obs, info = env.reset(seed=seed)
    agent.reset(seed)
    recorder = EpisodeRecorder()
    recorder.add(obs, 0.0, info)
    while True:
        if not alive():
            os._exit(1)  # the collecting parent is gone: leave no half-written work behind
        action = agent.act(obs, len(recorder.obs) == 1)
        recorder.actions.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        recorder.add(obs, reward, info)
        if terminated or truncated:
            recorder.terminated = bool(terminated)
            return recorder.pack(), info


def config_hash(config) -> str:
    """A short hash of a validated config: episodes with equal hashes ran the same settings."""
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- dataset folder
@contextmanager
def locked_dataset(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on a dataset folder (one collection at a time writes to it)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CollectError(f"{out} is being written by another collection (lock {out / '.lock'})") from None
        yield


def repair_dataset(out: Path) -> dict[str, int]:
    """Make folder and index agree: drop unparseable lines and lines whose file is missing, delete
    temporary files and episode files no index line names (other files are left alone). Returns
    what was dropped."""
    entries, bad = read_index(out)
    kept = [e for e in entries if (out / e["file"]).is_file()]
    named = {e["file"] for e in kept}
    orphans = [p for p in out.glob("*-[0-9]*.npz") if EPISODE_NAME.fullmatch(p.name) and p.name not in named]
    temps = list(out.glob(".*.tmp"))
    for path in orphans + temps:
        path.unlink()
    if bad or len(kept) != len(entries):
        write_index(out, kept)
    return {"bad_lines": bad, "missing_files": len(entries) - len(kept), "orphan_files": len(orphans),
            "temp_files": len(temps)}


def episode_name(task: str, seed: int) -> str:
    return f"{task}-{seed:08d}.npz"


EPISODE_NAME = re.compile(r".+-\d{8,}\.npz")
"""Names of episode files (``episode_name``); other files in a dataset folder are left alone."""


def write_index(out: Path, entries: list[dict]) -> None:
    with atomic_output(out / INDEX_FILE, "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in entries)


def append_index(out: Path, entry: dict) -> None:
    """Append one line to the index; a failed append (a full disk) is cut off, leaving whole lines."""
    path = out / INDEX_FILE
    with open(path, "a", encoding="utf-8") as f:
        size = f.tell()
        try:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        except OSError as error:
            os.truncate(path, size)
            error.filename = error.filename or str(path)
            raise


def new_seeds(start: int, count: int, used: set[int]) -> list[int]:
    """The first ``count`` seeds from ``start`` upward that the dataset has not used."""
    seeds, seed = [], start
    while len(seeds) < count:
        if seed not in used:
            seeds.append(seed)
        seed += 1
    return seeds


# ----------------------------------------------------------------------------- workers
@dataclass(frozen=True)
class Job:
    task: str
    overrides: tuple[str, ...]
    policy: str
    out: str


def _episode_entry(job: Job, env, seed: int, arrays: dict, end_info: dict, file: str) -> dict:
    config = env.config
    entry = {"file": file, "task": config.task.name, "task_source": job.task, "map": config.task.map,
             "seed": seed, "policy": job.policy, "config_hash": config_hash(config),
             "length": int(len(arrays["reward"]) - 1), "return": float(arrays["reward"].sum())}
    for key in EPISODE_METRICS:
        value = end_info.get(key)
        entry[key] = value.item() if isinstance(value, np.generic) else value
    entry["success"] = bool(entry["success"])
    entry["obs_keys"] = [k[4:] for k in arrays if k.startswith("obs/")]
    entry["created"] = time.time()
    return entry


def _record(job: Job, env, agent, seed: int, alive=lambda: True) -> dict:
    arrays, end_info = run_episode(env, agent, seed, alive)
    name = episode_name(env.config.task.name, seed)
    entry = _episode_entry(job, env, seed, arrays, end_info, name)
    arrays["meta"] = np.asarray(json.dumps(entry))
    with atomic_output(Path(job.out) / name) as f:
        np.savez_compressed(f, **arrays)
    return entry


def _make(job: Job):
    from cardreamer.env import make_env

    env = make_env(job.task, list(job.overrides))
    return env, make_agent(job.policy, env, Path(job.out))


def _worker(job: Job, seeds: mp.Queue, results: mp.Queue, parent: int) -> None:
    """Worker process: record the episodes of the seeds it takes until it takes None."""
    def alive() -> bool:
        return os.getppid() == parent

    try:
        env, agent = _make(job)
        while (seed := seeds.get()) is not None:
            results.put(("episode", _record(job, env, agent, seed, alive)))
        env.close()
        results.put(("done", None))
    except OSError as error:
        if error.errno != errno.ENOSPC:
            results.put(("error", traceback.format_exc()))
        else:  # a full disk is the parent's one-line error, not a worker's traceback
            results.put(("disk full", error.filename))
    except BaseException:  # noqa: BLE001  (any failure goes to the parent, which raises it)
        results.put(("error", traceback.format_exc()))


def _episodes_parallel(job: Job, seeds: list[int], envs: int) -> Iterator[dict]:
    ctx = mp.get_context("spawn")
    seed_queue, results = ctx.Queue(), ctx.Queue()
    for seed in seeds:
        seed_queue.put(seed)
    for _ in range(envs):
        seed_queue.put(None)
    workers = [ctx.Process(target=_worker, args=(job, seed_queue, results, os.getpid()), daemon=True)
               for _ in range(envs)]
    for w in workers:
        w.start()
    try:
        running = envs
        while running:
            try:
                kind, payload = results.get(timeout=1.0)
            except queue.Empty:
                if not any(w.is_alive() for w in workers):
                    raise RuntimeError("every collection worker exited unexpectedly") from None
                continue
            if kind == "error":
                raise RuntimeError(f"a collection worker failed:\n{payload}")
            if kind == "disk full":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), payload)
            if kind == "done":
                running -= 1
            else:
                yield payload
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
            w.join(timeout=10)


def _episodes_inline(job: Job, seeds: list[int]) -> Iterator[dict]:
    env, agent = _make(job)
    try:
        for seed in seeds:
            yield _record(job, env, agent, seed)
    finally:
        env.close()
        if hasattr(agent, "close"):
            agent.close()


def collect(task: str, policy: str, episodes: int, out: str | Path, envs: int = 1, seed: int = 0,
            overrides: list[str] | None = None, progress: bool = True) -> list[dict]:
    """Record ``episodes`` new episodes of ``task`` into the dataset folder ``out``.

    Returns the index entries of the new episodes (in the order they finished).
    """
    from tqdm import tqdm

    from task_dev_suite.task_validation import validate_task

    if episodes < 1:
        raise CollectError(f"--episodes must be at least 1, got {episodes}")
    if envs < 1:
        raise CollectError(f"--envs must be at least 1, got {envs}")
    if policy == "human" and envs > 1:
        raise CollectError("policy 'human' drives one env: use --envs 1")
    if not (policy in ("expert", "random", "human") or policy.startswith("checkpoint:")):
        raise CollectError(f"unknown policy {policy!r}; valid: {', '.join(POLICY_NAMES)}")
    report = validate_task(task, overrides)
    if not report.ok:
        raise ConfigError(f"task {task!r} is invalid; nothing was collected:\n{report.format()}")
    out = Path(out)
    job = Job(str(task), tuple(overrides or ()), policy, str(out))
    written: list[dict] = []
    with locked_dataset(out):
        repaired = repair_dataset(out)
        if any(repaired.values()):
            print(f"{out}: repaired an interrupted collection ({repaired})", flush=True)
        used = {int(e["seed"]) for e in read_index(out)[0]}
        seeds = new_seeds(seed, episodes, used)
        source = _episodes_inline(job, seeds) if envs == 1 else _episodes_parallel(job, seeds, min(envs, episodes))
        start = time.perf_counter()
        steps = 0
        with tqdm(total=episodes, unit="ep", desc=f"collect {report.config.task.name} ({policy})",
                  disable=not progress) as bar:
            try:
                for entry in source:
                    append_index(out, entry)
                    written.append(entry)
                    steps += entry["length"]
                    bar.set_postfix(steps_per_s=f"{steps / (time.perf_counter() - start):.0f}",
                                    success=f"{sum(e['success'] for e in written) / len(written):.0%}")
                    bar.update()
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                source.close()  # stops the workers, or closes the env, before the one-line error
                repair_dataset(out)  # an episode written whole whose index line did not fit goes too
                raise CollectError(f"disk full writing {error.filename or out}; the {len(written)} new episodes "
                                   f"before it are complete and indexed, nothing half-written is left: free "
                                   f"space and run the command again (seeds already in the dataset are "
                                   f"skipped)") from None
    return written
