"""Replay buffer: chunked storage with a capacity in steps, uniform sampling and an online queue.

Each environment writes a *stream* of steps. A stream is cut into chunks of ``chunk_size`` steps,
allocated when first written; once the buffer holds more than ``capacity`` steps, the oldest
chunk is dropped, so memory stays bounded. A sequence of ``length`` steps may span consecutive
chunks of one stream. With ``online`` on, every ``length`` fresh steps of a stream are queued and
the next batches train on them first (each once); the rest of a batch is sampled uniformly.

Chunks are saved to and loaded from a folder as ``.npz`` files so training can resume.
"""

from __future__ import annotations

import collections
import glob
import os
import tempfile
import uuid

import numpy as np


class Replay:
    def __init__(self, length: int, capacity: int, chunk_size: int = 1024, online: bool = True, seed: int = 0):
        if chunk_size < 1 or length < 1 or capacity < length:
            raise ValueError(f"replay: need length >= 1, chunk_size >= 1, capacity >= length; got "
                             f"length={length}, chunk_size={chunk_size}, capacity={capacity}")
        self.length, self.capacity, self.chunk_size, self.online = length, capacity, chunk_size, online
        self.rng = np.random.default_rng(seed)
        self.chunks: collections.OrderedDict[tuple[str, int], dict[str, np.ndarray]] = collections.OrderedDict()
        self.stream_len: dict[str, int] = {}  # steps ever written per stream
        self.env_stream: dict[int, str] = {}  # env index -> its current stream
        self.queue: collections.deque[tuple[str, int]] = collections.deque(maxlen=max(1, capacity // length))
        self.fresh: dict[str, int] = collections.defaultdict(int)
        self.stored = 0
        self.dirty: set[tuple[str, int]] = set()

    def __len__(self) -> int:
        return self.stored

    def add(self, step: dict[str, np.ndarray], env: int = 0) -> None:
        """Append one step (a dict of arrays without batch axis) to the stream of ``env``."""
        stream = self.env_stream.get(env)
        if stream is None:
            stream = self.env_stream[env] = uuid.uuid4().hex
            self.stream_len[stream] = 0
        index = self.stream_len[stream]
        chunk_key = (stream, index // self.chunk_size)
        if chunk_key not in self.chunks:
            self.chunks[chunk_key] = {k: np.empty((self.chunk_size, *np.shape(v)), np.asarray(v).dtype)
                                      for k, v in step.items()}
        chunk = self.chunks[chunk_key]
        if set(chunk) != set(step):
            raise KeyError(f"replay step keys {sorted(step)} differ from the stored keys {sorted(chunk)}")
        for key, value in step.items():
            chunk[key][index % self.chunk_size] = value
        self.dirty.add(chunk_key)
        self.stream_len[stream] = index + 1
        self.stored += 1
        if self.online:
            self.fresh[stream] += 1
            if self.fresh[stream] >= self.length:
                self.fresh[stream] = 0
                self.queue.append((stream, index + 1 - self.length))
        while self.stored > self.capacity:
            self._evict()

    def _evict(self) -> None:
        (stream, number), _ = self.chunks.popitem(last=False)
        start = number * self.chunk_size
        self.stored -= min(self.chunk_size, self.stream_len[stream] - start)
        self.dirty.discard((stream, number))

    def _valid_starts(self) -> tuple[list[tuple[str, int]], np.ndarray]:
        """Chunks and, per chunk, how many sequences start in it and fit in the stored data."""
        keys = list(self.chunks)
        counts = np.empty(len(keys), np.int64)
        for i, (stream, number) in enumerate(keys):
            start = number * self.chunk_size
            counts[i] = max(0, min(start + self.chunk_size, self.stream_len[stream] - self.length + 1) - start)
        return keys, counts

    def _read(self, stream: str, start: int) -> dict[str, np.ndarray] | None:
        parts, index, end = [], start, start + self.length
        while index < end:
            chunk = self.chunks.get((stream, index // self.chunk_size))
            if chunk is None:
                return None
            lo = index % self.chunk_size
            hi = min(self.chunk_size, lo + end - index)
            parts.append({k: v[lo:hi] for k, v in chunk.items()})
            index += hi - lo
        if len(parts) == 1:
            return {k: v.copy() for k, v in parts[0].items()}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def ready(self) -> bool:
        """Whether at least one full sequence is stored."""
        return int(self._valid_starts()[1].sum()) > 0

    def sample(self, batch: int, online: bool = True) -> dict[str, np.ndarray]:
        """A dict of (batch, length, ...) arrays: queued fresh sequences first (unless ``online`` is
        False, e.g. for reports), then uniform ones."""
        seqs = []
        while online and self.queue and len(seqs) < batch:
            seq = self._read(*self.queue.popleft())
            if seq is not None:
                seqs.append(seq)
        if len(seqs) < batch:
            keys, counts = self._valid_starts()
            total = counts.sum()
            if total == 0:
                raise RuntimeError(f"replay holds no sequence of length {self.length} yet ({self.stored} steps)")
            picks = self.rng.choice(len(keys), size=batch - len(seqs), p=counts / total)
            for pick in picks:
                stream, number = keys[pick]
                seqs.append(self._read(stream, number * self.chunk_size + int(self.rng.integers(counts[pick]))))
        return {k: np.stack([s[k] for s in seqs]) for k in seqs[0]}

    # ------------------------------------------------------------------ persistence

    def save(self, folder: str) -> None:
        """Write changed chunks (atomically, one file each) and delete files of evicted chunks."""
        os.makedirs(folder, exist_ok=True)
        for stream, number in sorted(self.dirty):
            chunk = self.chunks[(stream, number)]
            size = min(self.chunk_size, self.stream_len[stream] - number * self.chunk_size)
            with tempfile.NamedTemporaryFile("wb", dir=folder, suffix=".tmp", delete=False) as f:
                np.savez(f, **{k: v[:size] for k, v in chunk.items()})
            os.replace(f.name, os.path.join(folder, f"{stream}-{number:08d}.npz"))
        self.dirty.clear()
        kept = {f"{s}-{n:08d}.npz" for s, n in self.chunks}
        for path in glob.glob(os.path.join(folder, "*.npz")):
            if os.path.basename(path) not in kept:
                os.remove(path)

    def load(self, folder: str) -> None:
        """Read chunks saved by ``save``; environments then start new streams."""
        for path in glob.glob(os.path.join(folder, "*.tmp")):  # left by an interrupted save
            os.remove(path)
        paths = sorted(glob.glob(os.path.join(folder, "*.npz")), key=lambda p: (os.path.getmtime(p), p))
        for path in paths:
            stream, _, number = os.path.basename(path)[:-4].rpartition("-")
            with np.load(path) as data:
                arrays = {k: data[k] for k in data.files}
            size = len(next(iter(arrays.values())))
            chunk = {k: np.empty((self.chunk_size, *v.shape[1:]), v.dtype) for k, v in arrays.items()}
            for k, v in arrays.items():
                chunk[k][:size] = v
            self.chunks[(stream, int(number))] = chunk
            self.stream_len[stream] = max(self.stream_len.get(stream, 0), int(number) * self.chunk_size + size)
            self.stored += size
        while self.stored > self.capacity:
            self._evict()
