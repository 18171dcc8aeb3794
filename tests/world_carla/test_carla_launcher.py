"""The headless server launcher and `cardreamer carla start`, with fake CarlaUE4.sh scripts.

The scripts run the tiny msgpack-rpc responder (fake_rpc_server.py) on the port they are given,
so the real carla.Client decides when "the server answers".
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pytest

from cardreamer.world.carla_backend import CarlaLaunchError, start_server
from cardreamer.world.carla_backend import cli as carla_cli
from cardreamer.world.carla_backend.launcher import stop

FAKE_RPC = Path(__file__).resolve().parent / "fake_rpc_server.py"


def fake_carla_root(tmp_path: Path, body: str) -> Path:
    """A folder with an executable CarlaUE4.sh running ``body`` (PORT holds the -carla-rpc-port value)."""
    script = tmp_path / "CarlaUE4.sh"
    script.write_text("#!/bin/sh\n"
                      'echo "args: $@"\n'
                      'for arg in "$@"; do case "$arg" in -carla-rpc-port=*) PORT="${arg#*=}";; esac; done\n'
                      f"{body}\n")
    script.chmod(0o755)
    return tmp_path


def answering_root(tmp_path: Path, seconds: str = "") -> Path:
    return fake_carla_root(tmp_path, f'exec "{sys.executable}" "{FAKE_RPC}" "$PORT" 0.9.16 {seconds}')


def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_missing_script_is_a_clear_error(tmp_path):
    with pytest.raises(CarlaLaunchError, match=r"CarlaUE4\.sh does not exist"):
        start_server(tmp_path, 2000)


def test_server_that_exits_reports_its_status_and_log(tmp_path):
    root = fake_carla_root(tmp_path, "exit 3")
    with pytest.raises(CarlaLaunchError, match=r"exited with status 3 .* output is in .*\.log"):
        start_server(root, free_port(), timeout=10)


def test_server_that_never_answers_times_out_and_is_stopped(tmp_path):
    root = fake_carla_root(tmp_path, "exec sleep 60")
    start = time.monotonic()
    with pytest.raises(CarlaLaunchError, match="did not answer .* within 1.5 s") as err:
        start_server(root, free_port(), timeout=1.5)
    assert time.monotonic() - start < 6
    log_path = str(err.value).rsplit(" ", 1)[-1]
    assert "-RenderOffScreen" in Path(log_path).read_text()


def test_start_server_returns_once_a_client_answers(tmp_path):
    port = free_port()
    process = start_server(answering_root(tmp_path), port, ["-quality-level=Low"], timeout=20)
    try:
        assert process.poll() is None
    finally:
        stop(process)
    assert process.poll() is not None


def test_cli_start_runs_in_the_foreground_until_the_server_exits(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="cardreamer")
    carla_cli.register(parser.add_subparsers(dest="command"))
    port = free_port()
    args = parser.parse_args(["carla", "start", "--root", str(answering_root(tmp_path, "1.5")), "--port", str(port)])
    assert args.func(args) == 0
    assert f"answering on 127.0.0.1:{port}" in capsys.readouterr().out


def test_cli_start_without_root_says_how_to_give_one(monkeypatch):
    monkeypatch.delenv("CARLA_ROOT", raising=False)
    parser = argparse.ArgumentParser(prog="cardreamer")
    carla_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["carla", "start"])
    with pytest.raises(CarlaLaunchError, match=r"--root .*\$CARLA_ROOT"):
        args.func(args)


def test_the_wait_reuses_one_client_and_makes_it_again_only_once_the_port_opens(tmp_path):
    """A real carla.Client made while nothing listened never connects later (libcarla 0.9.16), so the launcher makes
    one before the server listens and one once it does, and reuses it; not a client per poll."""
    import carla

    made = []

    def counting_client(host, port):
        made.append(port)
        return carla.Client(host, port)

    root = fake_carla_root(tmp_path, f'sleep 3; exec "{sys.executable}" "{FAKE_RPC}" "$PORT" 0.9.16')
    process = start_server(root, free_port(), timeout=30.0, client_factory=counting_client)
    try:
        assert process.poll() is None and len(made) == 2
    finally:
        stop(process)
