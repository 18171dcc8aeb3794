"""The CARLA client in a worker process, so that a server crash cannot take the trainer down.

libcarla keeps every Traffic Manager of a process in one registry, ticks all of them after each
``world.tick()`` and inside ``apply_settings()``, and its TM thread makes RPCs with no error
handling: after a server loss the process can die of ``std::terminate`` or hang, beyond the reach
of any Python ``except``. ``CarlaProcessWorld`` therefore runs the client, its Traffic Manager and
its sensors (a ``CarlaWorld``) in a worker process and forwards the World API over a pipe; what
crosses it is plain data (numpy arrays, dataclasses, numbers). A worker that dies, or does not
answer in time, is killed and reported as ``CarlaServerLost`` (a ``WorldLost``); ``recover``
starts a fresh worker (relaunching the server first when ``launch_command`` is set), and
``close`` asks the worker to close its world, which shuts the Traffic Manager down.
"""
from __future__ import annotations

import atexit
import logging
import multiprocessing
import pickle
import signal
import subprocess
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

import carla
import numpy as np

from cardreamer.config import CarlaServer
from cardreamer.roadmap import RoadMap, Route
from cardreamer.world.api import (
    Behavior,
    CollisionEvent,
    LaneInvasionEvent,
    Pose,
    SensorSpec,
    SensorWorld,
    TrafficLightStates,
    VehicleArrays,
    World,
    WorldError,
    WorldLost,
)
from cardreamer.world.carla_backend import launcher
from cardreamer.world.carla_backend.connection import ClientFactory, claim_server, release_server
from cardreamer.world.carla_backend.errors import CarlaServerLost
from cardreamer.world.carla_backend.world import LOAD_TIMEOUT, CarlaWorld

log = logging.getLogger(__name__)

START_MARGIN = 120.0  # s for a fresh interpreter to import the backend and parse the map, on top of loading it
CALL_MARGIN = 10.0    # s a call may take beyond the client timeout and the sensors' wait before the worker counts as hung
CLOSE_TIMEOUT = 30.0  # s a worker has to close its world before it is killed
CONTROL_FIELDS = ("throttle", "steer", "brake", "hand_brake", "reverse", "manual_gear_shift", "gear")
QUERIES = frozenset({"vehicles", "route_of", "route_progress", "intended_route", "traffic_lights", "collisions",
                     "lane_invasions", "is_off_road", "sensor_data"})
"""Calls that change nothing: answered from the parent's memo until the next other call."""


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to build its CarlaWorld (picklable: it crosses into a fresh interpreter)."""

    config: CarlaServer
    map_request: str
    road_map_source: str
    dt: float
    seed: int
    vehicle_blueprint: str
    sensor_timeout: float
    client_factory: ClientFactory | None = None  # None: carla.Client
    leftovers: tuple[int, ...] = ()              # actors a dead worker left on a server that survived it


def _portable(exc: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else a WorldError carrying its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - pickling fails in many ways; every one gets the plain fallback
        return WorldError(f"{type(exc).__name__}: {exc}")


def serve(conn: Connection, spec: WorkerSpec) -> None:
    """The worker's loop: build the world, then answer (method, args, kwargs) until 'close' or the parent is gone.

    Every answer is (status, value, frame, owned): 'ok' and the result or 'error' and the exception; the
    world's frame; the ids of the actors it owns when they changed since the last answer (else None).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle; it closes this worker
    try:
        world = CarlaWorld(spec.config, spec.map_request, spec.dt, spec.seed,
                           road_map=RoadMap.load(spec.road_map_source), vehicle_blueprint=spec.vehicle_blueprint,
                           sensor_timeout=spec.sensor_timeout, client_factory=spec.client_factory or carla.Client)
        world.remove_leftovers(spec.leftovers)
    except Exception as exc:  # noqa: BLE001 - whatever stops the world from starting is the caller's error
        conn.send(("error", _portable(exc), None, None))
        return
    owned: tuple[int, ...] = ()
    conn.send(("ok", {"server_version": world.server_version, "tm_port": world.tm_port}, world.frame, owned))
    while True:
        try:
            method, args, kwargs = conn.recv()
        except (EOFError, OSError):  # the trainer is gone: leave the server clean
            world.close()
            return
        if method == "close":
            world.close()
            conn.send(("ok", None, world.frame, ()))
            return
        try:
            if method == "apply_control":
                args = (args[0], carla.VehicleControl(**args[1]))
            status, value = "ok", getattr(world, method)(*args, **kwargs)
        except Exception as exc:
            if not isinstance(exc, WorldError):
                log.exception("CARLA worker: %s failed", method)
            status, value = "error", _portable(exc)
        now = tuple(world._tracked_actor_ids())
        try:
            conn.send((status, value, world.frame, now if now != owned else None))
        except (EOFError, OSError):
            world.close()
            return
        owned = now


