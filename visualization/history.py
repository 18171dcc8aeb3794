"""Run history read from the run directory and merged with live updates.

A run directory holds ``metrics.jsonl`` (training scalars) and ``scores.jsonl`` (one line per
finished episode), one JSON object per line with a ``step`` key, and ``train.log`` (the trainer's
run log, whose newest lines are kept). The server reads the files incrementally, merges in what publishers send live, drops duplicates (a trainer usually writes a
record to the file *and* publishes it), and replays the merged history to each new viewer, so a
browser opened late or a server restarted mid-run shows the whole run. What one history holds is
bounded (see :class:`RunHistory`), so neither a long run nor a hostile publisher grows it without end.
"""

from __future__ import annotations

import bisect
import collections
import json
import logging
import math
import os
import re
import threading
from array import array
from pathlib import Path
from typing import Any

import yaml

from visualization.protocol import MAX_RUN_DEPTH, check_run_name, shown, to_jsonable

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
SCORES_FILE = "scores.jsonl"
LOG_FILE = "train.log"  # the trainer's run log (cardreamer.training.runlog)
MAX_LOG_LINES = 2000  # the newest lines of a run's log kept and sent to a joining viewer
MAX_LOG_LINE_CHARS = 2000
RUN_MARKERS = (METRICS_FILE, SCORES_FILE, "config.yaml")
MAX_METRIC_KEYS = 256  # a training run logs about 40
MAX_KEY_CHARS = 200
MAX_SERIES_POINTS = 4096  # the page is sent at most 2,000 steps of a run
MAX_EPISODES = 10_000
MAX_EPISODE_CHARS = 4096


class LineTail:
    """Reads the complete lines appended to a file since the previous call.

    A partially written last line is left for the next call; a file that was replaced or
    truncated is read again from its start (``restarted`` says so).
    """

    def __init__(self, path: Path):
        self.path = path
        self._offset = 0
        self._identity: tuple[int, int] | None = None
        self.restarted = False

    def read_lines(self) -> list[bytes]:
        self.restarted = False
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        identity = (stat.st_dev, stat.st_ino)
        if identity != self._identity or stat.st_size < self._offset:
            self.restarted = self._identity is not None
            self._identity, self._offset = identity, 0
        if stat.st_size == self._offset:
            return []
        with open(self.path, "rb") as file:
            file.seek(self._offset)
            chunk = file.read(stat.st_size - self._offset)
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self._offset += end + 1
        return chunk[: end + 1].splitlines()


class JsonlTail(LineTail):
    """Reads the JSON objects appended to a JSONL file since the previous call (see :class:`LineTail`).

    Lines that are not JSON objects are skipped with a warning naming the file and line.
    """

    def __init__(self, path: Path):
        super().__init__(path)
        self._line_number = 0

    def read_new(self) -> list[dict[str, Any]]:
        lines = self.read_lines()
        if self.restarted:
            self._line_number = 0
        records = []
        for raw in lines:
            self._line_number += 1
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError as error:
                log.warning("%s line %d: not valid JSON (%s); line skipped", self.path, self._line_number, error)
                continue
            if not isinstance(record, dict):
                log.warning("%s line %d: expected a JSON object; line skipped", self.path, self._line_number)
                continue
            records.append(record)
        return records


def _step_of(record: dict[str, Any]) -> int | None:
    step = record.get("step")
    if isinstance(step, bool) or not isinstance(step, (int, float)):
        return None
    if isinstance(step, float) and not math.isfinite(step):
        return None
    return int(step) if abs(step) < 2**63 else None  # steps are kept as 64-bit integers


