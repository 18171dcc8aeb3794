"""Reaching a CARLA server: the client, the version check, ``backend: auto`` and free ports."""
from __future__ import annotations

import logging
import socket
import warnings
from collections.abc import Callable
from importlib import metadata
from typing import Any

import carla

from cardreamer.config import CarlaServer, WorldConfig
from cardreamer.world.api import WorldError
from cardreamer.world.carla_backend.errors import CarlaConnectionError, CarlaVersionWarning

log = logging.getLogger(__name__)

ClientFactory = Callable[[str, int], Any]
"""Builds a client for (host, port): ``carla.Client`` itself, or a stand-in in tests."""


def client_version() -> str:
    """Version of the installed ``carla`` client package."""
    try:
        return metadata.version("carla")
    except metadata.PackageNotFoundError:
        return str(getattr(carla, "__version__", "unknown"))


def _release(version: str) -> str:
    """'0.9.16-dirty' -> '0.9.16' (the API version without a build suffix)."""
    return version.strip().split("-")[0].split("+")[0]


def connect(config: CarlaServer, client_factory: ClientFactory = carla.Client,
            timeout: float | None = None) -> tuple[Any, str]:
    """A client connected to the configured server and the server's version.

    Raises CarlaConnectionError naming the address and both versions when nothing answers within
    ``timeout`` (default ``config.timeout``); warns (CarlaVersionWarning) when versions differ.
    """
    timeout = config.timeout if timeout is None else timeout
    client = client_factory(config.host, config.port)
    client.set_timeout(timeout)
    try:
        server_version = str(client.get_server_version())
    except RuntimeError as exc:
        raise CarlaConnectionError(
            f"no CARLA server answered at {config.host}:{config.port} within {timeout:g} s "
            f"(client package carla {client_version()}): {exc}. Start one with "
            f"`cardreamer carla start --root $CARLA_ROOT --port {config.port}`, fix env.world.carla.host/port, "
            f"or use env.world.backend=embedded") from None
    if _release(server_version) != _release(client_version()):
        warnings.warn(
            f"CARLA server at {config.host}:{config.port} is version {server_version} but the client package is "
            f"carla {client_version()}; install the matching client (pip install carla=={_release(server_version)}) "
            f"if calls fail", CarlaVersionWarning, stacklevel=2)
    return client, server_version


def accepts(host: str, port: int, timeout: float) -> bool:
    """Whether something accepts TCP connections on host:port within ``timeout`` s.

    A libcarla client made while nothing listened stays disconnected even once the server listens (checked with
    carla 0.9.16), so whoever waits for a server makes its client again once the port opens.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def choose_backend(config: WorldConfig, client_factory: ClientFactory = carla.Client) -> str:
    """Resolve ``backend: auto`` the same way for every env of a run: 'carla' when every configured server
    (``env.world.carla.servers`` of them, one per env) answers within the timeout, 'embedded' when none does;
    some but not all is an error naming which answered."""
    if config.backend != "auto":
        return config.backend
    answered: dict[int, str] = {}
    for port in config.carla.ports():
        server = config.carla.model_copy(update={"port": port, "servers": 1})
        if not accepts(server.host, port, server.timeout):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CarlaVersionWarning)
                answered[port] = connect(server, client_factory)[1]
        except CarlaConnectionError:
            continue
    host, ports = config.carla.host, config.carla.ports()
    if not answered:
        log.info("backend auto: no CARLA server at %s port %s within %g s, using the embedded simulator",
                 host, ", ".join(map(str, ports)), config.carla.timeout)
        return "embedded"
    missing = [p for p in ports if p not in answered]
    if missing:
        raise WorldError(f"backend auto: env.world.carla.servers={len(ports)}, and CARLA servers answered at {host} "
                         f"port {', '.join(map(str, answered))} but not at port {', '.join(map(str, missing))}; "
                         f"start those (cardreamer carla start --port P), or set env.world.backend=carla or embedded")
    log.info("backend auto: CARLA servers answered at %s: %s; using them", host,
             ", ".join(f"port {p} (CARLA {v})" for p, v in answered.items()))
    return "carla"


_WORLDS_HERE: set[tuple[str, int]] = set()
"""The servers a world of this process is connected to (host, port)."""


def claim_server(config: CarlaServer) -> None:
    """Refuse a second world of this process on one server; ``release_server`` frees the claim."""
    address = (config.host, config.port)
    if address in _WORLDS_HERE:
        raise WorldError(f"a CARLA world on {config.host}:{config.port} is already open in this process; two worlds "
                         f"on one server see each other's vehicles, tick each other's Traffic Manager and fill each "
                         f"other's sensor queues. Give each env its own server (env.world.carla.port) or close the "
                         f"first world")
    _WORLDS_HERE.add(address)


def release_server(config: CarlaServer) -> None:
    _WORLDS_HERE.discard((config.host, config.port))


def port_is_free(port: int) -> bool:
    """Whether nothing on this machine listens on TCP ``port`` (a port in TIME_WAIT counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def free_port(avoid: set[int] = frozenset()) -> int:
    """A TCP port free on this machine right now (for a Traffic Manager), not in ``avoid``."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port
