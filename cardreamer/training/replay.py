"""Replay buffer: chunked storage with a capacity in steps, uniform sampling and an online queue.

Each environment writes a *stream* of steps. A stream is cut into chunks of ``chunk_size`` steps,
allocated when first written; once the buffer holds more than ``capacity`` steps, the oldest
chunk is dropped, so memory stays bounded. A sequence of ``length`` steps may span consecutive
chunks of one stream. With ``online`` on, every ``length`` fresh steps of a stream are queued and
the next batches train on them first (each once); the rest of a batch is sampled uniformly.

With ``latents``, every stored step also keeps per-step arrays that are not part of what was added
(the agent's posterior latent state, for replay context): they start at the given fill values,
``sample_with_positions`` says where each sequence came from, and ``update`` writes new values back.

Every stored step also records where it came from (its *origin*): the env index, the episode (numbered
1, 2, ... in the order episodes start, across envs and resumes), the step's index in that episode
and the run's env-step counter when it was collected; ``origins`` reads them for sampled
sequences and :func:`provenance` summarises one, so that a report can say which episode it shows.

Chunks are saved to and loaded from a folder as ``.npz`` files so training can resume; the latents
of a chunk go to a companion ``.latent.npz`` file, so that rewriting them (after every update)
does not rewrite the observations.

:func:`check_memory` refuses, before training starts, a replay that would not fit in the memory
available: the steps it will hold (its capacity, or fewer if the run collects fewer) times the
bytes of one step (:func:`step_bytes`).
"""

from __future__ import annotations

import collections
import glob
import os
import uuid
from collections.abc import Iterator, Mapping

import gymnasium as gym
import numpy as np

from cardreamer.atomic import atomic_output
from cardreamer.config_loading import ConfigError

LATENT_SUFFIX = ".latent.npz"
ORIGIN_KEY = "__origin__"  # the origins of a chunk's steps, in its .npz beside the observations
ORIGIN_FIELDS = ("env", "episode", "episode_step", "env_step")  # columns of an origin row; -1: unknown
Position = tuple[str, int]  # (stream, index of a sequence's first step)


