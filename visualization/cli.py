"""Command line: ``cardreamer serve`` and ``cardreamer drive``, and a server-subprocess helper.

:func:`register` adds both sub-commands to an ``argparse`` sub-parser set; each sets
``args.func``, which the main program calls with the parsed ``args``. ``python -m visualization``
runs the same commands on their own.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from visualization.server import IDLE_RUN_SECONDS, TOKEN_ENV_VAR, resolve_token, serve

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
    if args.parent_pid is not None:
        _exit_with_parent(args.parent_pid)
    serve(args.logdir, host=args.host, port=args.port, token=args.token, max_fps=args.max_fps, quiet=args.quiet,
          idle_run_seconds=args.idle_run_seconds)


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


def _exit_with_parent(parent_pid: int) -> None:
    """End this server process when the process that started it is gone (POSIX re-parenting)."""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


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
    ``<logdir>/visualizer.log``; it exits when this process does (on POSIX). The caller stops it
    with ``process.terminate()``.
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
