"""Live state of the visualization server and per-viewer flow control.

The hub keeps, for each run, only the newest item of each slot (a video stream or the step info
of one env). A dispatcher thread sends a slot's newest item to a viewer once that viewer has
acknowledged the previous item of the same slot, and at most ``max_fps`` times per second, so a
slow viewer receives fewer, always-current frames and the server never queues a backlog.

A run has at most :data:`MAX_FRAME_SLOTS` frame streams (a frame of a further one is refused). A
viewer that reads slowly or not at all cannot make the server queue frames for it: while more than
:data:`MAX_VIEWER_BACKLOG` messages wait in its connection's send queue (the ``backlog`` function),
it is sent no frames, and once it catches up it gets each stream's newest frame (older ones are
dropped). Emitting only queues a message, so no viewer can block the dispatcher. The live state of
a run with no publisher and no viewer that published nothing for a while is dropped
(:meth:`LiveHub.forget_idle`).

The dispatcher is also the only thread that sends anything to viewers (other messages go through
:meth:`LiveHub.send`): python-socketio writes a message with binary data as several WebSocket
frames without a lock, so two threads sending to one viewer can interleave them, and the browser
then drops the connection.

The hub knows nothing about Socket.IO: it is given an ``emit(event, payload, to)`` function,
where ``to`` is a viewer sid or None for every viewer.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Emit = Callable[[str, dict[str, Any], "str | None"], None]
Backlog = Callable[[str], int]

MAX_FRAME_SLOTS = 64
"""Frame streams (env and stream pairs) a run may have."""
MAX_VIEWER_BACKLOG = 16
"""Messages waiting to be written to a viewer above which an unacknowledged item is not sent again."""
FRAME_PACKETS = 2
"""Messages one frame adds to a viewer's send queue (the event and its binary attachment)."""
BACKLOG_RECHECK = 0.05
"""Seconds between looks at a backed-up viewer's send queue."""


@dataclass
class Slot:
    env: int
    stream: str
    event: str
    seq: int
    payload: dict[str, Any]


@dataclass
class Viewer:
    sid: str
    run: str | None = None
    awaiting: bool = False  # the run did not exist when the viewer joined; its history is still due
    envs: set[int] | None = None  # None: every env
    streams: set[str] | None = None  # None: every stream (step info is always sent)
    sent_seq: dict[str, int] = field(default_factory=dict)
    in_flight: dict[str, float] = field(default_factory=dict)  # slot key -> time sent
    last_sent: dict[str, float] = field(default_factory=dict)

    def wants(self, slot: Slot) -> bool:
        if self.envs is not None and slot.env not in self.envs:
            return False
        return slot.event == "step" or self.streams is None or slot.stream in self.streams


@dataclass
class LiveRun:
    name: str
    publishers: dict[str, bool] = field(default_factory=dict)  # sid -> accepts driving controls
    slots: dict[str, Slot] = field(default_factory=dict)
    dream: dict[str, Any] | None = None
    status: dict[str, Any] | None = None  # what a trainer says it is doing (publish_status)
    last_update: float = 0.0


