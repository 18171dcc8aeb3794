"""Memory of the visualization server under hostile clients: a join flood and a metric-key flood.

Starts ``python -m visualization serve`` from a source tree (this one by default, or ``--source``
for another checkout, e.g. an older commit in a ``git worktree``) on an empty logdir, then:

1. a viewer joins ``--names`` invented run names, one after another, and waits for each reply;
2. a publisher sends ``--steps`` metrics messages, each with ``--keys`` distinct metric keys;
3. both disconnect and the server is left idle for a few seconds.

It prints the server's resident memory (VmRSS from /proc/<pid>/status) at each stage, and its
peak (VmHWM). It speaks the wire protocol with plain python-socketio clients, so it runs against
any version of the server.

    nice -n 15 python bench/server_flood.py                       # this tree
    nice -n 15 python bench/server_flood.py --source /tmp/before  # another checkout
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import socketio

HERE = Path(__file__).resolve().parents[1]


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) / 1024
    return values


def start_server(source: Path, logdir: Path, token: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "visualization", "serve", "--logdir", str(logdir), "--port", str(port),
               "--token", token, "--quiet", "--parent-pid", str(os.getpid())]
    process = subprocess.Popen(command, cwd=source, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                return process, base
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the server in {source} did not answer on port {port} within 30 s")


def join_flood(base: str, names: int) -> dict[str, int]:
    """Join ``names`` invented runs, each after the previous one's reply; count the replies."""
    client = socketio.Client(reconnection=False)
    replies = {"history": 0, "problem": 0}
    replied = threading.Semaphore(0)

    def counter(event: str):
        def on_reply(*_: object) -> None:
            replies[event] += 1
            replied.release()
        return on_reply

    for event in replies:
        client.on(event, counter(event), namespace="/view")
    client.connect(base, namespaces=["/view"], transports=["websocket"])
    for i in range(names):
        client.emit("join", {"run": f"invented-{i:06d}"}, namespace="/view")
        if not replied.acquire(timeout=10):
            break  # no reply: count what came
    client.disconnect()
    return replies


def key_flood(base: str, token: str, keys: int, steps: int) -> int:
    """Publish ``steps`` metrics messages with ``keys`` distinct keys each; return how many were acked."""
    client = socketio.Client(reconnection=False)
    client.connect(base, namespaces=["/publish"], transports=["websocket"],
                   auth={"token": token, "run": "key-flood"})
    acked = 0
    for step in range(steps):
        metrics = {f"flood/key{k:05d}": float(step * keys + k) for k in range(keys)}
        client.call("metrics", {"step": step, "metrics": metrics}, namespace="/publish", timeout=60)
        acked += 1
    client.disconnect()
    return acked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=HERE, help="source tree to run the server from")
    parser.add_argument("--names", type=int, default=20_000, help="invented run names to join")
    parser.add_argument("--keys", type=int, default=10_000, help="distinct metric keys per message")
    parser.add_argument("--steps", type=int, default=50, help="metrics messages")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds to wait after the clients leave")
    args = parser.parse_args()
    token = secrets.token_urlsafe(8)
    with tempfile.TemporaryDirectory() as logdir:
        process, base = start_server(args.source.resolve(), Path(logdir), token)
        try:
            time.sleep(1.0)
            stages = {"start": memory_mb(process.pid)["VmRSS"]}
            started = time.monotonic()
            replies = join_flood(base, args.names)
            stages["after_join_flood"] = memory_mb(process.pid)["VmRSS"]
            acked = key_flood(base, token, args.keys, args.steps)
            stages["after_key_flood"] = memory_mb(process.pid)["VmRSS"]
            elapsed = time.monotonic() - started
            time.sleep(args.idle)
            memory = memory_mb(process.pid)
            stages["after_clients_left"] = memory["VmRSS"]
        finally:
            process.terminate()
            process.wait(timeout=10)
    print(json.dumps({"source": str(args.source), "names": args.names, "keys": args.keys, "steps": args.steps,
                      "join_replies": replies, "metrics_acked": acked, "flood_seconds": round(elapsed, 1),
                      "rss_mb": {k: round(v, 1) for k, v in stages.items()}, "peak_rss_mb": round(memory["VmHWM"], 1)},
                     indent=1))


if __name__ == "__main__":
    main()
