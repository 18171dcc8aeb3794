"""Collected driving datasets: the episode file format, the index, and a numpy-only loader.

A dataset is a folder of compressed ``.npz`` episodes plus ``index.jsonl`` (one JSON line per
episode: task, map, seed, policy, config_hash, length, return, success, file, ...). An episode of
``T`` steps (its transitions + 1) holds flat keys, in the DreamerV3 step convention — step ``t``
carries the observation, the reward and flags that came with it, and the action then taken:

=====================  ============================================================================
``obs/<key>``          observation ``[T, ...]``; for point clouds (keys ending in ``_points``, or any
                       key whose shape varies) all steps' points concatenated ``[N, C]`` ...
``offsets/<key>``      ... with ``[T + 1]`` offsets: step ``t`` is ``obs/<key>[offsets[t]:offsets[t+1]]``
``action``             ``[T]`` or ``[T, A]``: the action taken after step ``t`` (zeros on the last step)
``reward``             ``[T]`` float32: the reward received on arriving at step ``t`` (0 on the first)
``is_first``           ``[T]`` bool, true on step 0
``is_last``            ``[T]`` bool, true on the last step (terminated or truncated)
``is_terminal``        ``[T]`` bool, true on the last step if the episode terminated (not truncated)
``info/<key>``         ``[T]`` every numeric scalar of the step info (float64 with NaN where a step
                       lacks the key; bool or int64 when every step has it)
``meta``               the episode's index entry as a JSON string
=====================  ============================================================================

``iter_replay_steps`` turns episodes into the per-step dicts that
``cardreamer.training.replay.Replay.add`` takes, so a world model can be pre-trained offline.
"""
from __future__ import annotations

import itertools
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

INDEX_FILE = "index.jsonl"
REPLAY_KEYS = ("action", "reward", "is_first", "is_last", "is_terminal")
"""Per-step keys besides the observations, as DreamerV3's replay stores them."""


def is_point_key(key: str) -> bool:
    """Observation keys stored as concatenated points plus offsets whatever their shape."""
    return key.endswith("_points")


def read_index(root: str | Path) -> tuple[list[dict], int]:
    """The parseable lines of ``root/index.jsonl`` and how many lines could not be parsed."""
    path = Path(root) / INDEX_FILE
    entries, bad = [], 0
    if not path.is_file():
        return entries, bad
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(entry, dict) and isinstance(entry.get("file"), str):
            entries.append(entry)
        else:
            bad += 1
    return entries, bad


