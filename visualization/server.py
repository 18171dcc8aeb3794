"""The visualization server: Flask serves the page, Flask-SocketIO relays live data.

Run it in its own process with :func:`serve` (or ``cardreamer serve --logdir runs/``). It binds to
127.0.0.1 by default. Publishers must present the server's token; viewers must too when the
server listens on a non-loopback address.

No client can make the server grow without bound or fail: a run gets a history only if it is in
the logdir or has been published to; the history of a run in the logdir that nobody watches or
publishes is dropped (and read again from the run's files when needed); each history is bounded (see
:class:`visualization.history.RunHistory`); a run has at most 64 frame streams, and the live state
(newest frames, step info, dream, status, recorded episode frames) of a run that nobody publishes
or watches is dropped once it has published nothing for ``idle_run_seconds``; a viewer that stops
reading is sent no more frames (:mod:`visualization.hub`); and every malformed message is answered
with one ``problem`` event, ``{"event": <the message's event>, "message": <one line>}``.
"""

from __future__ import annotations

import hmac
import importlib.util
import ipaddress
import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, abort, jsonify, render_template, request, send_from_directory
from flask_socketio import SocketIO
from socketio.exceptions import ConnectionRefusedError as ConnectionRefused

from cardreamer.atomic import write_atomic
from visualization.history import RunHistory, config_value, episode_videos, list_run_dirs, run_mtime
from visualization.hub import LiveHub
from visualization.protocol import (
    MAX_ENVS,
    PUBLISH_NAMESPACE,
    STEP_SLOT,
    VIEW_NAMESPACE,
    check_env_index,
    check_name,
    check_run_name,
    directory_identity,
    shown,
    to_jsonable,
)
from visualization.recorder import EpisodeRecorder

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 << 20
TOKEN_ENV_VAR = "CARDREAMER_VIS_TOKEN"
SERVICE = "cardreamer-visualizer"  # what /healthz says this server is
FILE_POLL_SECONDS = 1.0
CONTROL_KEYS = ("up", "down", "left", "right")
MAX_WATCHED_STREAMS = 256
MAX_PROBLEM_CHARS = 300
MAX_STATUS_CHARS = 4000  # a run status is a handful of counters and words
MAX_LOG_MESSAGE_LINES = 500  # lines of the run log in one publisher message
MAX_SAMPLES_CHARS = 8000  # where a dream's samples came from: a few numbers per sample
IDLE_RUN_SECONDS = 600.0  # a run nobody publishes or watches keeps its live state this long
# What a malformed message raises while it is read; anything else is a bug in the server.
MESSAGE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, OverflowError)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def field(data: dict[str, Any], name: str) -> Any:
    """``data[name]``, or ``ValueError`` naming the missing field."""
    if name not in data:
        raise ValueError(f"missing field {name!r}")
    return data[name]


