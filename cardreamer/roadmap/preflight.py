"""Reading a map with CARLA once in a child process, so that CARLA crashing on a file cannot take
the caller down: ``check_with_carla`` runs the road-map loader (parse, topology walk, lane walks,
signals, spawn points, landmarks) in a child and raises ``MapFileError`` with one line naming the
file and the step that failed. The verdict is cached by file content (a small JSON file per
content hash), so each file pays the child process once.

The cache lives in ``$CARDREAMER_CACHE_DIR/map_checks`` (default ``~/.cache/cardreamer``); a cache
that cannot be written only costs the child process again.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from cardreamer.atomic import write_atomic
from cardreamer.roadmap.errors import MapError
from cardreamer.roadmap.xodr_file import MapFileError

CACHE_DIR_ENV = "CARDREAMER_CACHE_DIR"
CHECK_VERSION = 1
"""Bumped whenever the child's walk changes, so that older verdicts are not trusted."""
TIMEOUT_S = 600.0
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    base = os.environ.get(CACHE_DIR_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "cardreamer"
    return Path(base).expanduser() / "map_checks"


def _cache_key(text: str) -> str:
    try:
        carla_version = version("carla")
    except PackageNotFoundError:
        carla_version = "unknown"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f"{digest}-v{CHECK_VERSION}-carla{carla_version}"


def _read_cache(path: Path) -> dict | None:
    try:
        verdict = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return verdict if isinstance(verdict, dict) and isinstance(verdict.get("ok"), bool) else None


def _write_cache(path: Path, verdict: dict) -> None:
    """Write a verdict atomically; an unwritable cache is skipped."""
    with contextlib.suppress(OSError):
        write_atomic(path, json.dumps(verdict))


def check_with_carla(path: str | Path, text: str, timeout: float = TIMEOUT_S) -> None:
    """Raise MapFileError unless the road-map loader reads ``text`` (the content of ``path``) in a
    child process without crashing or raising; passed and deterministic failed verdicts are cached."""
    path = Path(path)
    cached = cache_dir() / f"{_cache_key(text)}.json"
    verdict = _read_cache(cached)
    if verdict is None:
        verdict = _run_child(path, text, timeout)
        if verdict.pop("cache", True):
            _write_cache(cached, verdict)
    if not verdict["ok"]:
        raise MapFileError(f"{path}: {verdict['problem']}")


def _run_child(path: Path, text: str, timeout: float) -> dict:
    """The child's verdict; ``cache: False`` marks one that may differ on another try."""
    python_path = [str(_PACKAGE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(python_path)}
    command = [sys.executable, "-m", "cardreamer.roadmap.preflight", path.stem]
    try:
        done = subprocess.run(command, input=text, capture_output=True, text=True, timeout=timeout, env=env,
                              check=False)
    except subprocess.TimeoutExpired as err:
        stage = _last_stage(err.stdout)
        return {"ok": False, "cache": False,
                "problem": f"carla did not finish reading it within {timeout:.0f} s (stuck while {stage})"}
    events = _events(done.stdout)
    if done.returncode == 0 and events and isinstance(events[-1].get("ok"), bool):
        return events[-1]
    stage = _last_stage(done.stdout)
    if done.returncode < 0:
        return {"ok": False, "problem": f"carla crashed ({_signal_name(-done.returncode)}) while {stage}"}
    tail = (done.stderr.strip().splitlines() or ["no message"])[-1]
    return {"ok": False, "cache": False,
            "problem": f"the map check stopped with exit status {done.returncode} while {stage}: {tail}"}


def _signal_name(number: int) -> str:
    try:
        return f"signal {number}, {signal.Signals(number).name}"
    except ValueError:
        return f"signal {number}"


def _events(stdout: str | bytes | None) -> list[dict]:
    """The child's JSON lines (CARLA prints its own warnings in between)."""
    text = stdout.decode(errors="replace") if isinstance(stdout, bytes) else stdout or ""
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def _last_stage(stdout: str | bytes | None) -> str:
    stages = [e["stage"] for e in _events(stdout) if isinstance(e.get("stage"), str)]
    return stages[-1] if stages else "starting"


def _child(name: str) -> None:
    """Read the map from stdin with the loader, printing each step before it starts and a verdict."""
    from cardreamer.roadmap.road_map import RoadMap

    text = sys.stdin.read()
    current = ["starting"]

    def track(what: str) -> None:
        current[0] = what
        print(json.dumps({"stage": what}), flush=True)

    try:
        road_map = RoadMap.from_xodr_text(text, Path(f"{name}.xodr"), on_stage=track)
        track("locating spawn points")
        road_map.spawn_points()
        track("listing landmarks")
        road_map.carla_map.get_all_landmarks()
    except MapError as err:
        verdict = {"ok": False, "problem": str(err).removeprefix(f"{name}.xodr: ")}
    except (RuntimeError, IndexError, ValueError) as err:  # what carla's bindings raise for C++ errors
        verdict = {"ok": False, "problem": f"carla raised {type(err).__name__}: {err} while {current[0]}"}
    else:
        verdict = {"ok": True, "lanes": len(road_map.lanes)}
    print(json.dumps(verdict), flush=True)


if __name__ == "__main__":
    _child(sys.argv[1])
