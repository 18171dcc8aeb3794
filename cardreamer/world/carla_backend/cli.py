"""``cardreamer carla start``: run headless CARLA servers (one or one per env) in the foreground until Ctrl-C."""
from __future__ import annotations

import argparse
import os

from cardreamer.world.carla_backend.errors import CarlaLaunchError
from cardreamer.world.carla_backend.launcher import start_server, stop


def cmd_start(args: argparse.Namespace) -> int:
    root = args.root or os.environ.get("CARLA_ROOT")
    if not root:
        raise CarlaLaunchError("no CARLA folder given: pass --root /path/to/CARLA_0.9.16 or set $CARLA_ROOT")
    if args.servers < 1 or args.port_stride < 3:
        raise CarlaLaunchError(f"--servers {args.servers} --port-stride {args.port_stride}: need at least one server, "
                               f"ports at least 3 apart (a server on P also uses P+1 and P+2)")
    ports = [args.port + k * args.port_stride for k in range(args.servers)]
    processes = []
    try:
        for port in ports:
            processes.append(start_server(root, port, args.server_args, timeout=args.timeout))
        listed = ", ".join(f"127.0.0.1:{port} (pid {p.pid})" for port, p in zip(ports, processes))
        settings = f"--env.world.carla.port={args.port}"
        if args.servers > 1:
            settings += f" --env.world.carla.servers={args.servers} --env.world.carla.port_stride={args.port_stride}"
        print(f"CARLA server{'s' * (args.servers > 1)} answering on {listed}, "
              f"headless; Ctrl-C stops {'them' if args.servers > 1 else 'it'}. Use --env.world.backend=carla {settings}",
              flush=True)
        statuses = [process.wait() for process in processes]
        return next((status for status in statuses if status), 0)
    except KeyboardInterrupt:
        return 0
    finally:
        for process in processes:
            stop(process)


def register(subparsers) -> None:
    """Add ``carla start`` to the ``cardreamer`` command."""
    carla_parser = subparsers.add_parser("carla", help="manage a CARLA server for the carla backend")
    carla_sub = carla_parser.add_subparsers(dest="carla_command", required=True, metavar="ACTION")
    p = carla_sub.add_parser("start", help="start headless CARLA servers and wait until they answer")
    p.add_argument("--root", default=None, help="CARLA release folder holding CarlaUE4.sh (default: $CARLA_ROOT)")
    p.add_argument("--port", type=int, default=2000, help="RPC port; the server also uses PORT+1 and PORT+2")
    p.add_argument("--servers", type=int, default=1,
                   help="start this many servers, on PORT, PORT+STRIDE, ... (one per env: env.world.carla.servers)")
    p.add_argument("--port-stride", type=int, default=3, help="ports between two servers' RPC ports (at least 3)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server to answer")
    p.add_argument("server_args", nargs="*", default=[],
                   help="extra server arguments after --, e.g. -- -quality-level=Low")
    p.set_defaults(func=cmd_start)