def _numeric_values(record: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of ``record`` (bools as 0/1) but its step."""
    values = {}
    for key, value in record.items():
        if key == "step" or isinstance(value, str) or value is None:
            continue
        if not isinstance(value, (bool, int, float)):  # numpy scalars; anything else is skipped
            value = to_jsonable(value)
            if not isinstance(value, (bool, int, float)):
                continue
        try:
            number = float(value)
        except OverflowError:  # an int beyond the range of floats
            continue
        if math.isfinite(number):
            values[str(key)] = number
    return values


def _thin(items: list, limit: int) -> list:
    """Evenly spaced subset of at most ``limit`` items that always keeps the last one."""
    if len(items) <= limit:
        return list(items)
    if limit <= 1:
        return items[-limit:] if limit == 1 else []
    stride = (len(items) - 1) / (limit - 1)
    return [items[round(i * stride)] for i in range(limit)]


# What a trainer's score keys mean in the page's terms (scores.jsonl of dreamerv3_backbone writes
# "episode/<key>" for training episodes and "eval/<key>" for the summary of an evaluation).
_EPISODE_ALIASES = {"score": "return", "success_rate": "success", "collision_rate": "collision"}
_PLACE_KEYS = ("step", "env")  # where an episode happened: a trainer's file copy has only the step,
                               # its live copy only the env


def normalize_episode(record: dict[str, Any]) -> dict[str, Any]:
    """An episode record with plain keys (``return``, ``length``, ``success``...) and a ``kind``.

    ``episode/`` and ``eval/`` prefixes are dropped; a record with ``eval/`` keys (or
    ``kind: "eval"``) is an evaluation, any other a training episode. An evaluation's rates
    (``success_rate``...) become ``success``...: the fraction of its episodes.
    """
    out: dict[str, Any] = {}
    kind = record.get("kind")
    for key, value in record.items():
        if key.startswith("eval/"):
            key, kind = key[len("eval/"):], kind or "eval"
        elif key.startswith("episode/"):
            key = key[len("episode/"):]
        out[_EPISODE_ALIASES.get(key, key)] = value
    out["kind"] = kind if kind in ("train", "eval") else "train"
    return out


def _episode_identity(episode: dict[str, Any]) -> str:
    """What a file copy and a live copy of one episode share: everything but where and when."""
    return json.dumps({k: v for k, v in episode.items() if k not in (*_PLACE_KEYS, "t", "id")}, sort_keys=True)


_EVAL_VIDEO = re.compile(r"^eval-.+-(\d{10})\.mp4$")
_TRAIN_VIDEO = re.compile(r"^train-.+-(\d{10})-ep(\d+)\.mp4$")


def episode_videos(run_dir: Path) -> dict[str, dict[str, list[str]]]:
    """The mp4 files in ``run_dir/videos`` recorded of episodes: ``{"eval": {"<step>": names},
    "train": {"<step>/<number>": names}}``.

    A trainer writes one video per image key of each evaluation, ``eval-<key>-<step:010d>.mp4``,
    and of each training episode it records (``run.train_video_every``),
    ``train-<key>-<step:010d>-ep<number>.mp4``: the step its row was logged at and its number.
    """
    try:
        names = sorted(os.listdir(run_dir / "videos"))
    except (FileNotFoundError, NotADirectoryError):
        names = []
    videos: dict[str, dict[str, list[str]]] = {"eval": {}, "train": {}}
    for name in names:
        if match := _EVAL_VIDEO.match(name):
            videos["eval"].setdefault(str(int(match.group(1))), []).append(name)
        elif match := _TRAIN_VIDEO.match(name):
            videos["train"].setdefault(f"{int(match.group(1))}/{int(match.group(2))}", []).append(name)
    return videos


class Series:
    """The points of one metric, sorted by step, in compact arrays (16 bytes a point).

    A series appended to in step order keeps every ``stride``-th point it was given, and always
    its latest one. Once it holds more than the cap, :meth:`decimate` drops every other point and
    doubles the stride, so a long run stays evenly sampled from its first step to its last.
    """

    __slots__ = ("appended", "steps", "stride", "values")

    def __init__(self) -> None:
        self.steps = array("q")
        self.values = array("d")
        self.stride = 1
        self.appended = 0  # points given after the last one so far

    def __len__(self) -> int:
        return len(self.steps)

    def _latest_is_extra(self) -> bool:
        """Whether the last point is kept only because it is the latest (it is off the stride)."""
        return (self.appended - 1) % self.stride != 0

    def put(self, step: int, value: float) -> bool:
        """Set the value at ``step``; return False if it had that value already."""
        if not self.steps or step > self.steps[-1]:
            if self.steps and self._latest_is_extra():  # the new latest point replaces it
                self.steps[-1], self.values[-1] = step, value
            else:
                self.steps.append(step)
                self.values.append(value)
            self.appended += 1
            return True
        i = bisect.bisect_left(self.steps, step)
        if self.steps[i] == step:
            if self.values[i] == value:
                return False
            self.values[i] = value
            return True
        self.steps.insert(i, step)  # a step older than the latest one, e.g. a file read after live records
        self.values.insert(i, value)
        return True

    def decimate(self) -> None:
        """Drop every other point (keeping the first and the latest) and double the stride."""
        latest_step, latest_value = self.steps[-1], self.values[-1]
        end = len(self.steps) - 1 if self._latest_is_extra() else len(self.steps)
        self.steps, self.values = self.steps[:end:2], self.values[:end:2]
        if self.steps[-1] != latest_step:
            self.steps.append(latest_step)
            self.values.append(latest_value)
        self.stride *= 2


class RunHistory:
    """Training metrics (one series per key) and finished episodes of one run; thread-safe.

    Memory is bounded whatever the files or publishers hold: at most ``max_keys`` metric keys
    (of at most MAX_KEY_CHARS characters; further keys are dropped, with one warning per run),
    each series at most ``max_points`` long (decimated evenly, see :class:`Series`), and at most ``max_episodes`` episodes of at most MAX_EPISODE_CHARS characters of JSON.
    """

    def __init__(self, run_dir: Path, max_keys: int = MAX_METRIC_KEYS, max_points: int = MAX_SERIES_POINTS,
                 max_episodes: int = MAX_EPISODES):
        self.run_dir = run_dir
        self.max_keys = max_keys
        self.max_points = max_points
        self.max_episodes = max_episodes
        self._lock = threading.Lock()
        self._series: dict[str, Series] = {}
        self._warned_keys = False
        self._episodes: dict[int, dict[str, Any]] = {}  # by id, in the order they arrived
        self._by_identity: dict[int, list[int]] = {}  # hash of an identity -> ids of its episodes
        self._next_id = 0
        self._metrics_tail = JsonlTail(run_dir / METRICS_FILE)
        self._scores_tail = JsonlTail(run_dir / SCORES_FILE)
        self._log_tail = LineTail(run_dir / LOG_FILE)
        self._log: collections.deque[str] = collections.deque(maxlen=MAX_LOG_LINES)

    def add_metrics(self, record: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
        """Merge one metrics record.

        Returns the step and the values of ``record`` that were new (None if none was), and the
        keys of ``record`` that were dropped because the run has ``max_keys`` keys or they are too long.
        """
        step = _step_of(record)
        if step is None:
            return None, []
        refused = []
        changed = {}
        with self._lock:
            for key, value in _numeric_values(record).items():
                series = self._series.get(key)
                if series is None:
                    if len(self._series) >= self.max_keys or len(key) > MAX_KEY_CHARS:
                        refused.append(key)
                        continue
                    series = self._series[key] = Series()
                if series.put(step, value):
                    changed[key] = value
                    if len(series) > self.max_points:
                        series.decimate()
            if refused and not self._warned_keys:
                self._warned_keys = True
                log.warning("run %s: %s", self.run_dir.name, self.refusal(refused))
        return ({"step": step, **changed} if changed else None), refused

    def refusal(self, refused: list[str]) -> str:
        """A one-line explanation of why the metric keys ``refused`` were dropped."""
        return (f"{len(refused)} metric key(s) dropped, first {shown(refused[0])}: a run keeps at most "
                f"{self.max_keys} metric keys of at most {MAX_KEY_CHARS} characters")

    def add_episode(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """Add one finished episode (see :func:`normalize_episode`); return what viewers must be sent.

        A record that agrees with an episode held already on everything both have (the trainer's
        file copy with its step, its live copy with its env) completes that episode: the
        completed episode, with its ``id``, is returned; a record that adds nothing returns None.
        Otherwise the record is a new episode with a new ``id``. Raises ``ValueError`` for a
        record of more than MAX_EPISODE_CHARS characters of JSON.
        """
        episode = normalize_episode(to_jsonable(record))
        identity = _episode_identity(episode)
        if len(identity) > MAX_EPISODE_CHARS:
            raise ValueError(f"an episode record of {len(identity)} characters of JSON is too large "
                             f"(at most {MAX_EPISODE_CHARS})")
        with self._lock:
            same = self._by_identity.setdefault(hash(identity), [])
            for held in (self._episodes[i] for i in same):
                if all(held.get(k) is None or episode.get(k) is None or held[k] == episode[k] for k in _PLACE_KEYS):
                    added = {k: episode[k] for k in _PLACE_KEYS if held.get(k) is None and episode.get(k) is not None}
                    held.update(added)
                    return dict(held) if added else None
            episode["id"] = self._next_id
            self._next_id += 1
            self._episodes[episode["id"]] = episode
            same.append(episode["id"])
            if len(self._episodes) > self.max_episodes:
                kept = _thin(list(self._episodes.values()), self.max_episodes // 2)
                self._episodes = {e["id"]: e for e in kept}
                self._by_identity = {}
                for e in kept:
                    self._by_identity.setdefault(hash(_episode_identity(e)), []).append(e["id"])
            return dict(episode)

    def add_live_log(self, lines: list[str]) -> list[str]:
        """Keep log lines a publisher sent, unless the run's train.log is on disk (it holds them
        too and is read instead); return the lines kept."""
        if (self.run_dir / LOG_FILE).exists():
            return []
        kept = [line[:MAX_LOG_LINE_CHARS] for line in lines]
        with self._lock:
            self._log.extend(kept)
        return kept

    def poll_log(self) -> tuple[list[str], bool]:
        """Read the lines appended to the run's train.log; return them, and whether the file was
        replaced (then the lines held before were dropped)."""
        lines = [raw.decode("utf-8", "replace")[:MAX_LOG_LINE_CHARS] for raw in self._log_tail.read_lines()]
        with self._lock:
            if self._log_tail.restarted:
                self._log.clear()
            self._log.extend(lines)
        return lines[-MAX_LOG_LINES:], self._log_tail.restarted

    def poll_files(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Read lines appended to the run's files; return the new metrics and episodes."""
        new_metrics = []
        for record in self._metrics_tail.read_new():
            merged, _ = self.add_metrics(record)  # dropped keys were warned about once
            if merged is not None:
                new_metrics.append(merged)
        new_episodes = []
        for record in self._scores_tail.read_new():
            try:
                episode = self.add_episode(record)
            except ValueError as error:
                log.warning("%s: %s; record skipped", self._scores_tail.path, error)
                continue
            if episode is not None:
                new_episodes.append(episode)
        return new_metrics, new_episodes

    def points(self) -> int:
        """How many metric points the history holds."""
        with self._lock:
            return sum(len(series) for series in self._series.values())

    def snapshot(self, max_points: int = 2000) -> dict[str, list[Any]]:
        """The whole history, thinned to the records of at most ``max_points`` steps and episodes,
        and the newest lines of the run's log."""
        with self._lock:
            steps = sorted(set().union(*(series.steps for series in self._series.values())))
            chosen = {step: {"step": step} for step in _thin(steps, max_points)}
            for key, series in self._series.items():
                for step, value in zip(series.steps, series.values):
                    if step in chosen:
                        chosen[step][key] = value
            episodes = [dict(e) for e in _thin(list(self._episodes.values()), max_points)]
            log_lines = list(self._log)
        return {"metrics": list(chosen.values()), "episodes": episodes, "log": log_lines}