class LiveHub:
    """Thread-safe live state: publishers, viewers, newest slot items, and the dispatcher."""

    def __init__(self, emit: Emit, max_fps: float = 30.0, ack_timeout: float = 5.0,
                 backlog: Backlog = lambda sid: 0):
        """``backlog(sid)``: how many messages wait to be written to that viewer's connection."""
        if max_fps <= 0:
            raise ValueError(f"max_fps must be positive, got {max_fps}")
        self._emit = emit
        self._backlog = backlog
        self.min_interval = 1.0 / max_fps
        self.ack_timeout = ack_timeout
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._runs: dict[str, LiveRun] = {}
        self._publisher_runs: dict[str, str] = {}
        self._viewers: dict[str, Viewer] = {}
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._dirty = False  # something changed since the dispatcher last looked
        self._outbox: collections.deque[tuple[str, dict[str, Any], str | None]] = collections.deque()

    # -- publishers -------------------------------------------------------------------------
    def add_publisher(self, sid: str, run: str, interactive: bool) -> None:
        with self._lock:
            live = self._runs.setdefault(run, LiveRun(run))
            live.publishers[sid] = interactive
            live.last_update = time.time()
            self._publisher_runs[sid] = run

    def remove_publisher(self, sid: str) -> str | None:
        with self._lock:
            run = self._publisher_runs.pop(sid, None)
            if run is not None:
                self._runs[run].publishers.pop(sid, None)
            return run

    def publisher_count(self) -> int:
        """How many publishers are connected (to any run)."""
        with self._lock:
            return len(self._publisher_runs)

    def run_of_publisher(self, sid: str) -> str | None:
        with self._lock:
            return self._publisher_runs.get(sid)

    def controllers(self, run: str) -> list[str]:
        """Sids of the run's publishers that accept driving controls."""
        with self._lock:
            live = self._runs.get(run)
            return [sid for sid, interactive in live.publishers.items() if interactive] if live else []

    def put(self, run: str, env: int, stream: str, event: str, payload: dict[str, Any]) -> bool:
        """Store the newest item of a slot; return True if the slot is new (the run list changed).
        A frame of a new stream of a run that has :data:`MAX_FRAME_SLOTS` is refused (ValueError)."""
        key = f"{env}/{stream}"
        with self._wake:
            live = self._runs.setdefault(run, LiveRun(run))
            is_new = key not in live.slots
            if is_new and event == "frame" and sum(s.event == "frame" for s in live.slots.values()) >= MAX_FRAME_SLOTS:
                raise ValueError(f"run {run!r} has {MAX_FRAME_SLOTS} frame streams (env and stream pairs), the "
                                 f"most a run may have: stream {stream!r} of env {env} is not kept")
            self._seq += 1
            live.slots[key] = Slot(env, stream, event, self._seq, {**payload, "run": run, "key": key,
                                                                  "seq": self._seq})
            live.last_update = time.time()
            self._notify()
            return is_new

    def set_dream(self, run: str, dream: dict[str, Any]) -> None:
        with self._lock:
            live = self._runs.setdefault(run, LiveRun(run))
            live.dream = dream
            live.last_update = time.time()

    def dream(self, run: str) -> dict[str, Any] | None:
        with self._lock:
            live = self._runs.get(run)
            return live.dream if live else None

    def set_status(self, run: str, status: dict[str, Any]) -> bool:
        """Keep the run's newest status; return True if its phase changed (the run list shows it)."""
        with self._lock:
            live = self._runs.setdefault(run, LiveRun(run))
            changed = live.status is None or live.status.get("phase") != status.get("phase")
            live.status = status
            live.last_update = time.time()
            return changed

    def status(self, run: str) -> dict[str, Any] | None:
        with self._lock:
            live = self._runs.get(run)
            return live.status if live else None

    # -- viewers ----------------------------------------------------------------------------
    def add_viewer(self, sid: str) -> None:
        with self._lock:
            self._viewers[sid] = Viewer(sid)

    def remove_viewer(self, sid: str) -> None:
        with self._lock:
            self._viewers.pop(sid, None)

    def join(self, sid: str, run: str, awaiting: bool = False) -> str | None:
        """Make the viewer watch ``run`` (every env and stream); return the run it left.

        ``awaiting``: the run does not exist yet, and the viewer is owed its history once it does.
        """
        with self._wake:
            viewer = self._viewers.get(sid)
            if viewer is None:
                return None
            previous = viewer.run
            self._viewers[sid] = Viewer(sid, run=run, awaiting=awaiting)
            self._notify()
            return previous

    def awaiting(self) -> list[tuple[str, str]]:
        """(sid, run) of the viewers that joined a run before it existed."""
        with self._lock:
            return [(v.sid, v.run) for v in self._viewers.values() if v.awaiting and v.run is not None]

    def arrived(self, sid: str, run: str) -> None:
        """The viewer ``sid`` was sent the history of ``run`` (if it still watches it)."""
        with self._lock:
            viewer = self._viewers.get(sid)
            if viewer is not None and viewer.run == run:
                viewer.awaiting = False

    def watch(self, sid: str, envs: set[int] | None, streams: set[str] | None) -> None:
        """Restrict which envs and streams of its run the viewer receives (None: all)."""
        with self._wake:
            viewer = self._viewers.get(sid)
            if viewer is not None:
                viewer.envs, viewer.streams = envs, streams
                self._notify()

    def ack(self, sid: str, key: str) -> None:
        with self._wake:
            viewer = self._viewers.get(sid)
            if viewer is not None and viewer.in_flight.pop(key, None) is not None:
                self._notify()

    def viewers_of(self, run: str) -> list[str]:
        """Sids of the viewers watching ``run`` (or waiting for it to start)."""
        with self._lock:
            return [v.sid for v in self._viewers.values() if v.run == run]

    def forget_idle(self, max_idle: float) -> list[str]:
        """Drop the live state (newest frames and step info, dream, status) of the runs that no
        publisher publishes, no viewer watches, and that got nothing for ``max_idle`` seconds;
        return their names."""
        cutoff = time.time() - max_idle
        with self._lock:
            watched = {v.run for v in self._viewers.values()}
            idle = [name for name, live in self._runs.items()
                    if not live.publishers and name not in watched and live.last_update < cutoff]
            for name in idle:
                del self._runs[name]
            return idle

    def max_backlog(self) -> int:
        """The most messages waiting to be written to one viewer (0 without viewers)."""
        with self._lock:
            sids = list(self._viewers)
        return max((self._backlog(sid) for sid in sids), default=0)

    def has_run(self, run: str) -> bool:
        """Whether ``run`` has been published to (now or earlier)."""
        with self._lock:
            return run in self._runs

    def active_runs(self) -> set[str]:
        """Runs that a viewer watches or a publisher publishes now."""
        with self._lock:
            watched = {v.run for v in self._viewers.values() if v.run is not None}
            return watched | {name for name, live in self._runs.items() if live.publishers}

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per live run: whether a publisher is connected, its envs and streams, and controls."""
        with self._lock:
            result = {}
            for name, live in self._runs.items():
                envs: dict[int, list[str]] = {}
                for slot in live.slots.values():
                    streams = envs.setdefault(slot.env, [])
                    if slot.event == "frame":
                        streams.append(slot.stream)
                result[name] = {
                    "live": bool(live.publishers),
                    "interactive": any(live.publishers.values()),
                    "envs": {str(env): sorted(streams) for env, streams in sorted(envs.items())},
                    "has_dream": live.dream is not None,
                    "phase": live.status.get("phase") if live.status else None,
                    "last_update": live.last_update,
                }
            return result

    # -- dispatch ---------------------------------------------------------------------------
    def send(self, event: str, payload: dict[str, Any], to: str | None = None) -> None:
        """Queue a message for one viewer sid, or (``to=None``) for every viewer."""
        with self._wake:
            self._outbox.append((event, payload, to))
            self._notify()

    def send_to_run(self, event: str, payload: dict[str, Any], run: str) -> None:
        """Queue a message for the viewers watching ``run`` now (not those joining later)."""
        with self._wake:
            for viewer in self._viewers.values():
                if viewer.run == run:
                    self._outbox.append((event, payload, viewer.sid))
            self._notify()

    def due(self, now: float) -> tuple[list[tuple[str, dict[str, Any], str]], float | None]:
        """Items to send now, and the time of the next rate-limited send (None if nothing waits).

        Marks the returned items as sent; callers must emit them.
        """
        sends = []
        next_time = None
        with self._lock:
            for viewer in self._viewers.values():
                live = self._runs.get(viewer.run) if viewer.run else None
                if live is None:
                    continue
                queued = self._backlog(viewer.sid)
                for key, slot in live.slots.items():
                    if slot.seq <= viewer.sent_seq.get(key, 0) or not viewer.wants(slot):
                        continue
                    sent_at = viewer.in_flight.get(key)
                    if sent_at is not None and now - sent_at < self.ack_timeout:
                        continue  # waiting for the viewer's ack; the ack wakes the dispatcher
                    if sent_at is not None and queued > MAX_VIEWER_BACKLOG - FRAME_PACKETS:
                        # no ack in time and its queue is full: it does not read; resend only once it does
                        recheck = now + BACKLOG_RECHECK
                        next_time = recheck if next_time is None else min(next_time, recheck)
                        continue
                    ready_at = viewer.last_sent.get(key, 0.0) + self.min_interval
                    if now < ready_at:
                        next_time = ready_at if next_time is None else min(next_time, ready_at)
                        continue
                    viewer.sent_seq[key] = slot.seq
                    viewer.in_flight[key] = now
                    viewer.last_sent[key] = now
                    queued += FRAME_PACKETS
                    sends.append((slot.event, slot.payload, viewer.sid))
            if next_time is None and any(v.in_flight for v in self._viewers.values()):
                next_time = now + self.ack_timeout  # re-check stale acks
        return sends, next_time

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._dispatch_loop, name="vis-dispatch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._notify()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def _notify(self) -> None:
        # Called with the lock held.
        self._dirty = True
        self._wake.notify()

    def _dispatch_loop(self) -> None:
        next_time: float | None = None
        while True:
            with self._wake:
                if not self._dirty and not self._stopping:
                    timeout = None if next_time is None else max(0.0, next_time - time.monotonic())
                    self._wake.wait(timeout)
                if self._stopping:
                    return
                self._dirty = False
                messages = list(self._outbox)
                self._outbox.clear()
            for event, payload, to in messages:
                self._emit(event, payload, to)
            sends, next_time = self.due(time.monotonic())
            for event, payload, sid in sends:
                self._emit(event, payload, sid)
