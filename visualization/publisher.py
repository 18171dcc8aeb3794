"""Publish live frames, step info, run status, episodes, metrics, log lines and dreams to the visualization server.

``make_publisher(url, token, run)`` returns a :class:`SocketPublisher`, or a :class:`NullPublisher`
that does nothing when ``url`` is None. The socket publisher never blocks or slows its caller: each
publish call only records the newest item of its stream (a queue of size one that drops the oldest)
and returns — episodes, metrics, log lines and changes of the run's phase are queued instead, so
none is lost; a background thread connects, encodes images (JPEG for camera-like streams, PNG for
flat bird's-eye rasters), and sends them as binary Socket.IO payloads, waiting for the server's
acknowledgement so nothing piles up. With no server reachable it retries quietly with backoff and
drops live frames, so memory stays bounded.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
import socketio

from visualization.protocol import (
    PUBLISH_NAMESPACE,
    STATUS_SLOT,
    STEP_SLOT,
    check_env_index,
    check_image,
    check_name,
    check_run_name,
    directory_identity,
    image_format,
    slot_key,
    to_jsonable,
)

log = logging.getLogger(__name__)

JPEG_QUALITY = 85
# Fast PNG for flat rasters: light compression, no row filters (3x faster, ~1.5x larger).
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]
if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # not in older OpenCV releases
    PNG_PARAMS += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
MAX_DREAM_FRAMES = 64
DREAM_INTERVAL = 1.0  # seconds; dreams are large and change slowly
IN_FLIGHT_WINDOW = 4  # messages sent but not yet acknowledged by the server
ACK_TIMEOUT = 10.0  # seconds without an ack before the connection is considered stuck
EVENT_QUEUE = 1000  # episodes and metrics kept while disconnected
MAX_RETRY_DELAY = 5.0  # seconds between connection attempts, at most


@dataclass(frozen=True)
class Control:
    """Driving input from the page: which arrow/WASD keys are held, and a one-shot reset request."""

    keys: dict[str, bool]
    reset: bool


class Publisher:
    """Interface of publishers; this base class publishes nothing (see :class:`NullPublisher`)."""

    def publish_frame(self, stream: str, image: np.ndarray, env_index: int = 0) -> None:
        """Show ``image`` (HxWx3 uint8 RGB) as the newest frame of ``stream`` for env ``env_index``."""

    def publish_step(self, info: dict[str, Any], env_index: int = 0) -> None:
        """Show live step info (speed, reward, ``r_*`` terms, terminal reason...)."""

    def publish_status(self, status: dict[str, Any]) -> None:
        """Show what the run is doing (phase, counters, rates: see ``cardreamer.training.status``)."""

    def publish_log(self, lines: list[str]) -> None:
        """Show lines of the run's log (what ``train.log`` holds) in the page's Log panel."""

    def publish_episode(self, metrics: dict[str, Any], env_index: int = 0) -> None:
        """Report a finished episode (return, length, success, collision...); also ends its recording."""

    def publish_metrics(self, step: int, metrics: dict[str, Any]) -> None:
        """Report training scalars logged at ``step``."""

    def publish_dream(self, real: np.ndarray, imagined: np.ndarray, step: int | None = None,
                      context: int | None = None, rows: int = 1, samples: list[dict] | None = None) -> None:
        """Show world-model open-loop predictions beside the real frames: (T,)HxWx3 uint8 each.

        ``context``: how many first frames the model observed before imagining the rest (None:
        the server reads ``report_context`` from the run's config.yaml); ``rows``: how many
        sequences are stacked vertically in each frame (replay samples); ``samples``: one dict
        per row saying where it came from, shown beside it, e.g. ``{"env": 1, "env_steps":
        [12340, 12592], "episodes": [{"number": 37, "steps": [40, 103]}]}`` (what
        :func:`cardreamer.training.replay.provenance` returns).
        """

    def poll_control(self, env_index: int = 0, max_age: float = 1.0) -> Control | None:
        """Newest driving input for ``env_index`` if received within ``max_age`` seconds."""
        return None

    def close(self) -> None:
        """Flush queued episodes, metrics and the run status briefly and disconnect."""

    def __enter__(self) -> Publisher:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class NullPublisher(Publisher):
    """A publisher that does nothing, used when no visualization server is configured."""


@dataclass
class _Frame:
    env: int
    stream: str
    image: np.ndarray
    time: float


class SocketPublisher(Publisher):
    """Publishes to a visualization server from a background thread; see the module docstring."""

    def __init__(self, url: str, token: str, run: str, interactive: bool = False, max_fps: float = 30.0,
                 run_dir: str | None = None):
        self.url = url
        self.token = token
        self.run = check_run_name(run)
        self.run_dir = None if run_dir is None else os.path.abspath(run_dir)
        self.interactive = interactive
        self.min_interval = 1.0 / max_fps
        self.frames_sent = 0
        self._lock = threading.Condition()
        self._latest: dict[str, tuple[str, Any]] = {}  # slot key -> (event, item); newest only
        self._accepted_at: dict[str, float] = {}
        self._events: collections.deque[tuple[str, dict[str, Any]]] = collections.deque(maxlen=EVENT_QUEUE)
        self._controls: dict[int, tuple[float, Control]] = {}
        self._reset_requested: set[int] = set()
        self._status: dict[str, Any] | None = None  # the newest run status
        self._in_flight = 0
        self._generation = 0
        self._connected = threading.Event()
        self._closed = threading.Event()
        self._client: socketio.Client | None = None
        self._known_streams: set[str] = set()
        self._last_refusal: str | None = None
        self._problem_events: set[str] = set()  # events the server already reported a problem with
        self._thread = threading.Thread(target=self._run_loop, name=f"vis-publisher-{run}", daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # -- caller side: cheap, never blocks on the network ------------------------------------
    def _accept(self, key: str, min_interval: float | None = None) -> bool:
        """Whether a live item for ``key`` should be kept (connected, and not above max_fps)."""
        if not self._connected.is_set():
            return False
        now = time.monotonic()
        with self._lock:
            if now - self._accepted_at.get(key, -1e9) < (min_interval or self.min_interval):
                return False
            self._accepted_at[key] = now
            return True

    def _store(self, key: str, event: str, item: Any) -> None:
        with self._lock:
            self._latest[key] = (event, item)
            self._lock.notify()

    def publish_frame(self, stream: str, image: np.ndarray, env_index: int = 0) -> None:
        if stream not in self._known_streams:
            self._known_streams.add(check_name("stream", stream))
        env = check_env_index(env_index)
        check_image(f"stream {stream!r}", image)
        key = slot_key(env, stream)
        if self._accept(key):
            self._store(key, "frame", _Frame(env, stream, image.copy(), time.time()))

    def publish_step(self, info: dict[str, Any], env_index: int = 0) -> None:
        env = check_env_index(env_index)
        key = slot_key(env, STEP_SLOT)
        if self._accept(key):
            self._store(key, "step", {"env": env, "info": dict(info), "t": time.time()})

    def publish_dream(self, real: np.ndarray, imagined: np.ndarray, step: int | None = None,
                      context: int | None = None, rows: int = 1, samples: list[dict] | None = None) -> None:
        real, imagined = np.asarray(real), np.asarray(imagined)
        if real.shape != imagined.shape:
            raise ValueError(f"publish_dream: real {real.shape} and imagined {imagined.shape} differ in shape")
        if real.ndim == 3:
            real, imagined = real[None], imagined[None]
        if real.ndim != 4 or len(real) == 0:
            raise ValueError(f"publish_dream: expected TxHxWx3 or HxWx3 uint8 frames, got shape {real.shape}")
        check_image("publish_dream real[0]", real[0])
        check_image("publish_dream imagined[0]", imagined[0])
        if not isinstance(rows, int) or rows < 1 or real.shape[1] % rows:
            raise ValueError(f"publish_dream: rows={rows!r} must be a positive divisor of the frame height {real.shape[1]}")
        if samples is not None and (len(samples) != rows or not all(isinstance(s, dict) for s in samples)):
            raise ValueError(f"publish_dream: samples must be one dict per row ({rows}), got {samples!r:.80}")
        if self._accept("dream", DREAM_INTERVAL):
            stride = max(1, int(np.ceil(len(real) / MAX_DREAM_FRAMES)))
            layout = {"rows": rows, "stride": stride, "context": None if context is None else int(context),
                      "samples": None if samples is None else to_jsonable(samples)}
            self._store("dream", "dream", (real[::stride].copy(), imagined[::stride].copy(), step, layout))

    def publish_status(self, status: dict[str, Any]) -> None:
        if not isinstance(status, dict) or not isinstance(status.get("phase"), str):
            raise TypeError(f"publish_status: expected a dict with a 'phase' string, got {status!r:.80}")
        with self._lock:
            # Sent again on each (re)connection: a phase such as the first jit can last minutes
            # without a newer status.
            previous, self._status = self._status, {**status, "t": time.time()}
            if previous is None or previous["phase"] != status["phase"]:
                # A phase change is always delivered, in order (a two-second evaluation must not
                # vanish between two sends); updates within a phase keep only the newest.
                self._latest.pop(STATUS_SLOT, None)
                self._events.append(("status", self._status))
                self._lock.notify()
                return
        self._store(STATUS_SLOT, "status", self._status)

    def publish_episode(self, metrics: dict[str, Any], env_index: int = 0) -> None:
        env = check_env_index(env_index)
        with self._lock:
            self._events.append(("episode", {"env": env, "metrics": dict(metrics), "t": time.time()}))
            self._lock.notify()

    def publish_log(self, lines: list[str]) -> None:
        with self._lock:
            self._events.append(("log", {"lines": [str(line) for line in lines]}))
            self._lock.notify()

    def publish_metrics(self, step: int, metrics: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(("metrics", {"step": int(step), "metrics": dict(metrics)}))
            self._lock.notify()

    def poll_control(self, env_index: int = 0, max_age: float = 1.0) -> Control | None:
        with self._lock:
            received = self._controls.get(env_index)
            reset = env_index in self._reset_requested
            self._reset_requested.discard(env_index)
        if received is None or time.monotonic() - received[0] > max_age:
            return Control({}, reset) if reset else None
        return Control(received[1].keys, reset)

    def close(self, flush_seconds: float = 1.0) -> None:
        deadline = time.monotonic() + flush_seconds
        while self._connected.is_set() and time.monotonic() < deadline:
            with self._lock:
                if not self._events and STATUS_SLOT not in self._latest and self._in_flight == 0:
                    break
            time.sleep(0.01)
        self._closed.set()
        with self._lock:
            self._lock.notify_all()
        self._thread.join(timeout=1.0)  # a daemon thread; it may still be inside a connection attempt

    # -- background thread ------------------------------------------------------------------
    def _run_loop(self) -> None:
        delay = 0.25
        while not self._closed.is_set():
            if not self._connected.is_set():
                if self._connect():
                    delay = 0.25
                else:
                    self._closed.wait(delay)
                    delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            message = self._next_message()
            if message is None:
                continue
            event, payload = message
            if not self._send(event, payload):
                self._drop_connection("the server stopped acknowledging messages")
        self._drop_connection(None)

    def _announced_dir(self) -> dict[str, Any]:
        """The run's directory and its identity, for a server on this machine to read the run's
        files from (its history before this connection); nothing while the directory is missing."""
        if self.run_dir is None:
            return {}
        try:
            return {"run_dir": self.run_dir, "run_dir_id": directory_identity(self.run_dir)}
        except OSError:
            return {}

    def _connect(self) -> bool:
        client = socketio.Client(reconnection=False, logger=False, engineio_logger=False)
        refusal: list[str] = []
        client.on("control", self._on_control, namespace=PUBLISH_NAMESPACE)
        client.on("problem", self._on_problem, namespace=PUBLISH_NAMESPACE)
        client.on("disconnect", lambda *_: self._connected.clear(), namespace=PUBLISH_NAMESPACE)
        def on_connect_error(data: object = None) -> None:
            if isinstance(data, dict) and "message" in data:  # the server's own refusal reason
                refusal.append(str(data["message"]))

        client.on("connect_error", on_connect_error, namespace=PUBLISH_NAMESPACE)
        try:
            client.connect(self.url, namespaces=[PUBLISH_NAMESPACE], transports=["websocket"], wait_timeout=5,
                           auth={"token": self.token, "run": self.run, "interactive": self.interactive,
                                 **self._announced_dir()})
        except socketio.exceptions.ConnectionError as error:
            if refusal:  # the server answered and said no: a configuration error worth one warning
                if refusal[0] != self._last_refusal:
                    log.warning("visualization server at %s refused run %r: %s", self.url, self.run, refusal[0])
                self._last_refusal = refusal[0]
            else:  # nobody listening (yet): retry quietly
                log.debug("visualization server at %s not reachable: %s", self.url, error)
            _disconnect_in_background(client)
            return False
        with self._lock:
            self._client = client
            self._generation += 1
            self._in_flight = 0
            self._accepted_at.clear()
            if self._status is not None:
                self._latest[STATUS_SLOT] = ("status", self._status)
        self._connected.set()
        log.info("publishing run %r to %s", self.run, self.url)
        return True

    def _drop_connection(self, reason: str | None) -> None:
        if reason:
            log.warning("visualization connection to %s dropped: %s", self.url, reason)
        self._connected.clear()
        with self._lock:
            client, self._client = self._client, None
            self._latest.clear()
        if client is not None:
            _disconnect_in_background(client)

    def _next_message(self) -> tuple[str, dict[str, Any]] | None:
        """Wait briefly for something to send; episodes/metrics first, then the oldest-waiting slot."""
        with self._lock:
            if not self._events and not self._latest:
                self._lock.wait(0.25)
            if self._events:
                event, item = self._events.popleft()
            elif self._latest:
                event, item = self._latest.pop(next(iter(self._latest)))
            else:
                return None
        try:
            return event, self._encode(event, item)
        except Exception:  # one unencodable item must not stop the publisher
            log.exception("visualization: could not encode a %s message; dropped", event)
            return None

    def _encode(self, event: str, item: Any) -> dict[str, Any]:
        if event in ("episode", "metrics"):
            return {**item, "metrics": to_jsonable(item["metrics"])}
        if event == "log":
            return item
        if event == "frame":
            fmt = image_format(item.stream)
            height, width = item.image.shape[:2]
            return {"env": item.env, "stream": item.stream, "fmt": fmt, "data": encode_image(item.image, fmt),
                    "t": item.time, "w": width, "h": height}
        if event == "step":
            return {**item, "info": to_jsonable(item["info"])}
        if event == "status":
            return to_jsonable(item)
        real, imagined, step, layout = item
        fmt = "png" if real.shape[1] * real.shape[2] <= 128 * 128 else "jpeg"
        # Each sequence travels as one binary blob of concatenated images plus their sizes: the
        # browser's Socket.IO parser refuses messages with more than 10 binary attachments.
        real_frames = [encode_image(f, fmt) for f in real]
        imagined_frames = [encode_image(f, fmt) for f in imagined]
        return {"real": b"".join(real_frames), "real_sizes": [len(f) for f in real_frames],
                "imagined": b"".join(imagined_frames), "imagined_sizes": [len(f) for f in imagined_frames],
                "fmt": fmt, "step": step, "t": time.time(), **layout}

    def _send(self, event: str, payload: dict[str, Any]) -> bool:
        """Emit once fewer than IN_FLIGHT_WINDOW messages await acks; False if acks stopped coming."""
        deadline = time.monotonic() + ACK_TIMEOUT
        with self._lock:
            while self._in_flight >= IN_FLIGHT_WINDOW:
                if self._closed.is_set() or not self._connected.is_set():
                    return True  # the run loop reconnects or exits; the message is dropped
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.25))
            client, generation = self._client, self._generation
            self._in_flight += 1
        if client is None:
            return True

        def acknowledged(*_: object) -> None:
            with self._lock:
                if self._generation == generation:
                    self._in_flight -= 1
                    self._lock.notify_all()

        try:
            client.emit(event, payload, namespace=PUBLISH_NAMESPACE, callback=acknowledged)
        except socketio.exceptions.BadNamespaceError:
            self._connected.clear()
            return True
        if event == "frame":
            self.frames_sent += 1
        return True

    def _on_problem(self, data: object) -> None:
        """The server refused (part of) a message: warn once per kind of message, then quietly."""
        event = str(data.get("event")) if isinstance(data, dict) else "?"
        message = str(data.get("message")) if isinstance(data, dict) else repr(data)
        level = logging.DEBUG if event in self._problem_events else logging.WARNING
        self._problem_events.add(event)
        log.log(level, "visualization server at %s, run %r: %s", self.url, self.run, message)

    def _on_control(self, data: dict[str, Any]) -> None:
        try:
            env = check_env_index(data.get("env", 0))
            keys = {str(k): bool(v) for k, v in dict(data.get("keys", {})).items()}
        except (AttributeError, TypeError, ValueError):
            return
        with self._lock:
            self._controls[env] = (time.monotonic(), Control(keys, False))
            if data.get("reset"):
                self._reset_requested.add(env)


def _disconnect_in_background(client: socketio.Client) -> None:
    """Disconnect without waiting: the WebSocket client waits up to 3 s for the server's close
    frame, which the werkzeug server never sends."""

    def disconnect() -> None:
        try:
            client.disconnect()
        except Exception:  # the socket may already be gone; nothing to do about it
            log.debug("disconnecting from %s failed", client.connection_url, exc_info=True)

    threading.Thread(target=disconnect, name="vis-disconnect", daemon=True).start()


def encode_image(image: np.ndarray, fmt: str) -> bytes:
    """Encode an RGB uint8 image as JPEG or PNG bytes with OpenCV."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if fmt == "jpeg":
        ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    else:
        ok, buffer = cv2.imencode(".png", bgr, PNG_PARAMS)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as {fmt}")
    return buffer.tobytes()


def make_publisher(url: str | None, token: str | None, run: str, interactive: bool = False,
                   max_fps: float = 30.0, run_dir: str | None = None) -> Publisher:
    """A publisher for ``run`` on the server at ``url`` (a NullPublisher when ``url`` is None).

    ``run_dir``: the run's directory, which it announces: a server on this machine whose logdir
    holds no run of that name reads the run's files there, so its viewers get the whole history.

    ``url`` may carry the token as a query (``http://127.0.0.1:9000/?token=...``), as printed by
    the server; ``interactive`` lets the page send driving controls to this publisher.
    """
    if url is None:
        return NullPublisher()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"visualization url {url!r} must look like http://127.0.0.1:9000")
    if token is None:
        token = parse_qs(parts.query).get("token", [None])[0]
    if not token:
        raise ValueError(f"visualization url {url!r}: a token is required (pass token= or add ?token=... "
                         "as printed by 'cardreamer serve')")
    return SocketPublisher(f"{parts.scheme}://{parts.netloc}", token, run, interactive=interactive, max_fps=max_fps,
                           run_dir=run_dir)
