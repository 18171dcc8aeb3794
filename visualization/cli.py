"""Command line: ``cardreamer serve`` and ``cardreamer drive``, and a server-subprocess helper.

:func:`register` adds both sub-commands to an ``argparse`` sub-parser set; each sets
``args.func``, which the main program calls with the parsed ``args``. ``python -m visualization``
runs the same commands on their own.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from visualization.protocol import check_run_name
from visualization.server import IDLE_RUN_SECONDS, SERVICE, TOKEN_ENV_VAR, resolve_token, runtime_file, serve

SERVER_LOG = "visualizer.log"  # the server subprocess's output, in the logdir


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` and ``drive`` sub-commands."""
    serve_parser = subparsers.add_parser(
        "serve", help="run the browser visualizer",
        description="Serve the live visualizer for the runs in a log directory. Publishers need the token "
                    f"printed in the URL (or set with --token / ${TOKEN_ENV_VAR}).")
    serve_parser.add_argument("--logdir", default="runs", help="directory holding one folder per run (default: runs)")
    serve_parser.add_argument("--host", default="127.0.0.1",
                              help="address to bind (default 127.0.0.1; any other address makes viewers "
                                   "need the token too)")
    serve_parser.add_argument("--port", type=int, default=9000, help="port (default 9000)")
    serve_parser.add_argument("--token", default=None, help=f"token (default: ${TOKEN_ENV_VAR} or a random one)")
    serve_parser.add_argument("--max-fps", type=float, default=30.0, help="frames per second per stream and viewer")
    serve_parser.add_argument("--idle-run-seconds", type=float, default=IDLE_RUN_SECONDS,
                              help="forget the live state (newest frames, status, dream) of a run that nobody "
                                   "publishes or watches after it published nothing for this long; a run in "
                                   "the logdir is read again from its files (default %(default)g)")
    serve_parser.add_argument("--quiet", action="store_true", help="do not print the URL")
    serve_parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    serve_parser.set_defaults(func=_serve_command)

    drive_parser = subparsers.add_parser(
        "drive", help="drive a task yourself from the browser",
        description="Open a task and drive it with the keyboard in the visualizer page (arrows or WASD, R resets).")
    drive_parser.add_argument("--task", required=True, help="task name, e.g. right_turn_simple")
    drive_parser.add_argument("--seed", type=int, default=0)
    drive_parser.add_argument("--hz", type=float, default=10.0, help="env steps per second (default 10)")
    drive_parser.add_argument("--run", default=None, help="run name shown in the page (default drive-<task>)")
    drive_parser.add_argument("--url", default=None,
                              help="URL of a running visualizer, with its ?token=...; by default a server is "
                                   "started for this session")
    drive_parser.add_argument("--logdir", default="runs", help="where saved episode videos go (default: runs)")
    drive_parser.set_defaults(func=_drive_command)


def _serve_command(args: argparse.Namespace) -> None:
    serve(args.logdir, host=args.host, port=args.port, token=args.token, max_fps=args.max_fps, quiet=args.quiet,
          parent_pid=args.parent_pid, idle_run_seconds=args.idle_run_seconds)


def _drive_command(args: argparse.Namespace) -> None:
    from cardreamer.env import make_env
    from visualization.drive import drive

    # Config overrides (--env.world.backend=carla) are collected by the main `cardreamer` parser.
    env = make_env(args.task, getattr(args, "overrides", None) or None)
    # A Discrete env's (acceleration, steering) table: CarDreamer envs keep it in `actions.grid`.
    discrete_actions = getattr(getattr(env.unwrapped, "actions", None), "grid", None)
    process = None
    url = args.url
    if url is None:
        process, url = start_server_subprocess(args.logdir)
    try:
        result = drive(env, url, run=args.run or f"drive-{Path(args.task).stem}", hz=args.hz, seed=args.seed,
                       discrete_actions=discrete_actions)
        print(f"drove {result.steps} steps, {result.episodes} episodes")
    except KeyboardInterrupt:
        pass
    finally:
        env.close()
        if process is not None:
            process.terminate()
            process.wait(timeout=10)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_server_subprocess(logdir: str | os.PathLike, port: int | None = None, host: str = "127.0.0.1",
                            token: str | None = None, max_fps: float = 30.0, timeout: float = 30.0,
                            announce: bool = True, idle_run_seconds: float = IDLE_RUN_SECONDS,
                            ) -> tuple[subprocess.Popen, str]:
    """Start ``serve`` in a child process, wait until it answers, and return (process, url).

    The URL carries the token (``http://127.0.0.1:PORT/?token=...``) and can be given as is to
    :func:`visualization.publisher.make_publisher` and to a browser. The child's output goes to
    ``<logdir>/visualizer.log``; it exits once this process is gone and no publisher is connected
    to it (on POSIX). The caller stops it with ``process.terminate()``.
    """
    token = resolve_token(token)
    Path(logdir).mkdir(parents=True, exist_ok=True)
    log_path = Path(logdir) / SERVER_LOG
    for _ in range(3 if port is None else 1):
        chosen = port or free_port(host)
        command = [sys.executable, "-m", "visualization", "serve", "--logdir", str(logdir), "--host", host,
                   "--port", str(chosen), "--max-fps", str(max_fps), "--idle-run-seconds", str(idle_run_seconds),
                   "--quiet", "--parent-pid", str(os.getpid())]
        with open(log_path, "w") as log_file:
            process = subprocess.Popen(command, env={**os.environ, TOKEN_ENV_VAR: token}, stdout=log_file,
                                       stderr=subprocess.STDOUT)
        if _wait_until_serving(process, f"http://{host}:{chosen}/healthz", timeout):
            url = f"http://{host}:{chosen}/?token={token}"
            if announce:
                print(f"CarDreamer visualizer: {url}  (server log: {log_path})", flush=True)
            return process, url
        error = log_path.read_text() if process.poll() is not None else ""
        if process.poll() is None:
            process.kill()
            process.wait()
            raise RuntimeError(f"the visualization server on port {chosen} did not answer within {timeout:.0f} s")
        if "in use" in error and port is None:
            continue  # another process took the free port first: try another one
        raise RuntimeError(f"the visualization server on port {chosen} exited with code {process.returncode}:\n"
                           f"{error[-2000:]}")
    raise RuntimeError("could not find a free port for the visualization server")


