"""The visualization server: Flask serves the page, Flask-SocketIO relays live data.

Run it in its own process with :func:`serve` (or ``cardreamer serve --logdir runs/``). It binds to
127.0.0.1 by default. Publishers must present the server's token; viewers must too when the
server listens on a non-loopback address.
"""

from __future__ import annotations

import hmac
import importlib.util
import ipaddress
import logging
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask_socketio import SocketIO
from socketio.exceptions import ConnectionRefusedError as ConnectionRefused

from visualization.history import RunHistory, list_run_dirs
from visualization.hub import LiveHub
from visualization.protocol import (
    PUBLISH_NAMESPACE,
    STEP_SLOT,
    VIEW_NAMESPACE,
    check_env_index,
    check_name,
    to_jsonable,
)
from visualization.recorder import EpisodeRecorder

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 << 20
TOKEN_ENV_VAR = "CARDREAMER_VIS_TOKEN"
FILE_POLL_SECONDS = 1.0
CONTROL_KEYS = ("up", "down", "left", "right")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class VisualizationServer:
    """The Flask app, its Socket.IO handlers, and the live state behind them."""

    def __init__(self, logdir: str | os.PathLike, token: str, max_fps: float = 30.0,
                 viewer_token_required: bool = False):
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
        self.hub = LiveHub(self._emit_to_viewer, max_fps=max_fps)
        self.recorder = EpisodeRecorder()
        self._histories: dict[str, RunHistory] = {}
        self._histories_lock = threading.Lock()
        # Held while adding to a run's history (and telling its viewers) and while a viewer joins
        # (history snapshot, then join), so each record reaches a viewer exactly once.
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

    def _token_ok(self, auth: object) -> bool:
        given = auth.get("token") if isinstance(auth, dict) else None
        return isinstance(given, str) and hmac.compare_digest(given.encode(), self.token.encode())

    def history(self, run: str) -> RunHistory:
        with self._histories_lock:
            if run not in self._histories:
                history = RunHistory(self.logdir / run)
                history.poll_files()  # the files' records come before anything published live
                self._histories[run] = history
            return self._histories[run]

    def runs(self) -> list[dict[str, Any]]:
        """Every run known from the logdir or from live publishers, most recently updated first."""
        on_disk = list_run_dirs(self.logdir)
        live = self.hub.summary()
        runs = []
        for name in set(on_disk) | set(live):
            info = live.get(name, {"live": False, "interactive": False, "envs": {}, "has_dream": False,
                                   "last_update": 0.0})
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

    def _poll_loop(self) -> None:
        while not self._stop.wait(FILE_POLL_SECONDS):
            try:
                self.broadcast_runs()
                with self._histories_lock:
                    runs = list(self._histories)
                for run in runs:
                    if self.hub.viewers_of(run) == 0:
                        continue
                    with self._replay_lock:
                        metrics, episodes = self.history(run).poll_files()
                        if metrics:
                            self.hub.send_to_run("metrics", {"run": run, "records": metrics}, run)
                        if episodes:
                            self.hub.send_to_run("episodes", {"run": run, "records": episodes}, run)
            except Exception:  # keep polling; one bad file must not stop the server
                log.exception("polling the logdir failed")

    # -- HTTP -------------------------------------------------------------------------------
    def _register_routes(self) -> None:
        @self.app.get("/")
        def index():
            return render_template("index.html", logdir=str(self.logdir.resolve()))

        @self.app.get("/healthz")
        def healthz():
            return jsonify(ok=True)

    # -- publishers -------------------------------------------------------------------------
    def _register_publisher_events(self) -> None:
        on = self.socketio.on_event
        ns = PUBLISH_NAMESPACE

        def connect(auth=None):
            if not self._token_ok(auth):
                raise ConnectionRefused("invalid or missing token")
            try:
                run = check_name("run", auth.get("run"))
            except ValueError as error:
                raise ConnectionRefused(str(error)) from None
            self.hub.add_publisher(request.sid, run, bool(auth.get("interactive", False)))
            self.broadcast_runs()

        def disconnect(*_):
            if self.hub.remove_publisher(request.sid) is not None:
                self.broadcast_runs()

        def frame(data):
            run = self.hub.run_of_publisher(request.sid)
            try:
                env = check_env_index(data["env"])
                stream = check_name("stream", data["stream"])
                image = data["data"]
                fmt = data["fmt"]
                if not isinstance(image, bytes) or not image or fmt not in ("jpeg", "png"):
                    raise ValueError("frame needs non-empty bytes 'data' and fmt 'jpeg' or 'png'")
                timestamp = float(data.get("t", time.time()))
                payload = {"env": env, "stream": stream, "fmt": fmt, "data": image, "t": timestamp,
                           "w": int(data.get("w", 0)), "h": int(data.get("h", 0))}
            except (KeyError, TypeError, ValueError) as error:
                log.warning("run %s: bad frame message: %s", run, error)
                return False
            new_slot = self.hub.put(run, env, stream, "frame", payload)
            self.recorder.add_frame(run, env, stream, image, timestamp)
            if new_slot:
                self.broadcast_runs()
            return True

        def step(data):
            run = self.hub.run_of_publisher(request.sid)
            try:
                env = check_env_index(data["env"])
                info = to_jsonable(dict(data["info"]))
            except (KeyError, TypeError, ValueError) as error:
                log.warning("run %s: bad step message: %s", run, error)
                return False
            self.hub.put(run, env, STEP_SLOT, "step", {"env": env, "info": info,
                                                       "t": float(data.get("t", time.time()))})
            return True

        def episode(data):
            run = self.hub.run_of_publisher(request.sid)
            try:
                env = check_env_index(data["env"])
                record = {**to_jsonable(dict(data["metrics"])), "env": env}
            except (KeyError, TypeError, ValueError) as error:
                log.warning("run %s: bad episode message: %s", run, error)
                return False
            self.recorder.end_episode(run, env)
            with self._replay_lock:
                added = self.history(run).add_episode(record)
                if added is not None:
                    self.hub.send_to_run("episodes", {"run": run, "records": [added]}, run)
            return True

        def metrics(data):
            run = self.hub.run_of_publisher(request.sid)
            try:
                record = {**to_jsonable(dict(data["metrics"])), "step": int(data["step"])}
            except (KeyError, TypeError, ValueError) as error:
                log.warning("run %s: bad metrics message: %s", run, error)
                return False
            with self._replay_lock:
                added = self.history(run).add_metrics(record)
                if added is not None:
                    self.hub.send_to_run("metrics", {"run": run, "records": [added]}, run)
            return True

        def dream(data):
            run = self.hub.run_of_publisher(request.sid)
            try:
                payload = {"run": run, "fmt": data["fmt"], "step": to_jsonable(data.get("step")),
                           "t": float(data.get("t", time.time()))}
                for part in ("real", "imagined"):
                    blob, sizes = data[part], [int(n) for n in data[f"{part}_sizes"]]
                    if not isinstance(blob, bytes) or not sizes or sum(sizes) != len(blob) or min(sizes) <= 0:
                        raise ValueError(f"dream '{part}' must be bytes made of images of sizes '{part}_sizes'")
                    payload[part], payload[f"{part}_sizes"] = blob, sizes
                if len(payload["real_sizes"]) != len(payload["imagined_sizes"]) or payload["fmt"] not in ("jpeg", "png"):
                    raise ValueError("dream needs as many real as imagined frames, in jpeg or png")
            except (KeyError, TypeError, ValueError) as error:
                log.warning("run %s: bad dream message: %s", run, error)
                return False
            first = self.hub.dream(run) is None
            with self._replay_lock:
                self.hub.set_dream(run, payload)
                self.hub.send_to_run("dream", payload, run)
            if first:
                self.broadcast_runs()
            return True

        for name, handler in [("connect", connect), ("disconnect", disconnect), ("frame", frame),
                              ("step", step), ("episode", episode), ("metrics", metrics), ("dream", dream)]:
            on(name, handler, namespace=ns)

    # -- viewers ----------------------------------------------------------------------------
    def _register_viewer_events(self) -> None:
        # These handlers never return a value: a return value would be sent as a Socket.IO ack from
        # this thread, and only the hub's dispatcher may send to viewers (see visualization.hub).
        on = self.socketio.on_event
        ns = VIEW_NAMESPACE

        def refuse(message: str) -> None:
            self.hub.send("problem", {"message": message}, to=request.sid)

        def connect(auth=None):
            if self.viewer_token_required and not self._token_ok(auth):
                raise ConnectionRefused("this server needs a token: open the URL it printed (it ends in ?token=...)")
            self.hub.add_viewer(request.sid)
            self.hub.send("runs", {"runs": self.runs()}, to=request.sid)

        def disconnect(*_):
            self.hub.remove_viewer(request.sid)

        def join(data):
            try:
                run = check_name("run", data["run"])
            except (KeyError, TypeError, ValueError) as error:
                return refuse(f"join: {error}")
            history = self.history(run)
            with self._replay_lock:  # nothing is added to the history between snapshot and join
                history.poll_files()
                self.hub.send("history", {"run": run, **history.snapshot()}, to=request.sid)
                dream = self.hub.dream(run)
                if dream is not None:
                    self.hub.send("dream", dream, to=request.sid)
                self.hub.join(request.sid, run)

        def watch(data):
            try:
                envs, streams = data.get("envs"), data.get("streams")
                envs = None if envs is None else {check_env_index(e) for e in envs}
                streams = None if streams is None else {check_name("stream", s) for s in streams}
            except (AttributeError, TypeError, ValueError) as error:
                return refuse(f"watch: {error}")
            self.hub.watch(request.sid, envs, streams)

        def ack(data):
            if isinstance(data, dict) and isinstance(data.get("key"), str):
                self.hub.ack(request.sid, data["key"])

        def control(data):
            try:
                run = check_name("run", data["run"])
                env = check_env_index(data.get("env", 0))
                keys = {k: bool(data.get("keys", {}).get(k, False)) for k in CONTROL_KEYS}
            except (AttributeError, KeyError, TypeError, ValueError) as error:
                return refuse(f"control: {error}")
            message = {"env": env, "keys": keys, "reset": bool(data.get("reset", False)), "t": time.time()}
            for sid in self.hub.controllers(run):
                self.socketio.emit("control", message, to=sid, namespace=PUBLISH_NAMESPACE)

        def record(data):
            try:
                run = check_name("run", data["run"])
                env = check_env_index(data.get("env", 0))
            except (KeyError, TypeError, ValueError) as error:
                return refuse(f"record: {error}")
            self.socketio.start_background_task(self._save_recording, run, env, request.sid)

        for name, handler in [("connect", connect), ("disconnect", disconnect), ("join", join),
                              ("watch", watch), ("ack", ack), ("control", control), ("record", record)]:
            on(name, handler, namespace=ns)

    def _save_recording(self, run: str, env: int, sid: str) -> None:
        try:
            paths = self.recorder.save(run, env, self.logdir / run / "videos")
        except Exception as error:  # noqa: BLE001 - any failure (decode, ffmpeg, disk) is reported to the page
            log.warning("saving the episode of run %s env %d failed: %s", run, env, error)
            self.hub.send("recorded", {"run": run, "env": env, "ok": False, "error": str(error)}, to=sid)
            return
        files = [str(path.relative_to(self.logdir)) for path in paths]
        self.hub.send("recorded", {"run": run, "env": env, "ok": True, "files": files}, to=sid)


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


def serve(logdir: str | os.PathLike, host: str = "127.0.0.1", port: int = 9000, token: str | None = None,
          max_fps: float = 30.0, quiet: bool = False) -> None:
    """Serve the visualizer until interrupted; prints the URL (with its token) unless ``quiet``.

    Binding to a non-loopback ``host`` makes viewers need the token as well as publishers.
    """
    from werkzeug.serving import WSGIRequestHandler

    # Without this a Socket.IO round trip waits ~40 ms for Nagle's algorithm.
    WSGIRequestHandler.disable_nagle_algorithm = True
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per HTTP request
    _check_port_free(host, port)
    token = resolve_token(token)
    server = VisualizationServer(logdir, token, max_fps=max_fps, viewer_token_required=not is_loopback(host))
    server.start_background()
    if not quiet:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        print(f"CarDreamer visualizer: http://{shown}:{port}/?token={token}  (logdir {server.logdir.resolve()})",
              flush=True)
    try:
        server.socketio.run(server.app, host=host, port=port, allow_unsafe_werkzeug=True, log_output=False)
    finally:
        server.stop_background()