def _exit_description(process: multiprocessing.process.BaseProcess) -> str:
    code = process.exitcode
    if code is None:
        return "is still running"
    if code < 0:
        return f"was killed by signal {signal.Signals(-code).name}"
    return f"exited with status {code}"


class CarlaProcessWorld(World, SensorWorld):
    """A CarlaWorld run in a worker process (same arguments; ``road_map`` is required and is parsed again there).

    ``call_timeout`` (default: from the client timeout and ``sensor_timeout``) is how long a call may
    take before the worker counts as hung and is killed.
    """

    def __init__(self, config: CarlaServer, map_name_or_xodr: str, dt: float = 0.1, seed: int = 0, *,
                 road_map: RoadMap, vehicle_blueprint: str = "vehicle.tesla.model3", sensor_timeout: float = 10.0,
                 client_factory: ClientFactory | None = None, call_timeout: float | None = None):
        if road_map.source is None:
            raise WorldError(f"map {road_map.name!r} has no source file, so a CARLA worker cannot read it")
        self.config = config
        self.road_map = road_map
        self.dt = float(dt)
        self.frame = 0
        self.call_timeout = call_timeout or 2 * config.timeout + sensor_timeout + CALL_MARGIN
        inner = config.model_copy(update={"restart_client_every": 0, "restart_server_every": 0})  # restarts are ours
        self._spec = WorkerSpec(inner, str(map_name_or_xodr), str(road_map.source), self.dt, seed,
                                vehicle_blueprint, sensor_timeout, client_factory)
        self._resets = 0
        self._context = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or locks inherited
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._owned: tuple[int, ...] = ()
        self._memo: dict[tuple, Any] = {}
        self._lost: str | None = None
        self._launched: subprocess.Popen | None = None
        self._closed = False
        claim_server(config)
        try:
            self._start(())
        except BaseException:
            release_server(config)
            raise
        atexit.register(self.close)

    # ------------------------------------------------------------------ the worker
    @property
    def worker_pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _start(self, leftovers: tuple[int, ...]) -> None:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=serve, args=(child, replace(self._spec, leftovers=leftovers)),
                                              name=f"carla-worker-{self.config.port}")
        self._process.start()
        child.close()
        self._conn = parent
        try:
            info = self._receive("starting", LOAD_TIMEOUT + 2 * self.config.timeout + START_MARGIN)
        except WorldError as exc:
            self._stop_worker(grace=CLOSE_TIMEOUT)
            self._lost = self._lost or f"the CARLA worker for {self.config.host}:{self.config.port} did not start: {exc}"
            raise
        self.server_version, self.tm_port = info["server_version"], info["tm_port"]

    def _stop_worker(self, grace: float = 0.0) -> None:
        """Wait up to ``grace`` seconds for the worker to exit, then kill it."""
        process, self._process = self._process, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if process is None:
            return
        process.join(grace)
        if process.is_alive():
            process.kill()
            process.join()

    def _lose(self, during: str, why: str) -> CarlaServerLost:
        """Kill the worker and mark the world lost; returns the error to raise."""
        pid = self.worker_pid
        if self._process is not None and why == "hung":
            why = f"did not answer within {self.call_timeout:g} s, so it was killed"
        elif self._process is not None:
            self._process.join(1.0)
            why = _exit_description(self._process)
        self._stop_worker()
        self._lost = (f"the CARLA worker process (pid {pid}) for {self.config.host}:{self.config.port} {why} "
                      f"during {during}")
        return CarlaServerLost(f"{self._lost}. Call world.recover() (a fresh worker; it relaunches "
                               f"env.world.carla.launch_command when set) and reset the env")

    def _receive(self, during: str, timeout: float) -> Any:
        try:
            if not self._conn.poll(timeout):
                raise self._lose(during, "hung")
            status, value, frame, owned = self._conn.recv()
        except (EOFError, OSError):
            raise self._lose(during, "died") from None
        if frame is not None:
            self.frame = frame
        if owned is not None:
            self._owned = owned
        if status == "error":
            if isinstance(value, WorldLost):
                self._lost = str(value)
            raise value
        return value

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise WorldError(f"this CARLA world is closed; {method} needs a new one")
        if self._lost is not None:
            raise CarlaServerLost(f"{self._lost}; call world.recover() before {method}")
        key = (method, args)
        if method in QUERIES and key in self._memo:
            return self._memo[key]
        if method not in QUERIES:
            self._memo.clear()
        try:
            self._conn.send((method, args, kwargs))
        except (EOFError, OSError):
            raise self._lose(method, "died") from None
        value = self._receive(method, self.call_timeout)
        if method in QUERIES:
            self._memo[key] = value
        return value

    # ------------------------------------------------------------------ lifecycle
    def recover(self) -> None:
        """A fresh worker after WorldLost; the server is relaunched first when ``launch_command`` is set.

        Actors the old worker owned are destroyed on a server that survived it (not on a relaunched one,
        which hands out the same ids to its own actors).
        """
        self._stop_worker()
        relaunch = bool(self.config.launch_command)
        self._restart(self._owned, relaunch)

    def _restart(self, leftovers: tuple[int, ...], relaunch: bool) -> None:
        """A fresh worker (after relaunching the server when ``relaunch``), removing ``leftovers`` on a server that
        was not relaunched."""
        if relaunch:
            if self._launched is not None:
                launcher.stop(self._launched)
            self._launched = launcher.launch_from_config(self.config,
                                                         client_factory=self._spec.client_factory or carla.Client)
        self._owned, self._lost = (), None
        self._memo.clear()
        self._start(() if relaunch else leftovers)

    def _close_worker(self) -> None:
        """Ask the worker to close its world (actors destroyed, Traffic Manager shut down, settings restored) and
        stop it, killing it after CLOSE_TIMEOUT."""
        if self._process is not None and self._lost is None:
            try:
                self._conn.send(("close", (), {}))
                if self._conn.poll(CLOSE_TIMEOUT):
                    self._conn.recv()
            except (EOFError, OSError) as exc:
                log.warning("closing the CARLA worker: %s", exc)
        self._stop_worker(grace=CLOSE_TIMEOUT)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._close_worker()
        release_server(self.config)
        if self._launched is not None:
            launcher.stop(self._launched)
            self._launched = None

    def reset(self, seed: int) -> None:
        """Reset the world; every ``restart_client_every`` resets on a fresh worker (libcarla's client never drops an
        actor from its cache), every ``restart_server_every`` on a relaunched server too."""
        self._resets += 1
        fresh_worker, relaunch = self.config.restart_due(self._resets)
        if fresh_worker and self._lost is None:
            log.info("CARLA worker: a fresh one%s after %d resets", " on a relaunched server" * relaunch, self._resets)
            self._close_worker()
            self._restart((), relaunch)
        self._call("reset", seed)

    # ------------------------------------------------------------------ the World API, forwarded
    def spawn_vehicle(self, pose: Pose, *, role: str = "background", route: Route | None = None,
                      behavior: Behavior | None = None, speed: float = 0.0,
                      extent: tuple[float, float] = (2.4, 1.05)) -> int:
        return self._call("spawn_vehicle", pose, role=role, route=route, behavior=behavior, speed=speed,
                          extent=extent)

    def spawn_traffic(self, count: int, behavior: Behavior | None = None,
                      exclude_near: np.ndarray | None = None, exclude_radius: float = 0.0) -> list[int]:
        return self._call("spawn_traffic", count, behavior, exclude_near, exclude_radius)

    def destroy(self, actor_id: int) -> None:
        self._call("destroy", actor_id)

    def apply_control(self, actor_id: int, control: carla.VehicleControl) -> None:
        self._call("apply_control", actor_id, {name: getattr(control, name) for name in CONTROL_FIELDS})

    def tick(self) -> int:
        return self._call("tick")

    def vehicles(self) -> VehicleArrays:
        return self._call("vehicles")

    def route_of(self, actor_id: int) -> Route | None:
        return self._call("route_of", actor_id)

    def route_progress(self, actor_id: int) -> float:
        return self._call("route_progress", actor_id)

    def intended_route(self, actor_id: int) -> tuple[Route, float] | None:
        return self._call("intended_route", actor_id)

    def traffic_lights(self) -> TrafficLightStates:
        return self._call("traffic_lights")

    def set_traffic_light_timing(self, green: float, yellow: float, red: float | None = None,
                                 junction_id: int | None = None) -> None:
        self._call("set_traffic_light_timing", green, yellow, red, junction_id)

    def collisions(self, actor_id: int) -> list[CollisionEvent]:
        return self._call("collisions", actor_id)

    def lane_invasions(self, actor_id: int) -> list[LaneInvasionEvent]:
        return self._call("lane_invasions", actor_id)

    def is_off_road(self, actor_id: int) -> bool:
        return self._call("is_off_road", actor_id)

    def attach_sensor(self, name: str, spec: SensorSpec, actor_id: int | None = None) -> int:
        return self._call("attach_sensor", name, spec, actor_id)

    def sensor_data(self, name: str) -> np.ndarray:
        return self._call("sensor_data", name)
