"""Starting a headless CARLA server and waiting until it answers."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import carla

from cardreamer.config import CarlaServer
from cardreamer.world.carla_backend.connection import ClientFactory, accepts
from cardreamer.world.carla_backend.errors import CarlaLaunchError

SERVER_SCRIPT = "CarlaUE4.sh"
POLL_TIMEOUT = 1.0  # s per "are you there" attempt (a server that is up answers in ms)


def server_command(root: str | os.PathLike, port: int, extra_args: Sequence[str] = ()) -> list[str]:
    """The command line of a headless server: off-screen rendering on RPC port ``port``."""
    script = Path(root).expanduser() / SERVER_SCRIPT
    if not script.is_file():
        raise CarlaLaunchError(f"{script} does not exist: --root (or $CARLA_ROOT) must be the folder of an unpacked "
                               f"CARLA release, the one holding {SERVER_SCRIPT}")
    return [str(script), "-RenderOffScreen", f"-carla-rpc-port={port}", *extra_args]


def launch(command: Sequence[str], host: str, port: int, timeout: float = 120.0,
           client_factory: ClientFactory = carla.Client) -> subprocess.Popen:
    """Run ``command`` in its own process group and wait until a client answers at host:port.

    The server's output goes to a log file named in every error. On failure (the process exits,
    or nothing answers within ``timeout`` seconds) the process group is stopped and
    CarlaLaunchError raised.
    """
    with tempfile.NamedTemporaryFile("wb", prefix=f"carla-{port}-", suffix=".log", delete=False) as log_file:
        try:
            process = subprocess.Popen(list(command), stdout=log_file, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        except OSError as exc:
            raise CarlaLaunchError(f"could not run {shlex.join(command)}: {exc}") from None
    deadline = time.monotonic() + timeout
    # One client for the wait, made again only once the port opens: a libcarla client made while nothing listened
    # stays disconnected for good, one made on an open port answers as soon as the server is ready.
    client, made_while_closed = None, False
    while True:
        if process.poll() is not None:
            raise CarlaLaunchError(f"CARLA server exited with status {process.returncode} before answering on port "
                                   f"{port}; its output is in {log_file.name}")
        poll = min(POLL_TIMEOUT, max(deadline - time.monotonic(), 0.1))
        is_open = accepts(host, port, poll)
        if client is None or (made_while_closed and is_open):
            client, made_while_closed = client_factory(host, port), not is_open
        client.set_timeout(poll)
        try:
            client.get_server_version()
            return process
        except RuntimeError:
            pass  # not up, or listening but not answering yet (still loading its map)
        if time.monotonic() >= deadline:
            stop(process)
            raise CarlaLaunchError(f"CARLA server started by {shlex.join(command)} did not answer on {host}:{port} "
                                   f"within {timeout:g} s; its output is in {log_file.name}")
        time.sleep(0.2)



def start_server(root: str | os.PathLike, port: int = 2000, extra_args: Sequence[str] = (), timeout: float = 120.0,
                 client_factory: ClientFactory = carla.Client) -> subprocess.Popen:
    """Start ``CarlaUE4.sh -RenderOffScreen -carla-rpc-port=PORT`` and return once it answers."""
    return launch(server_command(root, port, extra_args), "127.0.0.1", port, timeout, client_factory)


def launch_from_config(config: CarlaServer, timeout: float = 120.0,
                       client_factory: ClientFactory = carla.Client) -> subprocess.Popen:
    """Run ``config.launch_command`` (a shell-style command line) and wait for the server."""
    if not config.launch_command:
        raise CarlaLaunchError("env.world.carla.launch_command is not set, so the server cannot be relaunched")
    return launch(shlex.split(config.launch_command), config.host, config.port, timeout, client_factory)


def stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop a server started here (its whole process group: CarlaUE4.sh starts a child)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        process.wait()
