"""Checkpoints in ``<logdir>/checkpoints/<step>/``: the backbone's state (``agent.pkl``) and the
loop's counters (``counters.json``). Each is written into a ``.tmp`` folder that is renamed when
complete, so a process killed mid-write leaves no partial checkpoint; only the newest ``keep``
are kept. Loading falls back to older checkpoints if the newest cannot be read."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable


def checkpoint_dirs(logdir: str) -> list[str]:
    """Complete checkpoints, oldest first."""
    root = os.path.join(logdir, "checkpoints")
    if not os.path.isdir(root):
        return []
    names = sorted(n for n in os.listdir(root) if n.isdigit() and os.path.isdir(os.path.join(root, n)))
    return [os.path.join(root, n) for n in names]


def save_checkpoint(logdir: str, step: int, save_agent: Callable[[str], None], counters: dict, keep: int) -> str:
    root = os.path.join(logdir, "checkpoints")
    os.makedirs(root, exist_ok=True)
    final = os.path.join(root, f"{int(step):012d}")
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_agent(os.path.join(tmp, "agent.pkl"))
    with open(os.path.join(tmp, "counters.json"), "w") as f:
        json.dump(counters, f)
        f.flush()
        os.fsync(f.fileno())
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
    with open(os.path.join(path, "counters.json")) as f:
        return json.load(f)


def load_latest(logdir: str, load_agent: Callable[[str], None]) -> tuple[str, dict] | None:
    """Load the newest readable checkpoint into the agent; returns (path, counters) or None."""
    errors = []
    for path in reversed(checkpoint_dirs(logdir)):
        try:
            counters = load_counters(path)
            load_agent(os.path.join(path, "agent.pkl"))
        except Exception as error:  # noqa: BLE001 - any damage to a checkpoint: fall back to an older one
            errors.append(f"{path}: {error!r}")
            continue
        if errors:
            warnings.warn("skipped unreadable checkpoints: " + "; ".join(errors), stacklevel=2)
        return path, counters
    if errors:
        raise RuntimeError("no readable checkpoint in " + logdir + ":\n" + "\n".join(errors))
    return None
