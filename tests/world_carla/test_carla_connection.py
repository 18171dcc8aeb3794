"""Connecting with the real carla.Client: unreachable servers, the version check, backend auto, TM ports."""
from __future__ import annotations

import logging
import socket
import threading
import time
import warnings

import fake_rpc_server
import pytest
from fake_rpc_server import serve_in_thread

from cardreamer.config import CarlaServer, WorldConfig
from cardreamer.world.api import WorldError
from cardreamer.world.carla_backend import (
    CarlaConnectionError,
    CarlaVersionWarning,
    CarlaWorld,
    choose_backend,
    client_version,
    connect,
)
from cardreamer.world.carla_backend.traffic import choose_tm_port


@pytest.fixture
def closed_port() -> int:
    """A local port where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_client_version_is_the_installed_wheel():
    assert client_version() == "0.9.16"


def test_unreachable_server_names_address_and_versions(closed_port):
    start = time.monotonic()
    with pytest.raises(CarlaConnectionError) as err:
        connect(CarlaServer(port=closed_port, timeout=1.0))
    message = str(err.value)
    assert f"127.0.0.1:{closed_port}" in message
    assert "carla 0.9.16" in message and "within 1 s" in message
    assert "cardreamer carla start" in message and "backend=embedded" in message
    assert isinstance(err.value, WorldError)
    assert time.monotonic() - start < 3.0


def test_carla_world_on_unreachable_server_raises_connection_error(closed_port):
    with pytest.raises(CarlaConnectionError, match=str(closed_port)):
        CarlaWorld(CarlaServer(port=closed_port, timeout=1.0), "Town04")


def test_matching_server_version_is_accepted_silently():
    port, listening = serve_in_thread("0.9.16")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _, version = connect(CarlaServer(port=port, timeout=2.0))
    finally:
        listening.close()
    assert version == "0.9.16"


def test_server_version_mismatch_warns_with_both_versions():
    port, listening = serve_in_thread("0.9.13")
    try:
        with pytest.warns(CarlaVersionWarning, match=r"version 0\.9\.13 but the client package is carla 0\.9\.16"):
            _, version = connect(CarlaServer(port=port, timeout=2.0))
    finally:
        listening.close()
    assert version == "0.9.13"


def test_auto_falls_back_to_embedded_when_nothing_answers(closed_port, caplog):
    config = WorldConfig(backend="auto", carla=CarlaServer(port=closed_port, timeout=1.0))
    with caplog.at_level(logging.INFO, logger="cardreamer.world.carla_backend.connection"):
        assert choose_backend(config) == "embedded"
    assert f"no CARLA server at 127.0.0.1 port {closed_port}" in caplog.text


def test_auto_chooses_carla_when_a_server_answers(caplog):
    port, listening = serve_in_thread("0.9.16")
    try:
        with caplog.at_level(logging.INFO, logger="cardreamer.world.carla_backend.connection"):
            assert choose_backend(WorldConfig(backend="auto", carla=CarlaServer(port=port, timeout=2.0))) == "carla"
    finally:
        listening.close()
    assert f"answered at 127.0.0.1: port {port} (CARLA 0.9.16); using them" in caplog.text


def _two_servers(answering: tuple[bool, bool]) -> tuple[CarlaServer, list[socket.socket]]:
    """A config of two servers (port, port + stride) of which those marked ``answering`` answer."""
    first, listening = serve_in_thread("0.9.16")
    sockets = [listening]
    for stride in range(3, 200):
        try:
            second = fake_rpc_server.listen(first + stride)
            break
        except OSError:
            continue
    sockets.append(second)
    threading.Thread(target=fake_rpc_server.serve, args=(second, "0.9.16"), daemon=True).start()
    for up, sock in zip(answering, sockets):
        if not up:
            sock.close()
    return CarlaServer(port=first, servers=2, port_stride=stride, timeout=2.0), sockets


@pytest.mark.parametrize("answering", [(True, False), (False, True)])
def test_auto_probes_every_server_of_the_run_and_names_the_missing_ones(answering):
    """Each env's world resolves ``auto`` alike: probing only the first server let the second env pick CARLA on a
    port where nothing runs (or the embedded simulator beside CARLA envs)."""
    config, sockets = _two_servers(answering)
    ports = config.ports()
    up, down = (ports[0], ports[1]) if answering[0] else (ports[1], ports[0])
    try:
        with pytest.raises(WorldError, match=rf"answered at 127.0.0.1 port {up} but not at port {down}; start"):
            choose_backend(WorldConfig(backend="auto", carla=config))
    finally:
        for sock in sockets:
            sock.close()


def test_auto_chooses_carla_when_every_server_answers(caplog):
    config, sockets = _two_servers((True, True))
    try:
        with caplog.at_level(logging.INFO, logger="cardreamer.world.carla_backend.connection"):
            assert choose_backend(WorldConfig(backend="auto", carla=config)) == "carla"
    finally:
        for sock in sockets:
            sock.close()
    assert all(f"port {p} (CARLA 0.9.16)" in caplog.text for p in config.ports())


def test_explicit_backends_are_not_probed():
    def refuse(host, port):
        raise AssertionError("an explicit backend must not contact a server")

    assert choose_backend(WorldConfig(backend="embedded"), refuse) == "embedded"
    assert choose_backend(WorldConfig(backend="carla"), refuse) == "carla"


def test_tm_port_zero_picks_a_free_port_away_from_the_server_ports():
    config = CarlaServer(port=2000, tm_port=0)
    ports = {choose_tm_port(config) for _ in range(20)}
    assert not ports & {2000, 2001, 2002}
    for port in list(ports)[:3]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # free: binding succeeds


def test_configured_tm_port_is_kept():
    assert choose_tm_port(CarlaServer(tm_port=8123)) == 8123
