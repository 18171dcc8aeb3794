"""Episode recording: the server keeps the encoded frames of recent episodes and writes mp4s.

Each (run, env, stream) has a ring of encoded frames tagged with the episode they belong to; the
ring is capped in bytes and frames, so memory stays bounded however long an episode runs (a long
episode keeps its most recent part). Saving decodes the chosen episode's frames and writes an mp4
with imageio-ffmpeg, atomically (:func:`cardreamer.atomic.atomic_output`).
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio.v3 as imageio
import numpy as np

from cardreamer.atomic import atomic_output

MIN_FRAMES = 2


@dataclass(frozen=True)
class RecordedFrame:
    episode: int
    time: float
    data: bytes


class EpisodeRecorder:
    """Bounded per-stream buffers of the current and previous episodes; thread-safe."""

    def __init__(self, max_bytes_per_stream: int = 8 << 20, max_frames_per_stream: int = 1500):
        self.max_bytes = max_bytes_per_stream
        self.max_frames = max_frames_per_stream
        self._lock = threading.Lock()
        self._rings: dict[tuple[str, int, str], collections.deque[RecordedFrame]] = {}
        self._bytes: dict[tuple[str, int, str], int] = {}
        self._episode: dict[tuple[str, int], int] = {}

    def add_frame(self, run: str, env: int, stream: str, data: bytes, timestamp: float) -> None:
        key = (run, env, stream)
        with self._lock:
            episode = self._episode.get((run, env), 0)
            ring = self._rings.setdefault(key, collections.deque())
            ring.append(RecordedFrame(episode, timestamp, data))
            self._bytes[key] = self._bytes.get(key, 0) + len(data)
            while ring and (self._bytes[key] > self.max_bytes or len(ring) > self.max_frames):
                self._bytes[key] -= len(ring.popleft().data)

    def forget(self, run: str) -> None:
        """Drop every buffered frame of ``run``."""
        with self._lock:
            for key in [k for k in self._rings if k[0] == run]:
                del self._rings[key], self._bytes[key]
            for key in [k for k in self._episode if k[0] == run]:
                del self._episode[key]

    def end_episode(self, run: str, env: int) -> None:
        """Mark the end of the current episode of (run, env); later frames start a new one."""
        with self._lock:
            self._episode[(run, env)] = self._episode.get((run, env), 0) + 1

    def streams(self, run: str, env: int) -> list[str]:
        with self._lock:
            return sorted(s for (r, e, s), ring in self._rings.items() if r == run and e == env and ring)

    def episode_frames(self, run: str, env: int, stream: str) -> list[RecordedFrame]:
        """Frames of the current episode, or of the previous one if the current has barely begun."""
        with self._lock:
            ring = list(self._rings.get((run, env, stream), ()))
            current = self._episode.get((run, env), 0)
        for episode in (current, current - 1):
            frames = [f for f in ring if f.episode == episode]
            if len(frames) >= MIN_FRAMES:
                return frames
        return []

    def save(self, run: str, env: int, videos_dir: Path) -> list[Path]:
        """Write one mp4 per stream of (run, env) into ``videos_dir``; return the paths written."""
        streams = self.streams(run, env)
        if not streams:
            raise ValueError(f"run {run!r} env {env}: no frames recorded yet, nothing to save")
        videos_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        written = []
        for stream in streams:
            frames = self.episode_frames(run, env, stream)
            if frames:
                path = videos_dir / f"episode-{stamp}-env{env}-{stream}.mp4"
                write_mp4(path, frames)
                written.append(path)
        if not written:
            raise ValueError(f"run {run!r} env {env}: fewer than {MIN_FRAMES} frames in the episode")
        return written


def _frame_rate(frames: list[RecordedFrame]) -> float:
    duration = frames[-1].time - frames[0].time
    if duration <= 0:
        return 10.0
    return float(np.clip((len(frames) - 1) / duration, 1.0, 60.0))


def write_mp4(path: Path, frames: list[RecordedFrame]) -> None:
    """Decode encoded frames and write them as an H.264 mp4 at their observed frame rate."""
    first = cv2.imdecode(np.frombuffer(frames[0].data, np.uint8), cv2.IMREAD_COLOR)
    height, width = first.shape[:2]
    # H.264 with yuv420p needs even dimensions.
    out_w, out_h = width + width % 2, height + height % 2
    # FFMPEG needs the extension spelt out to write into a file object.
    with atomic_output(path) as out, imageio.imopen(out, "wI", extension=".mp4", plugin="FFMPEG",
                                                    legacy_mode=True) as video:
        writer = video.legacy_get_writer(fps=_frame_rate(frames), codec="libx264", macro_block_size=1,
                                         pixelformat="yuv420p", ffmpeg_log_level="error")
        with writer:
            for frame in frames:
                bgr = cv2.imdecode(np.frombuffer(frame.data, np.uint8), cv2.IMREAD_COLOR)
                if bgr.shape[:2] != (out_h, out_w):
                    bgr = cv2.resize(bgr, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
                writer.append_data(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
