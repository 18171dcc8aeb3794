"""Checkpoints in ``<logdir>/checkpoints/<step>/``: the backbone's state (``agent.npz``) and the
loop's counters (``counters.json``) and the observation and action layout (``layout.json``).

The backbone state is plain arrays plus a JSON manifest in one ``.npz`` read with
``allow_pickle=False``: loading a checkpoint never runs code from it. Each checkpoint is written
into a ``.tmp`` folder that is renamed when complete, so a process killed mid-write leaves no
partial checkpoint; only the newest ``keep`` are kept. Loading falls back to older checkpoints if
the newest cannot be read. Pickle checkpoints of older versions (``agent.pkl``) are refused with
the command that converts them (:mod:`dreamerv3_backbone.convert_checkpoint`).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
import zipfile
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from cardreamer.atomic import atomic_output, write_atomic

AGENT_FILE = "agent.npz"
LAYOUT_FILE = "layout.json"
LEGACY_AGENT_FILE = "agent.pkl"
_MANIFEST = "__manifest__"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message is one line."""


def write_arrays(path: str, arrays: dict[str, np.ndarray], manifest: dict) -> None:
    """Write named arrays and a JSON manifest as one ``.npz``, atomically (fsynced, then renamed)."""
    for name, value in arrays.items():
        if np.asarray(value).dtype.hasobject:
            raise TypeError(f"checkpoint array {name!r} holds Python objects; only plain arrays are stored")
    with atomic_output(path) as f:
        np.savez(f, **{_MANIFEST: np.array(json.dumps(manifest))}, **arrays)


