"""`cardreamer train --serve` and the visualizer already on its port, over real sockets and processes:
a second run reuses the first run's server (one server, both runs live on it), the server outlives
the run that started it while another publishes, and a port held by another program is avoided."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import socketio
from conftest import Viewer, wait_until

from visualization.cli import free_port, serve_for_run


def _health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return None


def _train(tmp_path: Path, name: str, port: int) -> subprocess.Popen:
    """A random-backbone CartPole run with --serve on ``port``, long enough to be stopped by SIGINT."""
    command = [sys.executable, "-m", "cardreamer.cli", "train", "--task", "CartPole-v1", "--backbone", "random",
               "--steps", "10000000", "--logdir", str(tmp_path / "runs" / name), "--serve", "--eval-every", "0",
               f"--run.serve_url=http://127.0.0.1:{port}", "--run.progress=false", "--run.save_every=100000"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path / "rt")})


def _first_line(process: subprocess.Popen, start: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(start):
            return line.strip()
        assert line or process.poll() is None, f"the run exited with {process.returncode}"
    raise AssertionError(f"no line starting with {start!r}")


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)  # saves and stops
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.mark.slow
def test_a_second_serve_reuses_the_running_server_which_outlives_the_first_run(tmp_path):
    port = free_port()
    first = _train(tmp_path, "a", port)
    second = None
    try:
        line = _first_line(first, "CarDreamer visualizer:")
        assert line.startswith(f"CarDreamer visualizer: started on port {port}: http://127.0.0.1:{port}/?token=")
        server_pid = _health(port)["pid"]
        assert json.loads((tmp_path / "rt" / "cardreamer" / f"visualizer-{port}.json").read_text())["pid"] == server_pid
        second = _train(tmp_path, "exp/b", port)  # a run folder below the server's logdir
        line = _first_line(second, "CarDreamer visualizer:")
        assert line == (f"CarDreamer visualizer: reusing the one already on port {port} "
                        f"(logdir {tmp_path / 'runs'}): http://127.0.0.1:{port}/?token={line.split('token=')[1]}")
        viewer = Viewer(f"http://127.0.0.1:{port}", "exp/b")
        statuses = []
        viewer.client.on("status", statuses.append, namespace="/view")
        try:
            # Published under the name the server lists its directory by: one entry per run.
            assert wait_until(lambda: {"a", "exp/b"} <= {r["name"] for r in _runs(port) if r["live"]}, timeout=60)
            runs = {r["name"]: r for r in _runs(port)}
            assert set(runs) == {"a", "exp/b"} and runs["exp/b"]["on_disk"], runs
            _stop(first)  # the run that started the server ends; the other still publishes to it
            time.sleep(7)  # longer than the server's grace period
            assert _health(port)["pid"] == server_pid
            count = len(statuses)
            assert wait_until(lambda: len(statuses) > count + 2, timeout=20), "run b's status stopped coming"
            assert viewer.history is not None and statuses[-1]["run"] == "exp/b"
        finally:
            viewer.close()
        _stop(second)
        assert wait_until(lambda: _health(port) is None, timeout=20), "the server outlived every run"
        assert not (tmp_path / "rt" / "cardreamer" / f"visualizer-{port}.json").exists()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def _runs(port: int) -> list[dict]:
    """The run list a viewer gets on connecting."""
    received = []
    client = socketio.Client(reconnection=False)
    client.on("runs", lambda data: received.append(data["runs"]), namespace="/view")
    client.connect(f"http://127.0.0.1:{port}", namespaces=["/view"], transports=["websocket"])
    try:
        wait_until(lambda: received, timeout=5)
        return received[-1] if received else []
    finally:
        threading.Thread(target=client.disconnect, daemon=True).start()


def test_a_port_held_by_another_program_gets_a_server_on_a_free_port(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "rt"))
    with socket.socket() as other:  # listens, but is no visualizer
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        process, url, line = serve_for_run(f"http://127.0.0.1:{port}", tmp_path / "runs")
    try:
        new_port = int(url.split(":")[2].split("/")[0])
        assert new_port != port and _health(new_port)["pid"] == process.pid
        assert line.startswith(f"port {port} is taken by a program that is not a CarDreamer visualizer")
        assert line.endswith(f": started one on port {new_port}: {url}")
        # A visualizer whose token this process cannot know is refused in one line.
        (tmp_path / "rt" / "cardreamer" / f"visualizer-{new_port}.json").unlink()
        monkeypatch.delenv("CARDREAMER_VIS_TOKEN", raising=False)
        with pytest.raises(RuntimeError, match=f"answers on port {new_port}, but its token is not known here: "
                                               r"pass --url with the \?token=\.\.\. it printed"):
            serve_for_run(f"http://127.0.0.1:{new_port}", tmp_path / "runs")
        assert serve_for_run(url, tmp_path / "runs")[1] == url  # a URL with the token reuses it
        (tmp_path / "rt" / "cardreamer" / f"visualizer-{new_port}.json").write_text(
            json.dumps({"url": url, "pid": process.pid}))
    finally:
        process.terminate()
        process.wait(10)
    assert not (tmp_path / "rt" / "cardreamer" / f"visualizer-{new_port}.json").exists()  # removed on SIGTERM