def object_field(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = field(data, name)
    if not isinstance(value, dict):
        raise TypeError(f"field {name!r} must be an object, got {shown(value)}")
    return value


def list_field(data: dict[str, Any], name: str, limit: int) -> list[Any] | None:
    """``data[name]`` if it is a list of at most ``limit`` items, None if absent or null."""
    value = data.get(name)
    if value is not None and (not isinstance(value, list) or len(value) > limit):
        raise ValueError(f"field {name!r} must be a list of at most {limit} items, got {shown(value)}")
    return value


class VisualizationServer:
    """The Flask app, its Socket.IO handlers, and the live state behind them."""

    def __init__(self, logdir: str | os.PathLike, token: str, max_fps: float = 30.0,
                 viewer_token_required: bool = False, idle_run_seconds: float = IDLE_RUN_SECONDS):
        if importlib.util.find_spec("simple_websocket") is None:
            raise RuntimeError("the visualization server needs the 'simple-websocket' package for WebSocket "
                               "transport: pip install simple-websocket")
        if not token:
            raise ValueError("the visualization server needs a non-empty token")
        self.logdir = Path(logdir)
        self.token = token
        self.viewer_token_required = viewer_token_required
        root = Path(__file__).parent
        self.app = Flask(__name__, static_folder=str(root / "static"), template_folder=str(root / "templates"))
        self.app.config["SEND_FILE_MAX_AGE_DEFAULT"] = 0
        self.socketio = SocketIO(self.app, async_mode="threading", max_http_buffer_size=MAX_MESSAGE_BYTES,
                                 logger=False, engineio_logger=False)
        self.idle_run_seconds = idle_run_seconds
        self.hub = LiveHub(self._emit_to_viewer, max_fps=max_fps, backlog=self._viewer_backlog)
        self.recorder = EpisodeRecorder()
        self._saving = threading.Lock()  # held while an episode is being saved: one at a time
        self._histories: dict[str, RunHistory] = {}
        self._run_dirs: dict[str, Path] = {}  # runs outside the logdir: the directories their publishers announced
        self._histories_lock = threading.Lock()
        # Held while adding to a run's history (and telling its viewers), while a viewer joins
        # (history snapshot, then join), and while idle histories are dropped, so each record
        # reaches a viewer exactly once.
        self._replay_lock = threading.Lock()
        self._last_runs: list[dict[str, Any]] | None = None
        self._runs_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._register_routes()
        self._register_publisher_events()
        self._register_viewer_events()

    # -- lifecycle --------------------------------------------------------------------------
    def start_background(self) -> None:
        """Start the frame dispatcher and the run-directory poller."""
        self.hub.start()
        if self._poller is None:
            self._stop.clear()
            self._poller = threading.Thread(target=self._poll_loop, name="vis-poll", daemon=True)
            self._poller.start()

    def stop_background(self) -> None:
        self._stop.set()
        self.hub.stop()
        if self._poller is not None:
            self._poller.join(timeout=2.0)
            self._poller = None

    # -- helpers ----------------------------------------------------------------------------
    def _emit_to_viewer(self, event: str, payload: dict[str, Any], to: str | None) -> None:
        # Only the hub's dispatcher thread calls this (see visualization.hub).
        self.socketio.emit(event, payload, to=to, namespace=VIEW_NAMESPACE)

    def _viewer_backlog(self, sid: str) -> int:
        """Messages queued for the viewer ``sid`` that its connection has not written yet."""
        server = self.socketio.server
        connection = server.eio.sockets.get(server.manager.eio_sid_from_sid(sid, VIEW_NAMESPACE))
        return connection.queue.qsize() if connection is not None else 0

    def _token_ok(self, auth: object) -> bool:
        given = auth.get("token") if isinstance(auth, dict) else None
        return isinstance(given, str) and hmac.compare_digest(given.encode(), self.token.encode())

    def _problem(self, namespace: str, sid: str, event: str, message: str) -> None:
        """Tell one client, in one line, what was wrong with its ``event`` message."""
        line = " ".join(message.split())
        if len(line) > MAX_PROBLEM_CHARS:
            line = line[: MAX_PROBLEM_CHARS - 3] + "..."
        payload = {"event": event, "message": line}
        if namespace == VIEW_NAMESPACE:
            self.hub.send("problem", payload, to=sid)
        else:
            self.socketio.emit("problem", payload, to=sid, namespace=namespace)

    def _guarded(self, namespace: str, event: str, handler: Callable[[dict[str, Any]], Any]) -> Callable[..., Any]:
        """``handler`` for Socket.IO: it gets the message's one object argument, and a malformed
        message (or a failure of the server) is answered with a ``problem`` event, never raised."""
        def handle(*args: Any) -> Any:
            try:
                if len(args) != 1 or not isinstance(args[0], dict):
                    got = shown(args[0]) if len(args) == 1 else f"{len(args)} arguments"
                    raise ValueError(f"expected one object argument, got {got}")
                return handler(args[0])
            except MESSAGE_ERRORS as error:
                message = f"{event}: {error}"
            except Exception:  # a bug here must not take down the connection
                log.exception("handling a %s message failed", event)
                message = f"{event}: the server failed to handle this message (its log has the details)"
            if namespace == PUBLISH_NAMESPACE:
                log.warning("run %s: %s", self.hub.run_of_publisher(request.sid), message)
            self._problem(namespace, request.sid, event, message)
            return False if namespace == PUBLISH_NAMESPACE else None  # publishers get False as the ack

        return handle

    def run_dir(self, run: str) -> Path:
        """The directory of ``run``'s files: in the logdir, or the one its publisher announced."""
        with self._histories_lock:
            return self._run_dirs.get(run, self.logdir / run)

    def _adopt_run_dir(self, run: str, auth: dict[str, Any]) -> None:
        """Read ``run``'s files from the directory its publisher announced (``run_dir`` and its
        ``run_dir_id``, see :func:`visualization.protocol.directory_identity`) when the logdir holds
        no run of that name and this machine's directory of that path is the publisher's: viewers
        then get the run's whole history, what it logged before this connection too (a resumed run).
        A directory of another machine is ignored: the run shows what it publishes from now on."""
        path, identity = auth.get("run_dir"), auth.get("run_dir_id")
        if path is None:
            return
        if not isinstance(path, str) or not os.path.isabs(path) or not isinstance(identity, list):
            raise ConnectionRefused(f"run_dir must be an absolute path sent with its run_dir_id [device, inode], "
                                    f"got {shown(path)} and {shown(identity)}")
        if run_mtime(self.logdir / run) is not None:
            return  # the logdir's own run of that name
        try:
            here = directory_identity(path) == identity
        except OSError:
            here = False
        if not here:
            log.info("run %s: %s is not its publisher's directory on this machine; showing what it publishes",
                     run, path)
            return
        with self._replay_lock:
            with self._histories_lock:
                if self._run_dirs.get(run) == Path(path):
                    return
                self._run_dirs[run] = Path(path)
                stale = self._histories.pop(run, None)  # what was published to it so far, now in the files too
            if stale is not None:
                history = self.history(run)
                for sid in self.hub.viewers_of(run):
                    self._send_history(sid, run, history)
                    self.hub.arrived(sid, run)

    def history(self, run: str) -> RunHistory:
        """The history of ``run``, read from its files if not held yet."""
        with self._histories_lock:
            if run not in self._histories:
                history = RunHistory(self._run_dirs.get(run, self.logdir / run))
                history.poll_files()  # the files' records come before anything published live
                self._histories[run] = history
            return self._histories[run]

    def _on_disk(self, run: str) -> bool:
        return run_mtime(self.run_dir(run)) is not None

    def _known_history(self, run: str) -> RunHistory | None:
        """The history of ``run`` if the run exists (held, in the logdir, or published to), else None."""
        with self._histories_lock:
            held = self._histories.get(run)
        if held is not None:
            return held
        if self.hub.has_run(run) or self._on_disk(run):
            return self.history(run)
        return None

    def history_stats(self) -> dict[str, int]:
        """How many run histories are held, how many metric points they hold together, how many
        runs have live state, and the most messages waiting to be written to one viewer."""
        with self._histories_lock:
            histories = list(self._histories.values())
        return {"histories": len(histories), "metric_points": sum(h.points() for h in histories),
                "live_runs": len(self.hub.summary()), "viewer_backlog": self.hub.max_backlog()}

    def runs(self) -> list[dict[str, Any]]:
        """Every run known from the logdir or from live publishers, most recently updated first."""
        on_disk = list_run_dirs(self.logdir)
        with self._histories_lock:
            announced = dict(self._run_dirs)
        on_disk.update({run: mtime for run, path in announced.items() if (mtime := run_mtime(path)) is not None})
        live = self.hub.summary()
        runs = []
        for name in set(on_disk) | set(live):
            info = live.get(name, {"live": False, "interactive": False, "envs": {}, "has_dream": False,
                                   "phase": None, "last_update": 0.0})
            runs.append({"name": name, "on_disk": name in on_disk,
                         **info, "last_update": max(info["last_update"], on_disk.get(name, 0.0))})
        # Live runs first, in a stable order; then the others, most recently written first.
        return sorted(runs, key=lambda r: (not r["live"], 0.0 if r["live"] else -r["last_update"], r["name"]))

    def broadcast_runs(self) -> None:
        """Send the run list to every viewer if it changed (not counting update times)."""
        with self._runs_lock:
            runs = self.runs()
            shape = [{k: v for k, v in r.items() if k != "last_update"} for r in runs]
            if shape != self._last_runs:
                self._last_runs = shape
                self.hub.send("runs", {"runs": runs})

    def _poll_files(self, run: str, history: RunHistory) -> None:
        """Read what was appended to the run's files and send it to the run's viewers (replay lock held)."""
        metrics, episodes = history.poll_files()
        if metrics:
            self.hub.send_to_run("metrics", {"run": run, "records": metrics}, run)
        if episodes:
            self.hub.send_to_run("episodes", {"run": run, "records": episodes}, run)
        lines, replaced = history.poll_log()
        if lines or replaced:
            self.hub.send_to_run("log", {"run": run, "lines": lines, "reset": replaced}, run)

    def _send_history(self, sid: str, run: str, history: RunHistory) -> None:
        """Send a viewer the whole history of ``run`` and its newest dream (replay lock held)."""
        self._poll_files(run, history)
        self.hub.send("history", {"run": run, **history.snapshot()}, to=sid)
        dream = self.hub.dream(run)
        if dream is not None:
            self.hub.send("dream", dream, to=sid)
        status = self.hub.status(run)
        if status is not None:
            self.hub.send("status", status, to=sid)

    def refresh_histories(self) -> None:
        """Drop idle histories, send new file records to viewers, and histories to viewers that
        joined a run before it existed.

        An idle history (no viewer, no publisher) is dropped if its run's files hold it; one that
        was only published live (a driving session's episodes) is kept while the hub knows its run.
        """
        with self._replay_lock:
            for run in self.hub.forget_idle(self.idle_run_seconds):
                self.recorder.forget(run)
            active = self.hub.active_runs()
            with self._histories_lock:
                idle = [run for run in self._histories if run not in active]
            for run in idle:
                if self._on_disk(run) or not self.hub.has_run(run):
                    with self._histories_lock:
                        del self._histories[run]
            with self._histories_lock:
                held = dict(self._histories)
            for run, history in held.items():
                if self.hub.viewers_of(run):
                    self._poll_files(run, history)
            for sid, run in self.hub.awaiting():
                history = self._known_history(run)
                if history is not None:
                    self._send_history(sid, run, history)
                    self.hub.arrived(sid, run)

    def _poll_loop(self) -> None:
        while not self._stop.wait(FILE_POLL_SECONDS):
            try:
                self.broadcast_runs()
                self.refresh_histories()
            except Exception:  # keep polling; one bad file must not stop the server
                log.exception("polling the logdir failed")

    # -- HTTP -------------------------------------------------------------------------------
    def _register_routes(self) -> None:
        @self.app.get("/")
        def index():
            return render_template("index.html", logdir=str(self.logdir.resolve()))

        @self.app.get("/healthz")
        def healthz():
            """That this is a visualizer: its process and logdir (``train --serve`` reuses it), and its histories."""
            return jsonify(ok=True, service=SERVICE, pid=os.getpid(), logdir=str(self.logdir.resolve()),
                           **self.history_stats())

        @self.app.get("/api/history")
        def run_history():
            """The history of one run as JSON, as a joining viewer gets it (for overlaying runs)."""
            run = self._http_run()
            history = self._known_history(run)
            if history is None:
                abort(404, f"no run {run!r} in {self.logdir}")
            with self._replay_lock:
                self._poll_files(run, history)
                return jsonify(run=run, **history.snapshot())

        @self.app.get("/api/videos")
        def videos():
            """The videos recorded of a run's episodes: ``{"eval": {"<step>": [url]}, "train":
            {"<step>/<number>": [url]}}`` (see :func:`visualization.history.episode_videos`)."""
            run = self._http_run()
            return jsonify({kind: {episode: [f"/runs/{run}/videos/{name}" for name in names]
                                   for episode, names in by_episode.items()}
                            for kind, by_episode in episode_videos(self.run_dir(run)).items()})

        @self.app.get("/runs/<path:run>/videos/<name>")
        def video(run: str, name: str):
            self._http_run(run)
            if not name.endswith(".mp4"):
                abort(404)
            return send_from_directory(self.run_dir(run).resolve() / "videos", name, mimetype="video/mp4")

    def _http_run(self, run: str | None = None) -> str:
        """The run an HTTP request names (``run`` or its ``?run=``), after checking its token."""
        if self.viewer_token_required and not self._token_ok({"token": request.args.get("token")}):
            abort(403, "this server needs a token: add ?token=... from the URL it printed")
        try:
            return check_run_name(request.args.get("run") if run is None else run)
        except ValueError as error:
            abort(400, str(error))

    # -- publishers -------------------------------------------------------------------------
    def _register_publisher_events(self) -> None:
        ns = PUBLISH_NAMESPACE

        def connect(auth=None):
            if not self._token_ok(auth):
                raise ConnectionRefused("invalid or missing token")
            try:
                run = check_run_name(auth.get("run"))
            except ValueError as error:
                raise ConnectionRefused(str(error)) from None
            self._adopt_run_dir(run, auth)
            self.hub.add_publisher(request.sid, run, bool(auth.get("interactive", False)))
            self.broadcast_runs()

        def disconnect(*_):
            if self.hub.remove_publisher(request.sid) is not None:
                self.broadcast_runs()

        def frame(data: dict[str, Any]) -> bool:
            run = self.hub.run_of_publisher(request.sid)
            env = check_env_index(field(data, "env"))
            stream = check_name("stream", field(data, "stream"))
            image, fmt = field(data, "data"), field(data, "fmt")
            if not isinstance(image, bytes) or not image or fmt not in ("jpeg", "png"):
                raise ValueError("frame needs non-empty bytes 'data' and fmt 'jpeg' or 'png'")
            timestamp = float(data.get("t", time.time()))
            payload = {"env": env, "stream": stream, "fmt": fmt, "data": image, "t": timestamp,
                       "w": int(data.get("w", 0)), "h": int(data.get("h", 0))}
            new_slot = self.hub.put(run, env, stream, "frame", payload)
            self.recorder.add_frame(run, env, stream, image, timestamp)
            if new_slot:
                self.broadcast_runs()
            return True

        def step(data: dict[str, Any]) -> bool:
            run = self.hub.run_of_publisher(request.sid)
            env = check_env_index(field(data, "env"))
            info = to_jsonable(object_field(data, "info"))
            self.hub.put(run, env, STEP_SLOT, "step", {"env": env, "info": info,
                                                       "t": float(data.get("t", time.time()))})
            return True

        def episode(data: dict[str, Any]) -> bool:
            run = self.hub.run_of_publisher(request.sid)
            env = check_env_index(field(data, "env"))
            record = {**to_jsonable(object_field(data, "metrics")), "env": env}
            self.recorder.end_episode(run, env)
            with self._replay_lock:
                added = self.history(run).add_episode(record)
                if added is not None:
                    self.hub.send_to_run("episodes", {"run": run, "records": [added]}, run)
            return True

        def metrics(data: dict[str, Any]) -> bool:
            run = self.hub.run_of_publisher(request.sid)
            record = {**to_jsonable(object_field(data, "metrics")), "step": int(field(data, "step"))}
            with self._replay_lock:
                history = self.history(run)
                added, refused = history.add_metrics(record)
                if added is not None:
                    self.hub.send_to_run("metrics", {"run": run, "records": [added]}, run)
            if refused:  # the rest of the record was kept
                self._problem(ns, request.sid, "metrics", f"metrics: {history.refusal(refused)}")
            return True

        def log_lines(data: dict[str, Any]) -> bool:
            run = self.hub.run_of_publisher(request.sid)
            lines = list_field(data, "lines", MAX_LOG_MESSAGE_LINES)
            if not lines or not all(isinstance(line, str) for line in lines):
                raise ValueError(f"log needs 'lines', a list of 1 to {MAX_LOG_MESSAGE_LINES} strings")
            with self._replay_lock:
                kept = self.history(run).add_live_log(lines)
                if kept:
                    self.hub.send_to_run("log", {"run": run, "lines": kept, "reset": False}, run)
            return True

        def status(data: dict[str, Any]) -> bool:
            run = self.hub.run_of_publisher(request.sid)
            record = to_jsonable(data)
            if not isinstance(record.get("phase"), str) or not record["phase"]:
                raise ValueError(f"status needs a non-empty string 'phase', got {shown(record.get('phase'))}")
            if len(json.dumps(record)) > MAX_STATUS_CHARS:
                raise ValueError(f"a status of more than {MAX_STATUS_CHARS} characters of JSON is too large")
            payload = {**record, "run": run}
            with self._replay_lock:
                changed = self.hub.set_status(run, payload)
                self.hub.send_to_run("status", payload, run)
            if changed:
                self.broadcast_runs()
            return True

        def dream(data: dict[str, Any]) -> bool:
            run = self.hub.run_of_publisher(request.sid)
            payload = {"run": run, "fmt": field(data, "fmt"), "step": to_jsonable(data.get("step")),
                       "t": float(data.get("t", time.time()))}
            for part in ("real", "imagined"):
                blob, sizes = field(data, part), [int(n) for n in field(data, f"{part}_sizes")]
                if not isinstance(blob, bytes) or not sizes or sum(sizes) != len(blob) or min(sizes) <= 0:
                    raise ValueError(f"dream '{part}' must be bytes made of images of sizes '{part}_sizes'")
                payload[part], payload[f"{part}_sizes"] = blob, sizes
            if len(payload["real_sizes"]) != len(payload["imagined_sizes"]) or payload["fmt"] not in ("jpeg", "png"):
                raise ValueError("dream needs as many real as imagined frames, in jpeg or png")
            rows, stride, context = data.get("rows", 1), data.get("stride", 1), data.get("context")
            if context is None:  # the frames observed before imagining, as the run's config says
                context = config_value(self.run_dir(run), "report_context")
            counts = [rows, stride] if context is None else [rows, stride, context + 1]
            if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in counts):
                raise ValueError("dream 'rows' and 'stride' must be positive integers and 'context' a "
                                 f"non-negative integer, got {rows!r}, {stride!r}, {context!r}")
            samples = data.get("samples")
            if samples is not None and (not isinstance(samples, list) or len(samples) != rows
                                        or not all(isinstance(s, dict) for s in samples)
                                        or len(json.dumps(samples)) > MAX_SAMPLES_CHARS):
                raise ValueError(f"dream 'samples' must be one object per row ({rows}) of at most "
                                 f"{MAX_SAMPLES_CHARS} characters of JSON together, got {shown(samples)}")
            payload.update(rows=rows, context=None if context is None else -(-context // stride), samples=samples)
            first = self.hub.dream(run) is None
            with self._replay_lock:
                self.hub.set_dream(run, payload)
                self.hub.send_to_run("dream", payload, run)
            if first:
                self.broadcast_runs()
            return True

        self.socketio.on_event("connect", connect, namespace=ns)
        self.socketio.on_event("disconnect", disconnect, namespace=ns)
        for name, handler in [("frame", frame), ("step", step), ("status", status), ("episode", episode),
                              ("metrics", metrics), ("log", log_lines), ("dream", dream)]:
            self.socketio.on_event(name, self._guarded(ns, name, handler), namespace=ns)

    # -- viewers ----------------------------------------------------------------------------
    def _register_viewer_events(self) -> None:
        # These handlers never return a value: a return value would be sent as a Socket.IO ack from
        # this thread, and only the hub's dispatcher may send to viewers (see visualization.hub).
        ns = VIEW_NAMESPACE

        def connect(auth=None):
            if self.viewer_token_required and not self._token_ok(auth):
                raise ConnectionRefused("this server needs a token: open the URL it printed (it ends in ?token=...)")
            self.hub.add_viewer(request.sid)
            self.hub.send("runs", {"runs": self.runs()}, to=request.sid)

        def disconnect(*_):
            self.hub.remove_viewer(request.sid)

        def join(data: dict[str, Any]) -> None:
            run = check_run_name(field(data, "run"))
            with self._replay_lock:  # nothing is added to the history between snapshot and join
                history = self._known_history(run)
                if history is None:  # nothing is kept for it: the poller sends its history once it exists
                    self.hub.join(request.sid, run, awaiting=True)
                    self._problem(ns, request.sid, "join", f"join: no run {run!r} in {self.logdir} and none "
                                  "published; its data will be sent if it starts")
                    return
                self._send_history(request.sid, run, history)
                self.hub.join(request.sid, run)

        def watch(data: dict[str, Any]) -> None:
            envs, streams = list_field(data, "envs", MAX_ENVS), list_field(data, "streams", MAX_WATCHED_STREAMS)
            self.hub.watch(request.sid, None if envs is None else {check_env_index(e) for e in envs},
                           None if streams is None else {check_name("stream", s) for s in streams})

        def ack(data: dict[str, Any]) -> None:
            key = field(data, "key")
            if not isinstance(key, str):
                raise TypeError(f"field 'key' must be a slot key such as '0/camera', got {shown(key)}")
            self.hub.ack(request.sid, key)

        def control(data: dict[str, Any]) -> None:
            run = check_run_name(field(data, "run"))
            env = check_env_index(data.get("env", 0))
            keys = data.get("keys", {})
            if not isinstance(keys, dict):
                raise TypeError(f"field 'keys' must be an object such as {{'up': true}}, got {shown(keys)}")
            message = {"env": env, "keys": {k: bool(keys.get(k, False)) for k in CONTROL_KEYS},
                       "reset": bool(data.get("reset", False)), "t": time.time()}
            for sid in self.hub.controllers(run):
                self.socketio.emit("control", message, to=sid, namespace=PUBLISH_NAMESPACE)

        def record(data: dict[str, Any]) -> None:
            run = check_run_name(field(data, "run"))
            env = check_env_index(data.get("env", 0))
            if not self._saving.acquire(blocking=False):
                raise ValueError("another episode is being saved; try again once it is done")
            self.socketio.start_background_task(self._save_recording, run, env, request.sid)

        self.socketio.on_event("connect", connect, namespace=ns)
        self.socketio.on_event("disconnect", disconnect, namespace=ns)
        for name, handler in [("join", join), ("watch", watch), ("ack", ack), ("control", control),
                              ("record", record)]:
            self.socketio.on_event(name, self._guarded(ns, name, handler), namespace=ns)

    def _save_recording(self, run: str, env: int, sid: str) -> None:
        """Save the episode of (run, env) as mp4 and tell the viewer ``sid``; releases ``_saving``."""
        try:
            paths = self.recorder.save(run, env, self.run_dir(run) / "videos")
        except Exception as error:  # noqa: BLE001 - any failure (decode, ffmpeg, disk) is reported to the page
            log.warning("saving the episode of run %s env %d failed: %s", run, env, error)
            result = {"run": run, "env": env, "ok": False, "error": str(error)}
        else:
            result = {"run": run, "env": env, "ok": True, "files": [str(p.relative_to(self.logdir)) for p in paths]}
        finally:
            self._saving.release()
        self.hub.send("recorded", result, to=sid)


def resolve_token(token: str | None) -> str:
    """The given token, else $CARDREAMER_VIS_TOKEN, else a fresh random one."""
    return token or os.environ.get(TOKEN_ENV_VAR) or secrets.token_urlsafe(16)


def _check_port_free(host: str, port: int) -> None:
    """Fail before printing a URL that would not work."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise SystemExit(f"cardreamer serve: cannot listen on {host}:{port} ({error.strerror}); "
                             "choose another --port or --host") from None


def runtime_file(port: int) -> Path:
    """Where the server on ``port`` keeps its URL with its token, for ``train --serve`` to reuse it:
    ``$XDG_RUNTIME_DIR/cardreamer/visualizer-<port>.json`` (else under ``~/.cache``), in a folder
    only this user can read (the token lets anyone who holds it publish)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or os.path.expanduser("~/.cache")
    return Path(base) / "cardreamer" / f"visualizer-{port}.json"


def _write_runtime_file(port: int, url: str, logdir: Path) -> Path:
    path = runtime_file(port)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    write_atomic(path, json.dumps({"url": url, "pid": os.getpid(), "logdir": str(logdir.resolve())}))
    return path


def _remove_runtime_file(port: int) -> None:
    """Remove the runtime file of ``port`` if it is this process's."""
    path = runtime_file(port)
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def _exit_when_unused(server: VisualizationServer, parent_pid: int, port: int, grace: float = 5.0) -> None:
    """End this server process once the process that started it is gone (POSIX re-parenting) and
    no publisher has been connected for ``grace`` seconds: other runs that reuse it keep it."""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < grace:
            time.sleep(0.5)
            if server.hub.publisher_count():
                idle_since = time.monotonic()
        _remove_runtime_file(port)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve(logdir: str | os.PathLike, host: str = "127.0.0.1", port: int = 9000, token: str | None = None,
          max_fps: float = 30.0, quiet: bool = False, parent_pid: int | None = None,
          idle_run_seconds: float = IDLE_RUN_SECONDS) -> None:
    """Serve the visualizer until interrupted; prints the URL (with its token) unless ``quiet``.

    Binding to a non-loopback ``host`` makes viewers need the token as well as publishers. The URL
    is also written to :func:`runtime_file` while serving. With ``parent_pid``, the server stops
    once that process is gone and no publisher is left.
    """
    from werkzeug.serving import WSGIRequestHandler

    # Without this a Socket.IO round trip waits ~40 ms for Nagle's algorithm.
    WSGIRequestHandler.disable_nagle_algorithm = True
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per HTTP request
    _check_port_free(host, port)
    token = resolve_token(token)
    server = VisualizationServer(logdir, token, max_fps=max_fps, viewer_token_required=not is_loopback(host),
                                 idle_run_seconds=idle_run_seconds)
    server.start_background()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}/?token={token}"
    if not quiet:
        print(f"CarDreamer visualizer: {url}  (logdir {server.logdir.resolve()})", flush=True)
    _write_runtime_file(port, url, server.logdir)
    if parent_pid is not None:
        _exit_when_unused(server, parent_pid, port)
    if threading.current_thread() is threading.main_thread():  # SIGTERM ends it through the finally below
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.socketio.run(server.app, host=host, port=port, allow_unsafe_werkzeug=True, log_output=False)
    finally:
        server.stop_background()
        _remove_runtime_file(port)