class Replay:
    def __init__(self, length: int, capacity: int, chunk_size: int = 1024, online: bool = True, seed: int = 0,
                 latents: Mapping[str, np.ndarray] | None = None):
        """``latents``: per-step fill values (array, dtype) of the kept latent keys."""
        if chunk_size < 1 or length < 1 or capacity < length:
            raise ValueError(f"replay: need length >= 1, chunk_size >= 1, capacity >= length; got "
                             f"length={length}, chunk_size={chunk_size}, capacity={capacity}")
        self.length, self.capacity, self.chunk_size, self.online = length, capacity, chunk_size, online
        self.latents = {k: np.asarray(v) for k, v in (latents or {}).items()}
        self.rng = np.random.default_rng(seed)
        self.chunks: collections.OrderedDict[tuple[str, int], dict[str, np.ndarray]] = collections.OrderedDict()
        self.stream_len: dict[str, int] = {}  # steps ever written per stream
        self.env_stream: dict[int, str] = {}  # env index -> its current stream
        self.queue: collections.deque[tuple[str, int]] = collections.deque(maxlen=max(1, capacity // length))
        self.fresh: dict[str, int] = collections.defaultdict(int)
        self.origin: dict[tuple[str, int], np.ndarray] = {}  # chunk -> (chunk_size, 4) int64 origins
        self.env_episode: dict[int, tuple[int, int]] = {}  # env -> (its episode, index of its last step)
        self.next_episode = 1
        self.stored = 0
        self.dirty: set[tuple[str, int]] = set()  # chunks whose steps changed since the last save
        self.latent_dirty: set[tuple[str, int]] = set()  # chunks whose latents changed

    def __len__(self) -> int:
        return self.stored

    def add(self, step: dict[str, np.ndarray], env: int = 0, env_step: int = -1) -> None:
        """Append one step (a dict of arrays without batch axis) to the stream of ``env``;
        ``env_step``: the run's env-step counter when it was collected (-1: unknown). A step with
        ``is_first`` (or an env's first step) starts a new episode."""
        if set(step) & set(self.latents):
            raise KeyError(f"replay step keys {sorted(set(step) & set(self.latents))} are latent keys, "
                           f"which only Replay.update writes")
        stream = self.env_stream.get(env)
        if stream is None:
            stream = self.env_stream[env] = uuid.uuid4().hex
            self.stream_len[stream] = 0
        index = self.stream_len[stream]
        chunk_key = (stream, index // self.chunk_size)
        if chunk_key not in self.chunks:
            self.chunks[chunk_key] = {**{k: np.empty((self.chunk_size, *np.shape(v)), np.asarray(v).dtype)
                                         for k, v in step.items()}, **self._fresh_latents()}
            self.origin[chunk_key] = np.full((self.chunk_size, len(ORIGIN_FIELDS)), -1, np.int64)
        chunk = self.chunks[chunk_key]
        if set(chunk) != set(step) | set(self.latents):
            stored = sorted(set(chunk) - set(self.latents))
            raise KeyError(f"replay step keys {sorted(step)} differ from the stored keys {stored}")
        for key, value in step.items():
            chunk[key][index % self.chunk_size] = value
        episode, episode_step = self.env_episode.get(env, (0, -1))
        if not episode or bool(step.get("is_first", False)):
            episode, episode_step = self.next_episode, -1
            self.next_episode += 1
        self.env_episode[env] = (episode, episode_step + 1)
        self.origin[chunk_key][index % self.chunk_size] = (env, episode, episode_step + 1, env_step)
        self.dirty.add(chunk_key)
        self.latent_dirty.add(chunk_key)
        self.stream_len[stream] = index + 1
        self.stored += 1
        if self.online:
            self.fresh[stream] += 1
            if self.fresh[stream] >= self.length:
                self.fresh[stream] = 0
                self.queue.append((stream, index + 1 - self.length))
        while self.stored > self.capacity:
            self._evict()

    def episode_of(self, env: int) -> int | None:
        """The number of the episode ``env`` last added a step to (None before its first step)."""
        return self.env_episode[env][0] if env in self.env_episode else None

    def _evict(self) -> None:
        (stream, number), _ = self.chunks.popitem(last=False)
        self.origin.pop((stream, number), None)
        start = number * self.chunk_size
        self.stored -= min(self.chunk_size, self.stream_len[stream] - start)
        self.dirty.discard((stream, number))
        self.latent_dirty.discard((stream, number))

    def _fresh_latents(self) -> dict[str, np.ndarray]:
        """One chunk's latent arrays, all steps at the fill values ('no context yet')."""
        return {k: np.broadcast_to(v, (self.chunk_size, *v.shape)).copy() for k, v in self.latents.items()}

    def _valid_starts(self) -> tuple[list[tuple[str, int]], np.ndarray]:
        """Chunks and, per chunk, how many sequences start in it and fit in the stored data."""
        keys = list(self.chunks)
        counts = np.empty(len(keys), np.int64)
        for i, (stream, number) in enumerate(keys):
            start = number * self.chunk_size
            counts[i] = max(0, min(start + self.chunk_size, self.stream_len[stream] - self.length + 1) - start)
        return keys, counts

    def _segments(self, stream: str, start: int, end: int) -> Iterator[tuple[tuple[str, int], int, int, int]]:
        """The pieces of steps [start, end) of a stream: (chunk key, lo, hi in the chunk, offset)."""
        index = start
        while index < end:
            lo = index % self.chunk_size
            hi = min(self.chunk_size, lo + end - index)
            yield (stream, index // self.chunk_size), lo, hi, index - start
            index += hi - lo

    def _read(self, stream: str, start: int) -> dict[str, np.ndarray] | None:
        parts = []
        for key, lo, hi, _ in self._segments(stream, start, start + self.length):
            chunk = self.chunks.get(key)
            if chunk is None:
                return None
            parts.append({k: v[lo:hi] for k, v in chunk.items()})
        if len(parts) == 1:
            return {k: v.copy() for k, v in parts[0].items()}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def ready(self) -> bool:
        """Whether at least one full sequence is stored."""
        return int(self._valid_starts()[1].sum()) > 0

    def sample(self, batch: int, online: bool = True) -> dict[str, np.ndarray]:
        """A dict of (batch, length, ...) arrays: queued fresh sequences first (unless ``online`` is
        False, e.g. for reports), then uniform ones."""
        return self.sample_with_positions(batch, online)[0]

    def sample_with_positions(self, batch: int, online: bool = True) -> tuple[dict[str, np.ndarray], list[Position]]:
        """``sample`` and, per sequence, its (stream, first step index) for ``update``."""
        seqs, positions = [], []
        while online and self.queue and len(seqs) < batch:
            position = self.queue.popleft()
            seq = self._read(*position)
            if seq is not None:
                seqs.append(seq)
                positions.append(position)
        if len(seqs) < batch:
            keys, counts = self._valid_starts()
            total = counts.sum()
            if total == 0:
                raise RuntimeError(f"replay holds no sequence of length {self.length} yet ({self.stored} steps)")
            picks = self.rng.choice(len(keys), size=batch - len(seqs), p=counts / total)
            for pick in picks:
                stream, number = keys[pick]
                position = (stream, number * self.chunk_size + int(self.rng.integers(counts[pick])))
                seqs.append(self._read(*position))
                positions.append(position)
        return {k: np.stack([s[k] for s in seqs]) for k in seqs[0]}, positions

    def origins(self, positions: list[Position], length: int | None = None) -> np.ndarray:
        """(batch, length, 4) int64 origins (:data:`ORIGIN_FIELDS`) of the first ``length`` steps
        (default: the sequence length) of the sequences at ``positions``; -1 where unknown."""
        length = self.length if length is None else length
        out = np.full((len(positions), length, len(ORIGIN_FIELDS)), -1, np.int64)
        for row, (stream, start) in enumerate(positions):
            for key, lo, hi, at in self._segments(stream, start, start + length):
                if key in self.origin:
                    out[row, at:at + hi - lo] = self.origin[key][lo:hi]
        return out

    def update(self, positions: list[Position], values: Mapping[str, np.ndarray], offset: int = 0) -> None:
        """Write (batch, n, ...) latent ``values`` at steps offset..offset+n-1 of the sequences at
        ``positions`` (from ``sample_with_positions``); steps of chunks dropped since are skipped."""
        unknown = sorted(set(values) - set(self.latents))
        if unknown:
            raise KeyError(f"replay update: {unknown} are not latent keys of this replay ({sorted(self.latents)})")
        if not values:
            return
        for row, (stream, start) in enumerate(positions):
            steps = len(next(iter(values.values()))[row])
            for key, lo, hi, at in self._segments(stream, start + offset, start + offset + steps):
                chunk = self.chunks.get(key)
                if chunk is not None:
                    for name, value in values.items():
                        chunk[name][lo:hi] = value[row, at:at + hi - lo]
                    self.latent_dirty.add(key)

    # ------------------------------------------------------------------ persistence

    def save(self, folder: str) -> None:
        """Write changed chunks and latents (atomically, one file each) and delete files of evicted
        chunks."""
        os.makedirs(folder, exist_ok=True)
        for key in sorted(self.dirty | (self.latent_dirty if self.latents else set())):
            stream, number = key
            chunk = self.chunks[key]
            size = min(self.chunk_size, self.stream_len[stream] - number * self.chunk_size)
            # Steps before latents: a chunk whose data file exists always has its latents next to it.
            if key in self.dirty:
                _write_npz(os.path.join(folder, f"{stream}-{number:08d}.npz"),
                           {**{k: v[:size] for k, v in chunk.items() if k not in self.latents},
                            ORIGIN_KEY: self.origin[key][:size]})
            if self.latents:
                _write_npz(os.path.join(folder, f"{stream}-{number:08d}{LATENT_SUFFIX}"),
                           {k: chunk[k][:size] for k in self.latents})
        self.dirty.clear()
        self.latent_dirty.clear()
        kept = {f"{s}-{n:08d}{suffix}" for s, n in self.chunks for suffix in (".npz", LATENT_SUFFIX)}
        for path in glob.glob(os.path.join(folder, "*.npz")):
            if os.path.basename(path) not in kept:
                os.remove(path)

    def load(self, folder: str) -> None:
        """Read chunks saved by ``save``; environments then start new streams."""
        for path in glob.glob(os.path.join(folder, "*.tmp")):  # left by an interrupted save
            os.remove(path)
        paths = sorted((p for p in glob.glob(os.path.join(folder, "*.npz")) if not p.endswith(LATENT_SUFFIX)),
                       key=lambda p: (os.path.getmtime(p), p))
        for path in paths:
            stream, _, number = os.path.basename(path)[:-4].rpartition("-")
            arrays = _read_npz(path)
            origin = arrays.pop(ORIGIN_KEY, None)  # absent in replays saved before origins were kept
            size = len(next(iter(arrays.values())))
            chunk = {k: np.empty((self.chunk_size, *v.shape[1:]), v.dtype) for k, v in arrays.items()}
            for k, v in arrays.items():
                chunk[k][:size] = v
            chunk.update(self._fresh_latents())
            latent_path = path[:-4] + LATENT_SUFFIX
            saved = _read_npz(latent_path) if self.latents and os.path.exists(latent_path) else {}
            for k, fill in self.latents.items():  # latents of another model shape stay at the fill values
                value = saved.get(k)
                if value is not None and value.shape == (size, *fill.shape) and value.dtype == fill.dtype:
                    chunk[k][:size] = value
            self.chunks[(stream, int(number))] = chunk
            self.origin[(stream, int(number))] = np.full((self.chunk_size, len(ORIGIN_FIELDS)), -1, np.int64)
            if origin is not None and origin.shape == (size, len(ORIGIN_FIELDS)):
                self.origin[(stream, int(number))][:size] = origin
                self.next_episode = max(self.next_episode, int(origin[:, 1].max(initial=0)) + 1)
            self.stream_len[stream] = max(self.stream_len.get(stream, 0), int(number) * self.chunk_size + size)
            self.stored += size
        while self.stored > self.capacity:
            self._evict()

    def adopt(self, folder: str) -> None:
        """Load another run's replay as this one's own: its chunks are written by the next ``save``."""
        self.load(folder)
        self.dirty |= set(self.chunks)
        self.latent_dirty |= set(self.chunks)


MEMORY_SHARE = 0.8
"""The share of the available memory a replay may take; the rest is left to the model, the envs
and the system."""
FLAG_BYTES = 4 + 3  # reward (float32), is_first, is_last, is_terminal (bool)
ORIGIN_BYTES = 8 * len(ORIGIN_FIELDS)


def step_bytes(obs_space: gym.spaces.Dict, act_space: gym.Space, latents: Mapping[str, np.ndarray]) -> int:
    """Bytes one stored step takes: its observations, the action, reward and flags, its origin,
    and the latents kept for replay context."""
    arrays = [(s.shape, s.dtype) for s in obs_space.spaces.values()] + [(act_space.shape, act_space.dtype)]
    arrays += [(np.shape(v), np.asarray(v).dtype) for v in latents.values()]
    return sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize for shape, dtype in arrays) + FLAG_BYTES + ORIGIN_BYTES


def provenance(origin: np.ndarray) -> dict:
    """Where a sequence of steps came from, from its (T, 4) ``origin`` rows (see ``origins``):
    ``{"env": 1, "env_steps": [first, last], "episodes": [{"number": 37, "steps": [first, last]}]}``;
    a sequence that crosses an episode's end lists both episodes; unknown fields are None or left out."""
    known = origin[origin[:, 1] > 0]
    envs = sorted(set(known[:, 0].tolist()))
    steps = known[known[:, 3] >= 0, 3]
    episodes = []
    for env, number, step, _ in known.tolist():
        if episodes and episodes[-1]["number"] == number:
            episodes[-1]["steps"][1] = step
        else:
            episodes.append({"number": number, "steps": [step, step]})
    return {"env": envs[0] if len(envs) == 1 else None,
            "env_steps": [int(steps.min()), int(steps.max())] if len(steps) else None, "episodes": episodes}


def available_memory() -> tuple[int, str] | None:
    """(bytes, where the figure comes from) of the memory this process can still take: the
    system's available memory (MemAvailable), or the cgroup's limit minus its use if that is less;
    None where neither can be read."""
    found: list[tuple[int, str]] = []
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        found.append((int(fields["MemAvailable"].split()[0]) * 1024, "MemAvailable in /proc/meminfo"))
    except (OSError, KeyError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read())
        if limit != "max":
            found.append((int(limit) - used, "the cgroup's memory.max minus memory.current"))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def check_memory(per_step: int, capacity: int, held: int, to_collect: int, open_chunks: int, chunk_size: int,
                 available: tuple[int, str] | None) -> None:
    """Refuse (ConfigError naming ``replay.capacity``) a replay whose growth would not fit in
    :data:`MEMORY_SHARE` of the ``available`` memory (which excludes the ``held`` steps already
    loaded): the run collects ``to_collect`` more steps, the replay keeps at most ``capacity``, plus
    one partly filled chunk per env (``open_chunks``). ``available`` None skips the check."""
    if available is None:
        return
    budget = int(available[0] * MEMORY_SHARE)
    steps = min(capacity, held + max(0, to_collect)) + open_chunks * chunk_size
    if (steps - held) * per_step <= budget:
        return
    fits = held + budget // per_step - open_chunks * chunk_size
    advice = (f"replay.capacity={_round_down(fits)} fits (--replay.capacity={_round_down(fits)})" if fits > 0 else
              "not even one chunk per env fits: use smaller images (env.image_size) or fewer observations")
    now = f", {_size(held * per_step)} of them held now" if held else ""
    raise ConfigError(f"replay.capacity={capacity}: the replay would grow to {_size(steps * per_step)} "
                      f"({steps} steps of {per_step} B{now}) but {_size(budget)} may be used "
                      f"({MEMORY_SHARE:.0%} of {_size(available[0])} available, {available[1]}); {advice}")


def _round_down(n: int) -> int:
    """``n`` rounded down to two significant digits."""
    scale = 10 ** max(0, len(str(n)) - 2)
    return n // scale * scale


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def _write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    with atomic_output(path) as f:
        np.savez(f, **arrays)


def _read_npz(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
