"""The visualization server's live state under hostile publishers and viewers, on real sockets: a
run's frame streams are capped, the live state of runs gone idle is dropped (a run in the logdir is
read again from its files), and a viewer that stops reading gets no backlog of frames and slows
nobody else."""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest

from tests.robustness.test_server_hostile import Client, stats, wait_for, write_metrics
from visualization.cli import start_server_subprocess
from visualization.hub import MAX_FRAME_SLOTS, MAX_VIEWER_BACKLOG
from visualization.protocol import PUBLISH_NAMESPACE as PUB
from visualization.protocol import VIEW_NAMESPACE as VIEW

IDLE = 2.0  # seconds after which this test server forgets an idle run's live state


@pytest.fixture
def server(tmp_path):
    logdir = tmp_path / "runs"
    process, url = start_server_subprocess(logdir, announce=False, idle_run_seconds=IDLE, timeout=120)
    try:
        yield {"url": url, "base": url.split("/?")[0], "token": url.split("token=")[1], "logdir": logdir}
    finally:
        process.terminate()
        process.wait(timeout=10)
    log = (logdir / "visualizer.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def publisher(server: dict, run: str) -> Client:
    return Client(server["base"], PUB, auth={"token": server["token"], "run": run})


def frame(stream: str, data: bytes = b"\xff\xd8 not decoded by the server", env: int = 0) -> dict:
    return {"env": env, "stream": stream, "fmt": "jpeg", "data": data, "w": 8, "h": 8}


def test_a_run_has_at_most_its_cap_of_frame_streams(server):
    pub = publisher(server, "streams")
    for i in range(MAX_FRAME_SLOTS):
        assert pub.client.call("frame", frame(f"s{i:03d}", env=i % 4), namespace=PUB) is True
    for i in range(MAX_FRAME_SLOTS, MAX_FRAME_SLOTS + 20):  # new streams are refused, one line each
        assert pub.client.call("frame", frame(f"s{i:03d}"), namespace=PUB) is False
        problem = pub.next_of("problem")
        assert problem["event"] == "frame"
        assert problem["message"] == (f"frame: run 'streams' has {MAX_FRAME_SLOTS} frame streams (env and stream "
                                      f"pairs), the most a run may have: stream 's{i:03d}' of env 0 is not kept")
    assert pub.client.call("frame", frame("s000"), namespace=PUB) is True  # the kept ones still update
    pub.close()


def test_the_live_state_of_an_idle_run_is_dropped_and_a_logged_run_is_read_again(server):
    write_metrics(server["logdir"] / "logged", range(5))
    for run in ("logged", "live-only"):
        pub = publisher(server, run)
        assert pub.client.call("frame", frame("camera"), namespace=PUB) is True
        assert pub.client.call("status", {"phase": "training"}, namespace=PUB) is True
        assert pub.client.call("episode", {"env": 0, "metrics": {"return": 1.0}}, namespace=PUB) is True
        pub.close()
    held = ("histories", "metric_points", "live_runs")
    assert wait_for(lambda: [stats(server)[key] for key in held] == [0, 0, 0], timeout=IDLE + 10), stats(server)
    viewer = Client(server["base"], VIEW)
    viewer.client.emit("join", {"run": "logged"}, namespace=VIEW)
    assert [m["step"] for m in viewer.next_of("history")["metrics"]] == list(range(5))  # from its file
    viewer.client.emit("join", {"run": "live-only"}, namespace=VIEW)
    assert "no run 'live-only' in" in viewer.next_of("problem")["message"]
    viewer.close()


class StalledViewer:
    """A viewer on a raw WebSocket that joins a run and then never reads again."""

    def __init__(self, base: str, run: str):
        parts = urlsplit(base)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((parts.hostname, parts.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        self.seen = b""
        self._read_until(b"101 Switching Protocols")
        self._read_until(b'"sid"')  # engine.io's open packet
        self.send(f"40{VIEW},")
        self._read_until(f"40{VIEW},".encode())
        self.send(f'42{VIEW},["join",{{"run":"{run}"}}]')

    def _read_until(self, marker: bytes) -> None:
        """Read until ``marker`` has come, leaving what follows it for the next call."""
        self.sock.settimeout(30)
        while marker not in self.seen:
            chunk = self.sock.recv(4096)
            assert chunk, f"the server closed the connection before sending {marker!r}"
            self.seen += chunk
        self.seen = self.seen.split(marker, 1)[1]

    def send(self, text: str) -> None:
        data, mask = text.encode(), os.urandom(4)
        assert len(data) < 126
        self.sock.sendall(bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def close(self) -> None:
        self.sock.close()


def test_a_viewer_that_stops_reading_gets_no_backlog_and_stalls_nobody(server):
    streams = [f"cam{i}" for i in range(16)]
    pub = publisher(server, "busy")
    image = os.urandom(200_000)
    for stream in streams:
        assert pub.client.call("frame", frame(stream, image), namespace=PUB) is True
    stalled = StalledViewer(server["base"], "busy")
    watcher = Client(server["base"], VIEW)
    received: list[float] = []

    def on_frame(data):
        received.append(time.monotonic())
        watcher.client.emit("ack", {"key": data["key"]}, namespace=VIEW)

    watcher.client.on("frame", on_frame, namespace=VIEW)
    watcher.client.emit("join", {"run": "busy"}, namespace=VIEW)
    assert wait_for(lambda: received)
    round_trips, backlogs = [], []
    stop = threading.Event()
    threading.Thread(target=lambda: [backlogs.append(stats(server)["viewer_backlog"]) or time.sleep(0.2)
                                     for _ in iter(stop.is_set, True)], daemon=True).start()
    start = time.monotonic()
    while time.monotonic() - start < 8:  # the publisher keeps sending every stream's frames
        for stream in streams:
            sent = time.monotonic()
            assert pub.client.call("frame", frame(stream, image), namespace=PUB, timeout=10) is True
            round_trips.append(time.monotonic() - sent)
    stop.set()
    late = [t for t in received if t > start + 4]
    stalled.close()
    watcher.close()
    pub.close()
    assert max(backlogs) <= MAX_VIEWER_BACKLOG + 4, backlogs  # the stalled viewer's queue stays short
    assert sorted(round_trips)[len(round_trips) // 2] < 0.5, round_trips  # the publisher is not held up
    assert len(late) >= 8, len(late)  # the reading viewer still gets frames in the last 4 s
