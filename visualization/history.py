"""Run history read from the run directory and merged with live updates.

A run directory holds ``metrics.jsonl`` (training scalars) and ``scores.jsonl`` (one line per
finished episode), one JSON object per line with a ``step`` key. The server reads both files
incrementally, merges in what publishers send live, drops duplicates (a trainer usually writes a
record to the file *and* publishes it), and replays the merged history to each new viewer, so a
browser opened late or a server restarted mid-run shows the whole run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from pathlib import Path
from typing import Any

from visualization.protocol import check_name, to_jsonable

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
SCORES_FILE = "scores.jsonl"
RUN_MARKERS = (METRICS_FILE, SCORES_FILE, "config.yaml")


class JsonlTail:
    """Reads the complete lines appended to a JSONL file since the previous call.

    A partially written last line is left for the next call; a file that was replaced or
    truncated is read again from its start. Lines that are not JSON objects are skipped with a
    warning naming the file and line.
    """

    def __init__(self, path: Path):
        self.path = path
        self._offset = 0
        self._line_number = 0
        self._identity: tuple[int, int] | None = None

    def read_new(self) -> list[dict[str, Any]]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        identity = (stat.st_dev, stat.st_ino)
        if identity != self._identity or stat.st_size < self._offset:
            self._identity, self._offset, self._line_number = identity, 0, 0
        if stat.st_size == self._offset:
            return []
        with open(self.path, "rb") as file:
            file.seek(self._offset)
            chunk = file.read(stat.st_size - self._offset)
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self._offset += end + 1
        records = []
        for raw in chunk[: end + 1].splitlines():
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
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step):
        return None
    return int(step)


def _numeric_values(record: dict[str, Any]) -> dict[str, float]:
    values = {}
    for key, value in to_jsonable(record).items():
        if key == "step" or isinstance(value, str) or value is None:
            continue
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, float)):
            values[key] = value
    return values


def _thin(items: list, limit: int) -> list:
    """Evenly spaced subset of at most ``limit`` items that always keeps the last one."""
    if len(items) <= limit:
        return list(items)
    if limit <= 1:
        return items[-limit:] if limit == 1 else []
    stride = (len(items) - 1) / (limit - 1)
    return [items[round(i * stride)] for i in range(limit)]


class RunHistory:
    """Training metrics (merged by step) and finished episodes of one run; thread-safe."""

    def __init__(self, run_dir: Path, max_records: int = 50_000):
        self.run_dir = run_dir
        self.max_records = max_records
        self._lock = threading.Lock()
        self._metrics: dict[int, dict[str, float]] = {}
        self._episodes: list[dict[str, Any]] = []
        self._episode_keys: set[str] = set()
        self._metrics_tail = JsonlTail(run_dir / METRICS_FILE)
        self._scores_tail = JsonlTail(run_dir / SCORES_FILE)

    def add_metrics(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """Merge one metrics record; return the merged record if it added anything, else None."""
        step = _step_of(record)
        if step is None:
            return None
        values = _numeric_values(record)
        with self._lock:
            merged = self._metrics.setdefault(step, {})
            if all(merged.get(key) == value for key, value in values.items()):
                return None
            merged.update(values)
            if len(self._metrics) > self.max_records:
                kept = _thin(sorted(self._metrics), self.max_records // 2)
                self._metrics = {s: self._metrics[s] for s in kept}
            return {"step": step, **merged}

    def add_episode(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """Add one finished episode; return it (JSON-safe) unless it is a duplicate."""
        episode = to_jsonable(record)
        identity = json.dumps({k: v for k, v in episode.items() if k not in ("env", "t")}, sort_keys=True)
        with self._lock:
            if identity in self._episode_keys:
                return None
            self._episode_keys.add(identity)
            self._episodes.append(episode)
            if len(self._episodes) > self.max_records:
                self._episodes = _thin(self._episodes, self.max_records // 2)
                self._episode_keys = {
                    json.dumps({k: v for k, v in e.items() if k not in ("env", "t")}, sort_keys=True)
                    for e in self._episodes
                }
            return episode

    def poll_files(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Read lines appended to the run's files; return the new metrics and episodes."""
        new_metrics = [m for m in map(self.add_metrics, self._metrics_tail.read_new()) if m is not None]
        new_episodes = [e for e in map(self.add_episode, self._scores_tail.read_new()) if e is not None]
        return new_metrics, new_episodes

    def snapshot(self, max_points: int = 2000) -> dict[str, list[dict[str, Any]]]:
        """The whole history, thinned to at most ``max_points`` metrics and episodes."""
        with self._lock:
            steps = _thin(sorted(self._metrics), max_points)
            metrics = [{"step": step, **self._metrics[step]} for step in steps]
            episodes = _thin(self._episodes, max_points)
        return {"metrics": metrics, "episodes": episodes}


def list_run_dirs(logdir: Path) -> dict[str, float]:
    """Runs found in ``logdir``: sub-directories holding metrics, scores or a config, with mtimes."""
    runs: dict[str, float] = {}
    try:
        entries = list(os.scandir(logdir))
    except FileNotFoundError:
        return runs
    for entry in entries:
        if not entry.is_dir():
            continue
        try:
            check_name("run", entry.name)
        except ValueError:
            continue
        mtimes = []
        for marker in RUN_MARKERS:
            try:
                mtimes.append(os.stat(os.path.join(entry.path, marker)).st_mtime)
            except FileNotFoundError:
                pass
        if mtimes:
            runs[entry.name] = max(mtimes)
    return runs