def config_value(run_dir: Path, key: str) -> Any:
    """The first value of ``key`` at any depth of the run's config.yaml (read as plain YAML data), or
    None if the file or the key is missing or the file is not valid YAML."""
    try:
        with open(run_dir / "config.yaml") as file:
            config = yaml.safe_load(file)
    except (OSError, yaml.YAMLError):
        return None
    pending = [config]
    while pending:
        node = pending.pop(0)
        if isinstance(node, dict):
            if key in node:
                return node[key]
            pending.extend(node.values())
    return None


def run_mtime(run_dir: Path) -> float | None:
    """When a run directory's metrics, scores or config last changed; None if it has none of them."""
    mtimes = []
    for marker in RUN_MARKERS:
        try:
            mtimes.append(os.stat(run_dir / marker).st_mtime)
        except (FileNotFoundError, NotADirectoryError):
            pass
    return max(mtimes) if mtimes else None


def list_run_dirs(logdir: Path) -> dict[str, float]:
    """Runs found in ``logdir``, by run name, with their mtimes.

    A run is a directory holding metrics, scores or a config. Directories that are not runs are
    searched down to MAX_RUN_DEPTH levels, so that the runs of an experiment,
    ``<experiment>/<variant>/seed<k>``, are found with names of that form.
    """
    runs: dict[str, float] = {}

    def scan(folder: Path, prefix: str, depth: int) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return
        for entry in entries:
            try:
                if not entry.is_dir():
                    continue
                name = check_run_name(prefix + entry.name)
            except (ValueError, OSError):
                continue
            mtime = run_mtime(Path(entry.path))
            if mtime is not None:
                runs[name] = mtime
            elif depth < MAX_RUN_DEPTH:
                scan(Path(entry.path), name + "/", depth + 1)

    scan(logdir, "", 1)
    return runs