def read_arrays(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and manifest of a file written by :func:`write_arrays`; never unpickles."""
    try:
        with np.load(path, allow_pickle=False) as data:
            manifest = json.loads(str(data[_MANIFEST]))
            arrays = {k: data[k] for k in data.files if k != _MANIFEST}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path}: not a readable checkpoint (its manifest is not a JSON object)")
    return arrays, manifest


def agent_file(folder: str) -> str:
    """The backbone state file of a checkpoint folder; refuses a legacy pickle checkpoint."""
    path = os.path.join(folder, AGENT_FILE)
    legacy = os.path.join(folder, LEGACY_AGENT_FILE)
    if not os.path.isfile(path) and os.path.isfile(legacy):
        raise CheckpointError(
            f"{legacy}: a pickle checkpoint of an older version is not loaded, since unpickling a file can run "
            f"code; if you trust it, convert it with `python -m dreamerv3_backbone.convert_checkpoint {folder}`")
    return path


def checkpoint_dirs(logdir: str) -> list[str]:
    """Complete checkpoints, oldest first."""
    root = os.path.join(logdir, "checkpoints")
    if not os.path.isdir(root):
        return []
    names = sorted(n for n in os.listdir(root) if n.isdigit() and os.path.isdir(os.path.join(root, n)))
    return [os.path.join(root, n) for n in names]


def resolve(path: str) -> tuple[str, str]:
    """(run directory, checkpoint folder) from a run directory (its newest checkpoint) or a
    checkpoint folder ``<logdir>/checkpoints/<step>``."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isfile(os.path.join(path, "counters.json")):
        return os.path.dirname(os.path.dirname(path)), path
    if os.path.isfile(os.path.join(path, "config.yaml")):
        found = checkpoint_dirs(path)
        if not found:
            raise FileNotFoundError(f"{path}: no checkpoint under {os.path.join(path, 'checkpoints')}")
        return path, found[-1]
    raise FileNotFoundError(f"{path}: neither a run directory (with config.yaml) nor a checkpoint folder "
                            f"(with counters.json and {AGENT_FILE})")


def space_layout(obs_space: gym.spaces.Dict, act_space: gym.Space) -> dict[str, dict[str, str]]:
    """What a backbone's state depends on besides its config: each observation key's and the
    action's space type, shape and dtype (and the number of discrete actions)."""

    def describe(space: gym.Space) -> str:
        n = f", n={int(space.n)}" if isinstance(space, gym.spaces.Discrete) else ""
        return f"{type(space).__name__}(shape={tuple(space.shape or ())}, dtype={space.dtype}{n})"

    return {"observation": {k: describe(s) for k, s in obs_space.spaces.items()}, "action": {"action": describe(act_space)}}


def check_layout(folder: str, layout: dict, where: str) -> None:
    """Refuse (CheckpointError) a checkpoint whose recorded layout (see :func:`space_layout`) differs
    from ``layout``, naming the first difference; a checkpoint without a layout is not checked here."""
    path = os.path.join(folder, LAYOUT_FILE)
    if not os.path.isfile(path):
        return
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not readable ({error})") from None
    for part, here in layout.items():
        there = saved.get(part, {}) if isinstance(saved, dict) else {}
        for key in sorted(set(here) | set(there)):
            if here.get(key) != there.get(key):
                raise CheckpointError(f"{where}: {part} {key!r} is {there.get(key) or 'absent'} in the checkpoint, "
                                      f"{here.get(key) or 'absent'} here (a different {part} layout)")


def save_checkpoint(logdir: str, step: int, save_agent: Callable[[str], None], counters: dict, keep: int,
                    layout: dict | None = None) -> str:
    root = os.path.join(logdir, "checkpoints")
    os.makedirs(root, exist_ok=True)
    final = os.path.join(root, f"{int(step):012d}")
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        save_agent(os.path.join(tmp, AGENT_FILE))
        write_atomic(os.path.join(tmp, "counters.json"), json.dumps(counters))
        if layout is not None:
            write_atomic(os.path.join(tmp, LAYOUT_FILE), json.dumps(layout))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # e.g. a full disk: keep the previous checkpoints whole
        raise
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoint_dirs(logdir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for name in os.listdir(root):  # leftovers of interrupted writes
        if name.endswith(".tmp") and os.path.join(root, name) != tmp:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    return final


def load_counters(path: str) -> dict:
    try:
        with open(os.path.join(path, "counters.json")) as f:
            counters = json.load(f)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}/counters.json: not readable ({error})") from None
    if not isinstance(counters, dict) or not isinstance(counters.get("env_steps"), int):
        raise CheckpointError(f"{path}/counters.json: expected an object with an integer env_steps")
    return counters


def load_checkpoint(path: str, load_agent: Callable[[str], None]) -> dict:
    """Load one checkpoint folder into the agent; returns its counters."""
    counters = load_counters(path)
    try:
        load_agent(agent_file(path))
    except FileNotFoundError as error:
        raise CheckpointError(f"{path}: no {AGENT_FILE} ({error.strerror})") from None
    return counters


def load_latest(logdir: str, load_agent: Callable[[str], None]) -> tuple[str, dict] | None:
    """Load the newest readable checkpoint into the agent; returns (path, counters), or None when
    the run has no checkpoint. Raises :class:`CheckpointError` when none of them can be read."""
    errors = []
    for path in reversed(checkpoint_dirs(logdir)):
        try:
            counters = load_checkpoint(path, load_agent)
        except CheckpointError as error:  # any damage to a checkpoint: fall back to an older one
            errors.append(str(error))
            continue
        if errors:
            warnings.warn("skipped unreadable checkpoints: " + "; ".join(errors), stacklevel=2)
        return path, counters
    if errors:
        more = f" (and {len(errors) - 1} older)" if len(errors) > 1 else ""
        raise CheckpointError(f"no readable checkpoint in {logdir}: {errors[0]}{more}")
    return None


def restore(path: str, load_agent: Callable[[str], None]) -> str:
    """Load the given checkpoint folder, or a run directory's newest readable checkpoint (falling
    back to older ones); returns the folder loaded."""
    logdir, folder = resolve(path)
    if os.path.abspath(os.path.expanduser(path)) == folder:
        load_checkpoint(folder, load_agent)
        return folder
    loaded = load_latest(logdir, load_agent)
    assert loaded is not None  # resolve() found a checkpoint
    return loaded[0]
