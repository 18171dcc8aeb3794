"""Train on CPU under tcmalloc or mimalloc instead of glibc's malloc.

Every train step XLA's CPU backend allocates and frees buffers of tens to hundreds of MB. glibc
serves each of those from a fresh ``mmap`` and returns it on free, so each step faults in and
zeroes the same memory again; the elementwise ops that write those buffers then run several times
slower than alone. A caching allocator keeps the memory: the 12m update drops from 9–12 s to 4.8–5 s
under tcmalloc and to 5.7–5.8 s under mimalloc (docs/benchmarks.md).

An allocator has to be in place before the process starts, so the training commands re-execute
themselves once with ``LD_PRELOAD`` naming one. The environment variable ``CARDREAMER_ALLOCATOR``
chooses: unset or ``auto`` takes tcmalloc (Debian/Ubuntu: ``apt-get install libtcmalloc-minimal4``),
else the mimalloc that ``pip`` installs with the project (the ``cmeel-mimalloc`` wheel);
``system`` keeps glibc; a path names a library to preload. The re-executed process puts the
environment back as it was, so the processes it starts (env workers, a CARLA server, the
visualizer) run with the allocator they would have had.
"""

from __future__ import annotations

import ctypes.util
import glob
import json
import logging
import os
import sys
import sysconfig

log = logging.getLogger(__name__)

KNOWN = ("tcmalloc", "mimalloc", "jemalloc")
_REEXECUTED = "_CARDREAMER_ALLOCATOR_REEXECUTED"


def loaded_allocator() -> str | None:
    """The path of a known allocator library mapped into this process, if any (Linux only)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError:
        return None
    return next((p for p in sorted(paths) if any(name in os.path.basename(p) for name in KNOWN)), None)


def find_allocator() -> str | None:
    """tcmalloc from the system, else mimalloc from the ``cmeel-mimalloc`` wheel, else None."""
    name = ctypes.util.find_library("tcmalloc_minimal") or ctypes.util.find_library("tcmalloc")
    if name:
        return name
    prefix = os.path.join(sysconfig.get_paths()["purelib"], "cmeel.prefix", "lib")
    found = sorted(glob.glob(os.path.join(prefix, "libmimalloc.so*")))
    return found[0] if found else None


def reexec_with_fast_allocator() -> None:
    """Replace this process by the same command under a caching allocator, when one is available
    and none is loaded yet. Returns (doing nothing) on other platforms, when opted out with
    ``CARDREAMER_ALLOCATOR=system``, or when no allocator is found."""
    if _REEXECUTED in os.environ:  # the re-executed process: give children the original environment
        for key, value in json.loads(os.environ.pop(_REEXECUTED)).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        return
    choice = os.environ.get("CARDREAMER_ALLOCATOR", "auto")
    if not sys.platform.startswith("linux") or choice == "system":
        return
    if loaded_allocator():
        return
    library = find_allocator() if choice == "auto" else choice
    if library is None:
        log.info("training with glibc malloc; apt-get install libtcmalloc-minimal4 makes CPU training "
                 "about 2x faster (see cardreamer/training/allocator.py)")
        return
    if choice != "auto" and not os.path.exists(library):
        raise FileNotFoundError(f"CARDREAMER_ALLOCATOR={library!r}: no such library; use auto, system or a path")
    original = {key: os.environ.get(key) for key in ("LD_PRELOAD", "MIMALLOC_PURGE_DELAY")}
    env = dict(os.environ, **{_REEXECUTED: json.dumps(original)})
    env["LD_PRELOAD"] = ":".join(filter(None, [library, original["LD_PRELOAD"]]))
    if "mimalloc" in os.path.basename(library):
        env.setdefault("MIMALLOC_PURGE_DELAY", "-1")  # keep freed memory instead of returning it
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
