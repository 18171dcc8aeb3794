"""Run-directory outputs: metrics.jsonl, scores.jsonl, mp4 videos, the live publisher, and the
optional scalar outputs of ``run.loggers``: TensorBoard event files (tensorboardX, no TensorFlow)
in the run directory, and Weights & Biases when the ``wandb`` package is installed."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from typing import Any, Protocol

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


def make_publisher(config, run: str, run_dir: str | None = None):
    """The visualizer's publisher when ``run.serve`` is set, else a ``NullPublisher``; it announces
    ``run_dir`` (see :func:`visualization.publisher.make_publisher`)."""
    if not config.run.serve:
        return NullPublisher()
    from visualization.publisher import make_publisher as make  # imported lazily: optional component

    return make(config.run.serve_url or None, config.run.serve_token or None, run, run_dir=run_dir)


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


class ScalarOutput(Protocol):
    """Somewhere the scalars of metrics.jsonl and scores.jsonl rows also go."""

    def write(self, step: int, scalars: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class TensorBoardOutput:
    """TensorBoard event files in the run directory. A resumed run purges the events logged after
    its checkpoint's step, as the jsonl files drop those rows."""

    def __init__(self, logdir: str, resume_step: int):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(logdir, purge_step=resume_step + 1 if resume_step else None, flush_secs=30)

    def write(self, step: int, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


class WandbOutput:
    """A Weights & Biases run (project $WANDB_PROJECT, default cardreamer) whose id is derived from
    the run directory, so a resumed run continues it; $WANDB_MODE=offline needs no network."""

    def __init__(self, wandb: Any, logdir: str, config: dict):
        name = os.path.basename(logdir)
        run_id = re.sub(r"[^A-Za-z0-9_-]", "-", name)[:40] + "-" + hashlib.sha1(logdir.encode()).hexdigest()[:8]
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "cardreamer"), name=name, id=run_id,
                              dir=logdir, config=config, resume="allow")

    def write(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log(scalars, step=step)

    def close(self) -> None:
        self.run.finish()


def make_outputs(names: list[str], logdir: str, config: dict, resume_step: int,
                 warn: Callable[[str], None]) -> list[ScalarOutput]:
    """The scalar outputs ``names`` (of ``run.loggers``) for the run in ``logdir``; wandb, when not
    installed, is left out with one line to ``warn``."""
    outputs: list[ScalarOutput] = []
    if "tensorboard" in names:
        outputs.append(TensorBoardOutput(logdir, resume_step))
    if "wandb" in names:
        try:
            import wandb
        except ImportError:
            warn("run.loggers lists wandb, but the wandb package is not installed (pip install wandb); "
                            "training without it")
        else:
            outputs.append(WandbOutput(wandb, logdir, config))
    return outputs


def _scalars(row: dict) -> dict[str, float]:
    """The finite numbers of a log row (counters, losses, rates), as floats."""
    return {k: float(v) for k, v in row.items()
            if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)}


class Logger:
    """Appends rows to metrics.jsonl and scores.jsonl, writes their scalars to ``outputs`` too, and
    forwards metrics, episodes and dreams to the publisher."""

    def __init__(self, logdir: str, publisher, outputs: list[ScalarOutput] | None = None):
        self.logdir, self.publisher, self.outputs = logdir, publisher, list(outputs or [])
        os.makedirs(os.path.join(logdir, "videos"), exist_ok=True)

    def _append(self, name: str, step: int, row: dict, outputs: bool = True, labels: tuple[str, ...] = ()) -> None:
        """Append ``row`` to the file ``name``; its scalars but ``labels`` go to the outputs too."""
        row = {"step": int(step), **{k: _jsonable(v) for k, v in row.items()}}
        with open(os.path.join(self.logdir, name), "a") as f:
            f.write(json.dumps(row) + "\n")
        if not outputs:
            return
        scalars = _scalars({k: v for k, v in row.items() if k != "step" and k not in labels})
        for output in self.outputs:
            output.write(int(step), scalars)

    def close(self) -> None:
        for output in self.outputs:
            output.close()

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

    def score(self, step: int, row: dict, labels: tuple[str, ...] = ()) -> None:
        """A training episode's row; ``labels`` name numbers that are not scalars to plot (its number)."""
        self._append("scores.jsonl", step, row, labels=labels)

    def evaluation(self, step: int, row: dict) -> None:
        """An evaluation's summary: a row of both files (its scalars go to the outputs once)."""
        self._append("scores.jsonl", step, row, outputs=False)
        self.metrics(step, row)

    def episode(self, episode: dict, env_index: int) -> None:
        publish = getattr(self.publisher, "publish_episode", None)  # optional publisher method
        if publish:
            publish(dict(episode), env_index)

    def dream(self, step: int, frames: np.ndarray, context: int | None, rows: int,
              samples: list[dict] | None = None) -> None:
        """Hand open-loop frames (real left half, imagined right half; ``rows`` replay samples stacked
        vertically, the first ``context`` frames observed; ``samples``: where each one came from,
        see :func:`cardreamer.training.replay.provenance`) to the publisher."""
        publish = getattr(self.publisher, "publish_dream", None)  # optional publisher method
        if publish:
            width = frames.shape[2] // 2
            publish(frames[:, :, :width], frames[:, :, width:], int(step), context=context, rows=rows,
                    samples=samples)

    def video(self, name: str, step: int, frames: np.ndarray, fps: int, episode: int | None = None) -> str:
        """Write ``videos/<name>-<step:010d>.mp4`` (``-ep<episode>`` before .mp4: a training episode's)."""
        tail = "" if episode is None else f"-ep{int(episode)}"
        path = os.path.join(self.logdir, "videos", f"{name}-{int(step):010d}{tail}.mp4")
        write_video(path, frames, fps)
        return path
