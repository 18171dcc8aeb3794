"""A TCP server that answers the one RPC a real ``carla.Client`` needs to learn the server version.

CARLA speaks msgpack-rpc: a request is ``[0, msgid, method, params]`` and a reply
``[1, msgid, error, result]``; the result of ``version`` is a carla Response, packed as
``[[1, "0.9.16"]]`` (variant index 1: a value, not an error). Every other method is refused.
Lets tests run the real client against a real socket: the version check and the launcher's
"wait until it answers". Run as a script (``python fake_rpc_server.py PORT VERSION [SECONDS]``)
or start in a thread with ``serve_in_thread``.
"""
from __future__ import annotations

import socket
import sys
import threading
import time

import msgpack


def _handle(conn: socket.socket, version: str) -> None:
    unpacker = msgpack.Unpacker(raw=False)
    with conn:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            unpacker.feed(data)
            for _, msgid, method, _params in unpacker:
                reply = [1, msgid, None, [[1, version]]] if method == "version" else [1, msgid, f"no {method}", None]
                conn.sendall(msgpack.packb(reply))


def listen(port: int = 0) -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    return server


def serve(server: socket.socket, version: str) -> None:
    while True:
        try:
            conn, _ = server.accept()
        except OSError:  # closed
            return
        threading.Thread(target=_handle, args=(conn, version), daemon=True).start()


def serve_in_thread(version: str) -> tuple[int, socket.socket]:
    """Start answering on a free port; returns (port, listening socket: close it to stop)."""
    server = listen()
    threading.Thread(target=serve, args=(server, version), daemon=True).start()
    return server.getsockname()[1], server


if __name__ == "__main__":
    port, version = int(sys.argv[1]), sys.argv[2]
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else None
    listening = listen(port)
    threading.Thread(target=serve, args=(listening, version), daemon=True).start()
    if seconds is None:
        threading.Event().wait()
    time.sleep(seconds)
