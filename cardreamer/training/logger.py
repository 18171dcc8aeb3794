"""Run-directory outputs: metrics.jsonl, scores.jsonl, mp4 videos, and the live publisher."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import imageio.v2 as imageio
import numpy as np

from cardreamer.atomic import write_atomic


class NullPublisher:
    """Publisher that drops everything (used when no visualizer is attached)."""

    def publish_metrics(self, step: int, metrics: dict) -> None:
        pass

    def publish_frame(self, stream: str, image: np.ndarray, env_index: int = 0) -> None:
        pass

    def close(self) -> None:
        pass


def make_publisher(config, run: str):
    """The visualizer's publisher when ``run.serve`` is set, else a ``NullPublisher``."""
    if not config.run.serve:
        return NullPublisher()
    from visualization.publisher import make_publisher as make  # imported lazily: optional component

    return make(config.run.serve_url or None, config.run.serve_token or None, run)


def write_video(path: str, frames: np.ndarray, fps: int) -> None:
    """Write (T, H, W, 3) uint8 frames as mp4 (H and W padded to even sizes), atomically."""
    frames = np.asarray(frames, np.uint8)
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, -1)
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # FFmpeg writes to a path, not a file object: a temporary .mp4 renamed when complete
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp.mp4")
    os.close(fd)
    try:
        imageio.mimwrite(tmp, list(frames), fps=fps, macro_block_size=1, format="FFMPEG")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _row_step(line: str) -> int | None:
    """The step of a log row; None for a line cut short by a crash."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


class Logger:
    """Appends rows to metrics.jsonl and scores.jsonl and forwards metrics to the publisher."""

    def __init__(self, logdir: str, publisher):
        self.logdir, self.publisher = logdir, publisher
        os.makedirs(os.path.join(logdir, "videos"), exist_ok=True)

    def _append(self, name: str, step: int, row: dict) -> None:
        row = {"step": int(step), **{k: _jsonable(v) for k, v in row.items()}}
        with open(os.path.join(self.logdir, name), "a") as f:
            f.write(json.dumps(row) + "\n")

    def truncate(self, step: int) -> None:
        """Drop the rows of metrics.jsonl and scores.jsonl logged after ``step`` (a resumed run
        repeats those steps), rewriting each file atomically."""
        for name in ("metrics.jsonl", "scores.jsonl"):
            path = os.path.join(self.logdir, name)
            if not os.path.isfile(path):
                continue
            with open(path) as f:
                lines = f.readlines()
            kept = [line for line in lines if (row_step := _row_step(line)) is not None and row_step <= step]
            if len(kept) == len(lines):
                continue
            write_atomic(path, "".join(kept))

    def metrics(self, step: int, metrics: dict) -> None:
        self._append("metrics.jsonl", step, metrics)
        self.publisher.publish_metrics(int(step), dict(metrics))

    def score(self, step: int, row: dict) -> None:
        self._append("scores.jsonl", step, row)

    def episode(self, episode: dict, env_index: int) -> None:
        publish = getattr(self.publisher, "publish_episode", None)  # optional publisher method
        if publish:
            publish(dict(episode), env_index)

    def dream(self, step: int, frames: np.ndarray) -> None:
        """Hand open-loop frames (real left half, imagined right half) to the publisher."""
        publish = getattr(self.publisher, "publish_dream", None)  # optional publisher method
        if publish:
            width = frames.shape[2] // 2
            publish(frames[:, :, :width], frames[:, :, width:], int(step))

    def video(self, name: str, step: int, frames: np.ndarray, fps: int) -> str:
        path = os.path.join(self.logdir, "videos", f"{name}-{int(step):010d}.mp4")
        write_video(path, frames, fps)
        return path
