"""Command line: sub-command registration, the server subprocess helper, and `serve` itself."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

import pytest
import socketio

from visualization.cli import free_port, register, start_server_subprocess
from visualization.protocol import VIEW_NAMESPACE


def test_register_adds_serve_and_drive():
    parser = argparse.ArgumentParser(prog="cardreamer")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve"])
    assert (args.logdir, args.host, args.port, args.token, args.max_fps) == ("runs", "127.0.0.1", 9000, None, 30.0)
    assert callable(args.func)
    args = parser.parse_args(["drive", "--task", "lane_merge", "--hz", "5"])
    assert (args.task, args.hz, args.url, args.run) == ("lane_merge", 5.0, None, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["drive"])  # --task is required


def test_subprocess_helper_reports_a_busy_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(RuntimeError, match="exited with code"):
            start_server_subprocess(tmp_path, port=port, announce=False, timeout=20)
    assert "in use" in (tmp_path / "visualizer.log").read_text()


def test_serve_on_all_interfaces_requires_the_token_from_viewers(tmp_path):
    port = free_port("0.0.0.0")
    env = {**os.environ, "CARDREAMER_VIS_TOKEN": "from-env"}
    process = subprocess.Popen([sys.executable, "-m", "visualization", "serve", "--logdir", str(tmp_path),
                                "--host", "0.0.0.0", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        banner = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/?token=from-env" in banner
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        anonymous = socketio.Client(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            anonymous.connect(url, namespaces=[VIEW_NAMESPACE], transports=["websocket"], wait_timeout=5)
        viewer = socketio.Client(reconnection=False)
        viewer.connect(url, namespaces=[VIEW_NAMESPACE], transports=["websocket"], auth={"token": "from-env"},
                       wait_timeout=5)
        assert viewer.connected
        viewer.disconnect()
    finally:
        process.terminate()
        process.wait(10)