def running_visualizer(host: str, port: int) -> dict | None:
    """What the visualizer answering at host:port says of itself (/healthz: its pid and logdir);
    None if nothing listens there. Raises ``OSError`` if something that is not a visualizer does."""
    try:
        socket.create_connection((host, port), timeout=1.0).close()
    except OSError:
        return None
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=2.0) as response:
            health = json.loads(response.read())
    except (OSError, ValueError) as error:
        raise OSError(f"port {port} is taken by a program that is not a CarDreamer visualizer ({error})") from None
    if not isinstance(health, dict) or health.get("service") != SERVICE:
        raise OSError(f"port {port} is taken by a program that is not a CarDreamer visualizer")
    return health


def _known_token(port: int, health: dict, given: str | None) -> str | None:
    """The token of the visualizer on ``port``: from its runtime file if that is the answering
    process's, else the ``given`` one (a URL's ?token= or $CARDREAMER_VIS_TOKEN)."""
    try:
        record = json.loads(runtime_file(port).read_text())
        if record.get("pid") == health.get("pid"):
            return parse_qs(urlsplit(record["url"]).query)["token"][0]
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    return given or os.environ.get(TOKEN_ENV_VAR) or None


def run_name_on(server_logdir: str | None, run_dir: Path) -> str:
    """The name a server serving ``server_logdir`` lists the run in ``run_dir`` under: its path
    there (``exp/base/seed0``) if it is inside, else its folder's name."""
    if server_logdir:
        try:
            return check_run_name(run_dir.resolve().relative_to(Path(server_logdir).resolve()).as_posix())
        except ValueError:  # not inside, or not a run name the server would list
            pass
    return run_dir.name


def serve_for_run(url: str, logdir: str | os.PathLike) -> tuple[subprocess.Popen | None, str, str]:
    """A visualizer for a training run at ``url``'s host and port: the one already answering
    there, else a new one serving ``logdir`` (on a free port if another program holds that one).
    Returns (the new server's process or None, its URL with the token, one line saying which)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 9000
    given = parse_qs(parts.query).get("token", [None])[0]
    try:
        health = running_visualizer(host, port)
    except OSError as taken:
        process, started = start_server_subprocess(logdir, host=host, token=given, announce=False)
        return process, started, f"{taken}: started one on port {urlsplit(started).port}: {started}"
    if health is None:
        try:
            process, started = start_server_subprocess(logdir, port=port, host=host, token=given, announce=False)
            return process, started, f"started on port {port}: {started}  (server log: {Path(logdir) / SERVER_LOG})"
        except RuntimeError:
            health = running_visualizer(host, port)  # another run may have started one there meanwhile
            if health is None:
                raise
    token = _known_token(port, health, given)
    if token is None:
        raise RuntimeError(f"a CarDreamer visualizer answers on port {port}, but its token is not known here: "
                           f"pass --url with the ?token=... it printed instead of --serve")
    reused = f"http://{host}:{port}/?token={token}"
    return None, reused, f"reusing the one already on port {port} (logdir {health.get('logdir')}): {reused}"


def _wait_until_serving(process: subprocess.Popen, health_url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(health_url, timeout=1.0) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m visualization", description="CarDreamer visualizer")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)
