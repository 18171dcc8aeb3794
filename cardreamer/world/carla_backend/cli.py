"""``cardreamer carla start``: run a headless CARLA server in the foreground until Ctrl-C."""
from __future__ import annotations

import argparse
import os

from cardreamer.world.carla_backend.errors import CarlaLaunchError
from cardreamer.world.carla_backend.launcher import start_server, stop


def cmd_start(args: argparse.Namespace) -> int:
    root = args.root or os.environ.get("CARLA_ROOT")
    if not root:
        raise CarlaLaunchError("no CARLA folder given: pass --root /path/to/CARLA_0.9.16 or set $CARLA_ROOT")
    process = start_server(root, args.port, args.server_args, timeout=args.timeout)
    print(f"CARLA server answering on 127.0.0.1:{args.port} (pid {process.pid}, headless); "
          f"Ctrl-C stops it. Use --env.world.backend=carla --env.world.carla.port={args.port}", flush=True)
    try:
        return process.wait()
    except KeyboardInterrupt:
        stop(process)
        return 0


def register(subparsers) -> None:
    """Add ``carla start`` to the ``cardreamer`` command."""
    carla_parser = subparsers.add_parser("carla", help="manage a CARLA server for the carla backend")
    carla_sub = carla_parser.add_subparsers(dest="carla_command", required=True, metavar="ACTION")
    p = carla_sub.add_parser("start", help="start a headless CARLA server and wait until it answers")
    p.add_argument("--root", default=None, help="CARLA release folder holding CarlaUE4.sh (default: $CARLA_ROOT)")
    p.add_argument("--port", type=int, default=2000, help="RPC port; the server also uses PORT+1 and PORT+2")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server to answer")
    p.add_argument("server_args", nargs="*", default=[],
                   help="extra server arguments after --, e.g. -- -quality-level=Low")
    p.set_defaults(func=cmd_start)