class Episode(Mapping):
    """One loaded episode: its index entry (``meta``) and its arrays by flat key."""

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict):
        self.arrays = arrays
        self.meta = meta

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.arrays)

    def __len__(self) -> int:
        return len(self.arrays)

    @property
    def length(self) -> int:
        """Number of steps ``T`` (transitions + 1)."""
        return len(self.arrays["reward"])

    @property
    def obs_keys(self) -> list[str]:
        return [k[4:] for k in self.arrays if k.startswith("obs/")]

    def is_ragged(self, key: str) -> bool:
        return f"offsets/{key}" in self.arrays

    def points(self, key: str) -> list[np.ndarray]:
        """A point-cloud observation as one array per step."""
        values, offsets = self.arrays[f"obs/{key}"], self.arrays[f"offsets/{key}"]
        return [values[a:b] for a, b in itertools.pairwise(offsets)]

    def obs(self, key: str) -> np.ndarray:
        """Observation ``key`` as one ``[T, ...]`` array; point clouds must have the same number of
        points at every step (as the embedded lidar's one point per ray does)."""
        if not self.is_ragged(key):
            return self.arrays[f"obs/{key}"]
        counts = np.diff(self.arrays[f"offsets/{key}"])
        if len(set(counts.tolist())) > 1:
            raise ValueError(f"observation {key!r} has {counts.min()}..{counts.max()} points per step in "
                             f"{self.meta.get('file')}; it cannot be stacked into [T, ...] (leave it out "
                             f"with keys=[...], or read it with episode.points({key!r}))")
        values = self.arrays[f"obs/{key}"]
        return values.reshape(len(counts), int(counts[0]) if len(counts) else 0, *values.shape[1:])

    def steps(self, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Observations (``keys``, default all) and the replay keys, each ``[T, ...]``."""
        keys = self.obs_keys if keys is None else list(keys)
        missing = [k for k in keys if f"obs/{k}" not in self.arrays]
        if missing:
            raise KeyError(f"{self.meta.get('file')}: no observation {missing}; it has {self.obs_keys}")
        return {**{k: self.obs(k) for k in keys}, **{k: self.arrays[k] for k in REPLAY_KEYS}}


def load_episode(path: str | Path, meta: dict | None = None) -> Episode:
    """Read one episode file completely into memory."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = meta if meta is not None else json.loads(str(arrays.pop("meta", "{}")))
    arrays.pop("meta", None)
    return Episode(arrays, meta)


class Dataset:
    """The complete episodes of a dataset folder, optionally filtered by index fields."""

    def __init__(self, root: str | Path, entries: list[dict] | None = None, cache_size: int = 16):
        self.root = Path(root)
        if entries is None:
            if not (self.root / INDEX_FILE).is_file():
                raise FileNotFoundError(f"{self.root} is not a dataset: it has no {INDEX_FILE} "
                                        f"(write one with `cardreamer collect --out {self.root}`)")
            entries = [e for e in read_index(self.root)[0] if (self.root / e["file"]).is_file()]
        self.entries = entries
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Episode] = OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Episode]:
        for entry in self.entries:
            yield self.load(entry)

    def filter(self, predicate: Callable[[dict], bool] | None = None, **equals: Any) -> Dataset:
        """Episodes whose index entry has every ``field=value`` given and satisfies ``predicate``,
        e.g. ``ds.filter(task="wpt", success=True)`` or ``ds.filter(lambda e: e["return"] > 50)``."""
        kept = [e for e in self.entries
                if all(e.get(k) == v for k, v in equals.items()) and (predicate is None or predicate(e))]
        return Dataset(self.root, kept, self.cache_size)

    def load(self, entry: dict) -> Episode:
        """The episode of an index entry (recently used episodes are kept in memory)."""
        name = entry["file"]
        if name in self._cache:
            self._cache.move_to_end(name)
            return self._cache[name]
        episode = load_episode(self.root / name, entry)
        if self.cache_size:
            self._cache[name] = episode
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return episode

    @property
    def total_steps(self) -> int:
        return int(sum(e["length"] + 1 for e in self.entries))

    def sample_sequences(self, length: int, batch: int, seed: int = 0,
                         keys: Iterable[str] | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Endless batches of ``(batch, length, ...)`` arrays: windows drawn uniformly over every
        position where ``length`` consecutive steps of one episode fit."""
        usable = [e for e in self.entries if e["length"] + 1 >= length]
        if not usable:
            raise ValueError(f"no episode in {self.root} has {length} steps (longest: "
                             f"{max((e['length'] + 1 for e in self.entries), default=0)})")
        starts = np.array([e["length"] + 2 - length for e in usable], dtype=np.float64)
        rng = np.random.default_rng(seed)
        keys = list(keys) if keys is not None else None
        while True:
            picks = rng.choice(len(usable), size=batch, p=starts / starts.sum())
            windows = []
            for pick in picks:
                steps = self.load(usable[pick]).steps(keys)
                t = int(rng.integers(starts[pick]))
                windows.append({k: v[t:t + length] for k, v in steps.items()})
            yield {k: np.stack([w[k] for w in windows]) for k in windows[0]}


def iter_replay_steps(dataset: Dataset | str | Path, keys: Iterable[str] | None = None,
                      transform: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None
                      ) -> Iterator[dict[str, np.ndarray]]:
    """Per-step dicts for ``Replay.add``: observation keys (``keys``, default all) plus ``action``,
    ``reward``, ``is_first``, ``is_last``, ``is_terminal``, episode after episode.

    ``transform`` maps the observation dict of one step to what the agent sees (for DreamerV3,
    ``StandardObs(env, image_size).observation``), so offline steps match online ones.
    """
    dataset = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    for episode in dataset:
        steps = episode.steps(keys)
        obs_keys = [k for k in steps if k not in REPLAY_KEYS]
        for t in range(episode.length):
            obs = {k: steps[k][t] for k in obs_keys}
            if transform is not None:
                obs = transform(obs)
            yield {**obs, **{k: steps[k][t] for k in REPLAY_KEYS}}


def fill_replay(replay: Any, dataset: Dataset | str | Path, keys: Iterable[str] | None = None,
                transform: Callable[[dict], dict] | None = None, env: int = 0) -> int:
    """Add every step of a dataset to a replay (anything with ``add(step, env=...)``); returns the
    number of steps added. Episodes follow each other in one stream, separated by ``is_first``."""
    count = 0
    for step in iter_replay_steps(dataset, keys, transform):
        replay.add(step, env=env)
        count += 1
    return count
