"""CarlaWorld: the World interface on a running CARLA 0.9.x server.

The server runs in synchronous mode with a fixed step, so one ``tick`` is one ``dt``. Vehicles
are spawned and destroyed in batches; background vehicles drive on the Traffic Manager along the
routes this backend plans on the shared RoadMap. Every actor spawned here is recorded and
destroyed on ``reset`` and ``close`` (which also runs at interpreter exit if never called), so
nothing accumulates on the server across resets and no server is left synchronous; only the ego
and its sensors outlive a reset, stopped, to be teleported to the next episode's start (sensors
created and destroyed every episode leak on CARLA's server). When
the server stops answering, calls raise CarlaServerLost; ``reconnect`` brings the world back.
"""
from __future__ import annotations

import atexit
import logging
import math
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import carla
import numpy as np

from cardreamer.config import CarlaServer
from cardreamer.geometry import from_ego_frame
from cardreamer.roadmap import MapError, RoadMap, Route, SpawnPoints, random_route
from cardreamer.world.api import (
    Behavior,
    CollisionEvent,
    LaneInvasionEvent,
    Pose,
    SensorSpec,
    SensorWorld,
    SpawnError,
    TrafficLightStates,
    VehicleArrays,
    World,
    WorldError,
)
from cardreamer.world.carla_backend import launcher
from cardreamer.world.carla_backend.connection import ClientFactory, claim_server, connect, release_server
from cardreamer.world.carla_backend.errors import CarlaServerLost, is_server_lost
from cardreamer.world.carla_backend.heights import LaneHeights
from cardreamer.world.carla_backend.lights import LightTable
from cardreamer.world.carla_backend.progress import advance_progress
from cardreamer.world.carla_backend.sensors import EventSensors, SensorManager, impact_speed
from cardreamer.world.carla_backend.snapshot import Shape, ShapeCache, vehicle_arrays
from cardreamer.world.carla_backend.traffic import (
    apply_behavior,
    check_tm_port,
    choose_tm_port,
    set_path,
    start_traffic_manager,
    tm_intention,
    tm_path,
)

log = logging.getLogger(__name__)

SpawnActor = carla.command.SpawnActor
"""The batch spawn command (a module attribute so tests can stand in for it: it needs a server blueprint)."""

SPAWN_LIFT = 0.5            # m above the road surface, so a new vehicle does not touch the ground
SPAWN_CLEARANCE = 8.0       # m between the centres of background vehicles spawned together
LEVEL_GAP = 3.0             # m of height that separates roads crossing over each other
LOAD_TIMEOUT = 120.0        # s allowed for loading a map on the server
ROUTE_END_MARGIN = 3.0      # m before a route's end at which a vehicle counts as arrived
NEXT_ROUTE_LENGTH = 300.0   # m of a new random route for vehicles whose route ended
PHYSICS_SUBSTEP = 0.01     # s, CARLA's default and recommended longest physics substep
MAX_SUBSTEPS = 16          # Unreal Engine's limit on physics substeps per frame
DEFAULT_MASS = 1800.0       # kg, for an impact on a vehicle whose mass was never read (a car's)
GENERATION = {"vertex_distance": 2.0, "max_road_length": 50.0, "wall_height": 1.0, "additional_width": 0.6,
              "smooth_junctions": True, "enable_mesh_visibility": True}
"""Mesh generation for a task's own .xodr (``client.generate_opendrive_world``)."""


@dataclass
class _Vehicle:
    """Bookkeeping of one vehicle this world spawned."""

    actor: Any
    role: str
    route: Route | None
    behavior: Behavior
    spawn_z: float        # height of its spawn transform: where it is until a tick's snapshot shows it
    progress: float = 0.0


@dataclass
class _SpawnRequest:
    """One vehicle to spawn; ``lane``/``s`` when the spot is a known lane position (spawn points)."""

    pose: Pose
    role: str = "background"
    route: Route | None = None
    behavior: Behavior = field(default_factory=Behavior)
    speed: float = 0.0
    lane: int | None = None
    s: float = 0.0


def _town_name(path_or_name: str) -> str:
    return path_or_name.rsplit("/", 1)[-1]


def load_world(client: Any, map_name_or_xodr: str) -> Any:
    """Load a CARLA town by name, or a task's own .xodr (a town's .xodr loads that town)."""
    towns = sorted({_town_name(m) for m in client.get_available_maps()})
    path = Path(map_name_or_xodr).expanduser()
    if path.suffix == ".xodr":
        if not path.is_file():
            raise MapError(f"map file {path} does not exist")
        if path.stem in towns:
            return _load_town(client, path.stem)
        opendrive = path.read_text(encoding="utf-8")
        current = client.get_world()
        if current.get_map().to_opendrive() == opendrive:
            return current  # generated already (by an earlier world, or before a reconnect): generating takes long
        log.info("generating a CARLA world from %s", path)
        return client.generate_opendrive_world(opendrive, carla.OpendriveGenerationParameters(**GENERATION))
    if map_name_or_xodr not in towns:
        raise MapError(f"the CARLA server has no map {map_name_or_xodr!r}; it has {', '.join(towns)} "
                       f"(or give a path to an .xodr file)")
    return _load_town(client, map_name_or_xodr)


def _load_town(client: Any, town: str) -> Any:
    world = client.get_world()
    if _town_name(world.get_map().name) == town:
        return world  # already loaded: reloading takes tens of seconds
    log.info("loading %s on the CARLA server", town)
    return client.load_world(town)


def substeps(dt: float) -> tuple[float, int]:
    """(max_substep_delta_time, max_substeps) whose product covers a step of ``dt`` s, as CARLA requires
    (``fixed_delta_seconds <= max_substep_delta_time * max_substeps``): CARLA's defaults (0.01 s, 10) up to
    dt = 0.1 s, more substeps up to MAX_SUBSTEPS, then longer ones (coarser physics)."""
    count = min(MAX_SUBSTEPS, max(10, math.ceil(round(dt / PHYSICS_SUBSTEP, 9))))
    return max(PHYSICS_SUBSTEP, dt / count), count


def clipped_control(control: carla.VehicleControl) -> carla.VehicleControl:
    """The control with throttle and brake in [0, 1] and steer in [-1, 1] (as CARLA expects)."""
    return carla.VehicleControl(throttle=float(np.clip(control.throttle, 0.0, 1.0)),
                                steer=float(np.clip(control.steer, -1.0, 1.0)),
                                brake=float(np.clip(control.brake, 0.0, 1.0)), hand_brake=bool(control.hand_brake),
                                reverse=bool(control.reverse), manual_gear_shift=bool(control.manual_gear_shift),
                                gear=int(control.gear))


class CarlaWorld(World, SensorWorld):
    """A World on a CARLA server: ``config`` says where, ``map_name_or_xodr`` which map.

    ``road_map`` may be given when the caller already parsed the same OpenDRIVE (so its lane
    indices and signals, e.g. a task's stop signs, are shared); otherwise the server's map is
    wrapped. ``client_factory`` builds the client (a stand-in in tests).
    """

    def __init__(self, config: CarlaServer, map_name_or_xodr: str, dt: float = 0.1, seed: int = 0, *,
                 road_map: RoadMap | None = None, vehicle_blueprint: str = "vehicle.tesla.model3",
                 sensor_timeout: float = 10.0, client_factory: ClientFactory = carla.Client):
        self.config = config
        self.map_request = str(map_name_or_xodr)
        self.dt = float(dt)
        self.vehicle_blueprint = vehicle_blueprint
        self._client_factory = client_factory
        self._seed = seed
        self._launched: subprocess.Popen | None = None
        self._original_settings: carla.WorldSettings | None = None
        self._closed = False
        self._lost = False
        self._resets = 0
        self._survivors: list[int] = []  # actors of this world left on the server by a loss, until reconnected
        self._box_offset = (0.0, 0.0)  # the blueprint's box centre from its origin, learnt from the first vehicle
        self.road_map = road_map
        self._spawn_points: SpawnPoints | None = None
        self.heights: LaneHeights | None = None
        self.sensors = SensorManager(sensor_timeout)
        self.events = EventSensors(sensor_timeout)
        self.shapes = ShapeCache()
        self._clear_bookkeeping()
        claim_server(config)
        try:
            check_tm_port(config)
            self._connect()
        except BaseException:
            release_server(config)
            raise
        self.rng = np.random.default_rng(seed)
        atexit.register(self.close)  # a client that exits without close() must not leave the server synchronous

    # ------------------------------------------------------------------ connection
    def _connect(self) -> None:
        self.client, self.server_version = connect(self.config, self._client_factory)
        with self._server_calls("loading the map"):
            self.client.set_timeout(max(self.config.timeout, LOAD_TIMEOUT))
            self.world = load_world(self.client, self.map_request)
            self.client.set_timeout(self.config.timeout)
            self._blueprint = self._find_blueprint(self.vehicle_blueprint)
            if self._original_settings is None:  # kept across reconnects: the settings before this world
                self._original_settings = self._settings_to_restore()
            settings = self.world.get_settings()
            settings.synchronous_mode = True
            settings.fixed_delta_seconds = self.dt
            settings.substepping = True
            settings.max_substep_delta_time, settings.max_substeps = substeps(self.dt)
            self.world.apply_settings(settings)
            try:
                self._prepare()
            except Exception:
                self._shut_down_tm()
                self.world.apply_settings(self._original_settings)  # never leave a server waiting for ticks
                raise
        log.info("CARLA %s at %s:%d, map %s, dt %.3f s, Traffic Manager on port %d", self.server_version,
                 self.config.host, self.config.port, self.road_map.name, self.dt, self.tm_port)

    def _settings_to_restore(self) -> carla.WorldSettings:
        """The server's settings now, asynchronous: a synchronous server was left so by a client that died
        (nobody ticks it once this world closes)."""
        settings = self.world.get_settings()
        if settings.synchronous_mode:
            log.warning("the CARLA server at %s:%d was left in synchronous mode (by a client that died?); it is "
                        "left asynchronous on close", self.config.host, self.config.port)
            settings.synchronous_mode = False
        return settings

    def _prepare(self) -> None:
        """Traffic Manager, road map, lights, and a first tick of the synchronous world."""
        self.tm_port = choose_tm_port(self.config)
        self.tm = start_traffic_manager(self.client, self.tm_port, self._seed)
        if self.road_map is None:
            carla_map = self.world.get_map()
            self.road_map = RoadMap(carla_map, _town_name(carla_map.name) or Path(self.map_request).stem)
        self.heights = self.heights or LaneHeights(self.road_map)
        self.lights = LightTable(self.world, self.road_map, self.heights)
        self.frame = self.world.tick()
        self._snapshot = self.world.get_snapshot()

    def _find_blueprint(self, blueprint_id: str) -> Any:
        try:
            return self.world.get_blueprint_library().find(blueprint_id)
        except IndexError:
            raise WorldError(f"the CARLA server has no vehicle blueprint {blueprint_id!r}; "
                             f"use one of its vehicle.* blueprints, e.g. vehicle.tesla.model3") from None

    @contextmanager
    def _server_calls(self, what: str) -> Iterator[None]:
        """Turn libcarla's time-outs into CarlaServerLost (and refuse calls once the server is lost)."""
        self._require_server(what)
        try:
            yield
        except RuntimeError as exc:
            if not is_server_lost(exc):
                raise
            self._lost = True
            raise CarlaServerLost(
                f"the CARLA server at {self.config.host}:{self.config.port} stopped answering during {what}: {exc}. "
                f"Call world.reconnect() (it relaunches env.world.carla.launch_command when set) and reset the env"
            ) from exc

    def _require_server(self, what: str) -> None:
        if self._lost:
            raise CarlaServerLost(f"the CARLA server at {self.config.host}:{self.config.port} was lost; "
                                  f"call reconnect() before {what}")

    def recover(self) -> None:
        self.reconnect()

    def reconnect(self, relaunch: bool | None = None) -> None:
        """Connect again after CarlaServerLost; relaunch the server first (default: when a launch command is set).

        Bookkeeping starts empty; actors that survived on a still-running server are destroyed.
        The caller then calls ``reset`` for a fresh episode.
        """
        relaunch = bool(self.config.launch_command) if relaunch is None else relaunch
        self._survivors += self._tracked_actor_ids()  # kept over failed attempts, removed once connected
        self._forget_listeners()
        self._shut_down_tm()  # left in the process's TM registry, the next tick would tick it: std::terminate
        self._clear_bookkeeping()
        self.shapes = ShapeCache()  # a restarted server hands out the same ids again
        self._lost = True  # until connected: no call may reach a server without this world's Traffic Manager
        if relaunch:
            if self._launched is not None:
                launcher.stop(self._launched)
            self._launched = launcher.launch_from_config(self.config, client_factory=self._client_factory)
            self._survivors = []  # a relaunched server hands the old ids to its own actors
        self._lost = False
        try:
            self._connect()
        except BaseException:
            self._lost = True
            raise
        survivors, self._survivors = self._survivors, []
        self.remove_leftovers(survivors)

    def _fresh_client(self, relaunch: bool) -> None:
        """Destroy this world's actors and connect with a new client (libcarla's client caches every actor it has
        seen and never drops one), first relaunching the server when ``relaunch``."""
        log.info("CARLA world: a fresh client%s after %d resets", " on a relaunched server" * relaunch, self._resets)
        with self._server_calls("reset"):
            self._forget_listeners()
            self._destroy_batch(self._tracked_actor_ids())
            self._clear_bookkeeping()
        self.reconnect(relaunch)

    def remove_leftovers(self, actor_ids: list[int] | tuple[int, ...]) -> None:
        """Destroy the vehicles and sensors among ``actor_ids`` that an earlier client of this server left behind.

        Other actors with those ids (a restarted server's traffic lights) are left alone; sensors go first.
        """
        if not actor_ids:
            return
        with self._server_calls("removing an earlier client's actors"):
            actors = [a for a in self.world.get_actors(list(actor_ids))
                      if str(a.type_id).startswith(("sensor.", "vehicle."))]
            self._destroy_batch([a.id for a in sorted(actors, key=lambda a: not str(a.type_id).startswith("sensor."))])

    def _shut_down_tm(self) -> None:
        """Stop this world's Traffic Manager and take it out of the process's TM registry (frees its port)."""
        tm, self.tm = getattr(self, "tm", None), None
        if tm is None:
            return
        try:
            tm.shut_down()
        except RuntimeError as exc:  # nothing more can be done for a TM whose server is gone
            log.debug("shutting the Traffic Manager down: %s", exc)

    # ------------------------------------------------------------------ bookkeeping
    def _clear_bookkeeping(self) -> None:
        self._vehicles: dict[int, _Vehicle] = {}
        self._controls: dict[int, carla.VehicleControl] = {}
        self._pending: dict[int, tuple[Pose, float, Shape]] = {}   # spawned since the last tick
        self._hidden: set[int] = set()                             # destroyed since the last tick
        self._sensor_parent: dict[int, int] = {}                   # sensor actor id -> vehicle id
        self._parked: dict[int, _Vehicle] = {}                     # egos kept from the last episode, not yet reused
        self._collisions: dict[int, list[CollisionEvent]] = {}
        self._invasions: dict[int, list[LaneInvasionEvent]] = {}
        self._arrays: VehicleArrays | None = None
        self._intentions: dict[int, Route | None] = {}             # background routes read from the TM this tick

    def _tracked_actor_ids(self) -> list[int]:
        """Every actor this world spawned and still owns: sensors first, then vehicles."""
        return list(self._sensor_parent) + list(self._vehicles) + list(self._parked)

    def _forget_listeners(self) -> None:
        for stop in (self.sensors.clear, self.events.clear):
            try:
                stop()
            except RuntimeError as exc:  # a lost server cannot unsubscribe; the streams are gone anyway
                log.debug("stopping sensors: %s", exc)

    def _destroy_batch(self, actor_ids: list[int]) -> None:
        if not actor_ids:
            return
        responses = self.client.apply_batch_sync([carla.command.DestroyActor(i) for i in actor_ids], False)
        failed = [(i, r.error) for i, r in zip(actor_ids, responses) if r.error]
        if failed:
            log.debug("destroying %d actors: %s", len(failed), failed[:3])

    # ------------------------------------------------------------------ World API: lifecycle
    def reset(self, seed: int) -> None:
        self._resets += 1
        fresh_client, relaunch = self.config.restart_due(self._resets)
        if fresh_client:
            self._fresh_client(relaunch)
        with self._server_calls("reset"):
            self._park_egos()
            self._seed = seed
            self.rng = np.random.default_rng(seed)
            self.tm.set_random_device_seed(seed)
            self.world.reset_all_traffic_lights()
            self._advance()

    def _park_egos(self) -> None:
        """End the episode: background vehicles and their sensors are destroyed; ego vehicles are stopped where they
        are (brakes on, no velocity) and hidden, with the sensors attached to them this episode, until the next ego
        spawn teleports one to its start. Spawning and destroying sensors every episode leaks on CARLA's server
        (carla #7156, #7413, #7987) and grows the client's actor cache."""
        kept = {i: v for i, v in {**self._parked, **self._vehicles}.items() if v.role == "ego"}
        doomed = self.sensors.keep(set(kept))
        for parent in [p for p in self.events.actors if p not in kept]:
            doomed += self.events.detach(parent)
        for sensor in doomed:
            sensor.stop()
        doomed_ids = {a.id for a in doomed}
        self._destroy_batch(sorted(doomed_ids) + [i for i in self._vehicles if i not in kept])
        self._apply_checked([command for i in kept for command in (
            carla.command.ApplyVehicleControl(i, carla.VehicleControl(brake=1.0)),
            carla.command.ApplyTargetVelocity(i, carla.Vector3D()),
            carla.command.ApplyTargetAngularVelocity(i, carla.Vector3D()))])
        sensor_parent = {s: p for s, p in self._sensor_parent.items() if s not in doomed_ids}
        self._clear_bookkeeping()
        self._sensor_parent, self._parked = sensor_parent, kept

    def _apply_checked(self, commands: list[Any]) -> list[str]:
        """Run commands in one batch; the error of each (empty when it worked)."""
        if not commands:
            return []
        return [r.error for r in self.client.apply_batch_sync(commands, False)]

    def _reuse_ego(self, request: _SpawnRequest) -> int | None:
        """Teleport a kept ego to ``request``'s start, at rest (or at its speed) with neutral controls; None when no
        kept ego is alive (one destroyed meanwhile is forgotten, its sensors destroyed: a new one is spawned)."""
        while self._parked:
            actor_id, vehicle = self._parked.popitem()
            shape = self.shapes.shapes.get(actor_id)
            pose, speed = request.pose, request.speed
            velocity = carla.Vector3D(x=speed * float(np.cos(pose.yaw)), y=speed * float(np.sin(pose.yaw)), z=0.0)
            errors = ["gone"] if shape is None or self._snapshot.find(actor_id) is None else self._apply_checked([
                carla.command.ApplyTransform(actor_id, self._origin_transform(request, shape.offset)),
                carla.command.ApplyTargetVelocity(actor_id, velocity),
                carla.command.ApplyTargetAngularVelocity(actor_id, carla.Vector3D()),
                carla.command.ApplyVehicleControl(actor_id, carla.VehicleControl())])
            if any(errors):
                log.info("the kept ego %d is gone (%s); spawning a new one", actor_id, next(e for e in errors if e))
                self._forget_vehicle(actor_id)
                continue
            self._vehicles[actor_id] = _Vehicle(vehicle.actor, "ego", request.route, request.behavior,
                                                self._spawn_height(request))
            self._pending[actor_id] = (pose, speed, shape)
            self._collisions.pop(actor_id, None)
            self._invasions.pop(actor_id, None)
            self.events.restart(self.world, actor_id, self.frame + 1)
            return actor_id
        return None

    def _forget_vehicle(self, actor_id: int) -> None:
        """Destroy a vehicle and its sensors and drop its bookkeeping."""
        sensors = [s for s, parent in self._sensor_parent.items() if parent == actor_id]
        for sensor in self.events.detach(actor_id) + self.sensors.detach(actor_id):
            sensor.stop()
        self._destroy_batch(sensors + [actor_id])
        for sensor in sensors:
            del self._sensor_parent[sensor]
        for table in (self._vehicles, self._parked, self._controls, self._pending):
            table.pop(actor_id, None)
        self._arrays = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        try:
            if not self._lost:
                with self._server_calls("close"):
                    self._forget_listeners()
                    self._destroy_batch(self._tracked_actor_ids())
                    self.tm.set_synchronous_mode(False)
                    self.world.apply_settings(self._original_settings)
        except CarlaServerLost as exc:
            log.warning("closing: %s", exc)
        finally:
            # Lost server or not: a TM left in the process's registry is ticked by any later world's tick.
            self._shut_down_tm()
            self._clear_bookkeeping()
            release_server(self.config)
            if self._launched is not None:
                launcher.stop(self._launched)
                self._launched = None

    # ------------------------------------------------------------------ World API: vehicles
    def spawn_vehicle(self, pose: Pose, *, role: str = "background", route: Route | None = None,
                      behavior: Behavior | None = None, speed: float = 0.0,
                      extent: tuple[float, float] = (2.4, 1.05)) -> int:
        """Spawn one vehicle (``extent`` is ignored: CARLA's blueprint fixes the size)."""
        result = self._spawn([_SpawnRequest(pose, role, route, behavior or Behavior(), speed)])[0]
        if isinstance(result, str):
            raise SpawnError(f"cannot spawn a {role} vehicle at ({pose.x:.1f}, {pose.y:.1f}): {result}")
        return result

    def spawn_traffic(self, count: int, behavior: Behavior | None = None,
                      exclude_near: np.ndarray | None = None, exclude_radius: float = 0.0) -> list[int]:
        """Up to ``count`` autopilot vehicles at random free spawn points (one batch), each with a random route."""
        if self._spawn_points is None:
            self._spawn_points = self.road_map.spawn_points()
        points = self._spawn_points
        keep = np.ones(len(points.xy), dtype=bool)
        if exclude_near is not None:
            keep &= np.linalg.norm(points.xy - np.asarray(exclude_near, float).reshape(1, 2), axis=1) > exclude_radius
        occupied = self.vehicles()
        taken_xy = list(occupied.xy)
        taken_z = [self._height(i) for i in occupied.ids.tolist()]
        chosen = []
        for i in self.rng.permutation(np.flatnonzero(keep)):
            if len(chosen) == count:
                break
            xy = points.xy[i]
            z = self.heights.at(int(points.lane[i]), float(points.s[i]))
            if taken_xy and np.any((np.linalg.norm(np.asarray(taken_xy) - xy, axis=1) < SPAWN_CLEARANCE)
                                   & (np.abs(np.asarray(taken_z) - z) < LEVEL_GAP)):
                continue  # another vehicle there, or chosen already (bridges: only at the same level)
            chosen.append(i)
            taken_xy.append(xy)
            taken_z.append(z)
        requests = [_SpawnRequest(Pose(float(points.xy[i, 0]), float(points.xy[i, 1]), float(points.yaw[i])),
                                  behavior=behavior or Behavior(), lane=int(points.lane[i]), s=float(points.s[i]))
                    for i in chosen]
        return [r for r in self._spawn(requests) if not isinstance(r, str)]

    def _spawn(self, requests: list[_SpawnRequest]) -> list[int | str]:
        """Spawn in one batch; each result is the new actor id or why it failed.

        Background vehicles without a route get a random one, so every autopilot vehicle has an intention.
        """
        self._require_server("spawning vehicles")
        results: list[int | str] = [""] * len(requests)
        commands, slots = [], []
        for k, request in enumerate(requests):
            if request.role not in ("ego", "background"):
                raise WorldError(f"vehicle role {request.role!r} is not valid; use 'ego' or 'background'")
            if request.behavior.on_route_end not in ("continue", "destroy"):
                raise WorldError(f"Behavior.on_route_end must be 'continue' or 'destroy', "
                                 f"got {request.behavior.on_route_end!r}")
            if request.lane is None:
                try:
                    request.lane, request.s, _ = self.road_map.locate(np.array([request.pose.x, request.pose.y]),
                                                                      max_distance=0.0)
                except MapError as exc:
                    results[k] = f"off every driving lane ({exc})"
                    continue
            if request.route is None and request.role == "background":
                request.route = random_route(self.road_map, self.rng, request.lane, request.s, NEXT_ROUTE_LENGTH)
            if request.role == "ego" and self._parked:
                with self._server_calls("moving the kept ego"):
                    reused = self._reuse_ego(request)
                if reused is not None:
                    results[k] = reused
                    continue
            commands.append(self._spawn_command(request))
            slots.append(k)
        self._arrays = None
        if not commands:
            return results
        with self._server_calls("spawning vehicles"):
            responses = self.client.apply_batch_sync(commands, False)
            spawned = {k: r.actor_id for k, r in zip(slots, responses) if not r.error}
            for k, r in zip(slots, responses):
                results[k] = r.error or r.actor_id
            # a chained command (autopilot, velocity) can fail after the vehicle itself was created
            self._destroy_batch([r.actor_id for r in responses if r.error and r.actor_id])
            actors = {a.id: a for a in self.world.get_actors(list(spawned.values()))} if spawned else {}
            self.shapes.remember(actors.values())
            self._place_boxes(requests, spawned)
            for k, actor_id in spawned.items():
                request, actor = requests[k], actors[actor_id]
                self._vehicles[actor_id] = _Vehicle(actor, request.role, request.route, request.behavior,
                                                    self._spawn_height(request))
                self._pending[actor_id] = (request.pose, request.speed, self.shapes.shapes[actor_id])
                if request.role == "ego":
                    for sensor_id in self.events.attach(self.world, actor):
                        self._sensor_parent[sensor_id] = actor_id
                else:
                    apply_behavior(self.tm, actor, request.behavior)
                    self._send_route(actor, request.route)
        self._arrays = None
        return results

    def _origin_transform(self, request: _SpawnRequest, offset: tuple[float, float]) -> carla.Transform:
        """The actor transform that puts a box ``offset`` ahead/right of the origin on the requested pose (the box
        centre, which is what ``vehicles()`` reports)."""
        pose = request.pose
        x, y = from_ego_frame(-np.asarray(offset, float)[None], np.array([pose.x, pose.y]), pose.yaw)[0]
        transform = Pose(float(x), float(y), pose.yaw).to_transform()
        transform.location.z = self._spawn_height(request)
        return transform

    def _place_boxes(self, requests: list[_SpawnRequest], spawned: dict[int, int]) -> None:
        """Move vehicles spawned with another box offset than their blueprint's (the first of a blueprint, whose box
        is known only once spawned) so that their box centre is on the requested pose before the first tick."""
        moves = []
        for k, actor_id in spawned.items():
            offset = self.shapes.shapes[actor_id].offset
            if offset != self._box_offset:
                moves.append(carla.command.ApplyTransform(actor_id, self._origin_transform(requests[k], offset)))
        if spawned:
            self._box_offset = self.shapes.shapes[next(iter(spawned.values()))].offset
        if moves:
            self.client.apply_batch_sync(moves, False)

    def _spawn_command(self, request: _SpawnRequest) -> Any:
        pose, speed = request.pose, request.speed
        self._blueprint.set_attribute("role_name", "hero" if request.role == "ego" else "autopilot")
        transform = self._origin_transform(request, self._box_offset)
        command = SpawnActor(self._blueprint, transform)
        if request.role == "background":
            if self.tm is None:  # apply_batch_sync would register it with a new TM made on the spot (libcarla)
                raise WorldError(f"no Traffic Manager on port {self.tm_port} for this world's vehicles (it was shut "
                                 f"down); reconnect() before spawning traffic")
            command = command.then(carla.command.SetAutopilot(carla.command.FutureActor, True, self.tm_port))
        if speed > 0:
            velocity = carla.Vector3D(x=speed * float(np.cos(pose.yaw)), y=speed * float(np.sin(pose.yaw)), z=0.0)
            command = command.then(carla.command.ApplyTargetVelocity(carla.command.FutureActor, velocity))
        return command

    def _spawn_height(self, request: _SpawnRequest) -> float:
        return self.heights.at(request.lane, request.s) + SPAWN_LIFT

    def _send_route(self, actor: Any, route: Route) -> None:
        set_path(self.tm, actor, *tm_path(route, self.road_map, self.heights))

    def _height(self, actor_id: int) -> float:
        """The vehicle's height in the last tick's snapshot (its spawn height before it was ticked): map queries
        at this height match the deck it drives on where roads cross over each other."""
        actor = None if actor_id in self._pending else self._snapshot.find(actor_id)
        if actor is not None:
            return float(actor.get_transform().location.z)
        return self._vehicles[actor_id].spawn_z

    def destroy(self, actor_id: int) -> None:
        self._vehicle(actor_id)
        with self._server_calls("destroying a vehicle"):
            self._forget_vehicle(actor_id)
        self._hidden.add(actor_id)

    def _vehicle(self, actor_id: int) -> _Vehicle:
        vehicle = self._vehicles.get(actor_id)
        if vehicle is None:
            raise WorldError(f"no vehicle with id {actor_id} was spawned by this world "
                             f"({len(self._vehicles)} alive: {sorted(self._vehicles)[:10]})")
        return vehicle

    def apply_control(self, actor_id: int, control: carla.VehicleControl) -> None:
        if self._vehicle(actor_id).role != "ego":
            raise WorldError(f"vehicle {actor_id} is driven by the Traffic Manager; only ego vehicles take controls")
        self._controls[actor_id] = clipped_control(control)

    # ------------------------------------------------------------------ World API: time
    def tick(self) -> int:
        with self._server_calls("tick"):
            if self._controls:
                self.client.apply_batch([carla.command.ApplyVehicleControl(i, c) for i, c in self._controls.items()])
                self._controls.clear()
            self._advance()
            self._follow_routes()
        return self.frame

    def _advance(self) -> None:
        """One world.tick(): new snapshot, the tick's sensor readings and events."""
        self.frame = self.world.tick()
        self._snapshot = self.world.get_snapshot()
        self._pending.clear()
        self._hidden.clear()
        self._intentions.clear()
        self.shapes.update(self.world, [a.id for a in self._snapshot])
        self._arrays = None
        self.sensors.collect(self.frame)
        self._gather_events()

    def _gather_events(self) -> None:
        collisions, invasions = self.events.drain(self.frame)
        self._collisions, self._invasions = {}, {}
        for raw in collisions:
            own, other = self.shapes.shapes.get(raw.actor_id), self.shapes.shapes.get(raw.other_id)
            own_mass = own.mass if own is not None else DEFAULT_MASS
            other_mass = None if raw.other_id == -1 else (other.mass if other is not None else own_mass)
            event = CollisionEvent(raw.frame, raw.actor_id, raw.other_id, impact_speed(raw.impulse, own_mass, other_mass))
            self._collisions.setdefault(raw.actor_id, []).append(event)
        for event in invasions:
            self._invasions.setdefault(event.actor_id, []).append(event)

    def _follow_routes(self) -> None:
        """Update route progress; give arrived background vehicles a new route, or remove them."""
        with_route = [(i, v) for i, v in self._vehicles.items() if v.route is not None]
        if not with_route:
            return
        arrays = self.vehicles()
        row = {actor_id: k for k, actor_id in enumerate(arrays.ids.tolist())}
        with_route = [(i, v) for i, v in with_route if i in row]
        if not with_route:
            return
        xy = arrays.xy[[row[i] for i, _ in with_route]]
        progress = advance_progress([v.route for _, v in with_route], np.array([v.progress for _, v in with_route]), xy)
        arrived = []
        for (actor_id, vehicle), p, at in zip(with_route, progress.tolist(), xy):
            vehicle.progress = p
            if vehicle.role == "background" and p >= vehicle.route.length - ROUTE_END_MARGIN:
                arrived.append((actor_id, vehicle, at))
        for actor_id, vehicle, xy in arrived:
            if vehicle.behavior.on_route_end == "destroy":
                self.destroy(actor_id)
                continue
            try:
                lane, s, _ = self.road_map.locate(xy, z=self._height(actor_id))
            except MapError:
                continue  # off the lanes for a moment (turning); try again next tick
            vehicle.route = random_route(self.road_map, self.rng, lane, s, NEXT_ROUTE_LENGTH)
            vehicle.progress = 0.0
            self._send_route(vehicle.actor, vehicle.route)

    # ------------------------------------------------------------------ World API: state
    def vehicles(self) -> VehicleArrays:
        if self._arrays is None:
            egos = {i for i, v in self._vehicles.items() if v.role == "ego"}
            self._arrays = vehicle_arrays(self._snapshot, self.shapes, egos, self._hidden | set(self._parked),
                                          self._pending)
        return self._arrays

    def route_of(self, actor_id: int) -> Route | None:
        return self._vehicle(actor_id).route

    def route_progress(self, actor_id: int) -> float:
        return self._vehicle(actor_id).progress

    def intended_route(self, actor_id: int) -> tuple[Route, float] | None:
        """A background vehicle's route as its Traffic Manager will drive it, from where it is now (progress 0; read
        once per tick, see ``tm_intention``), else the planned route (an ego's, or where the TM cannot tell)."""
        vehicle = self._vehicle(actor_id)
        if vehicle.role == "background" and actor_id not in self._pending:
            if actor_id not in self._intentions:
                v = self.vehicles()
                with self._server_calls("reading the Traffic Manager's actions"):
                    self._intentions[actor_id] = tm_intention(self.tm, vehicle.actor, v.xy[v.row(actor_id)],
                                                              self.road_map, vehicle.route, vehicle.progress)
            if self._intentions[actor_id] is not None:
                return self._intentions[actor_id], 0.0
        return super().intended_route(actor_id)

    def traffic_lights(self) -> TrafficLightStates:
        return self.lights.states()

    def set_traffic_light_timing(self, green: float, yellow: float, red: float | None = None,
                                 junction_id: int | None = None) -> None:
        with self._server_calls("setting light timing"):
            self.lights.set_timing(green, yellow, red, junction_id)

    def collisions(self, actor_id: int) -> list[CollisionEvent]:
        self._vehicle(actor_id)
        return list(self._collisions.get(actor_id, ()))

    def lane_invasions(self, actor_id: int) -> list[LaneInvasionEvent]:
        self._vehicle(actor_id)
        return list(self._invasions.get(actor_id, ()))

    def is_off_road(self, actor_id: int) -> bool:
        """Whether the vehicle's centre is off every driving lane."""
        v = self.vehicles()
        x, y = v.xy[v.row(actor_id)]
        location = carla.Location(x=float(x), y=float(y), z=self._height(actor_id))
        waypoint = self.road_map.carla_map.get_waypoint(location, project_to_road=False,
                                                        lane_type=carla.LaneType.Driving)
        return waypoint is None

    # ------------------------------------------------------------------ sensors for handlers
    def attach_sensor(self, name: str, spec: SensorSpec, actor_id: int | None = None) -> int:
        """Mount a camera or lidar on a vehicle (default: the only ego) and tick once for its first reading.

        The spec's offsets are from the vehicle's bounding-box centre (the position ``vehicles()`` reports).
        """
        if actor_id is None:
            egos = [i for i, v in self._vehicles.items() if v.role == "ego"]
            if len(egos) != 1:
                raise WorldError(f"attach_sensor needs actor_id: there are {len(egos)} ego vehicles")
            actor_id = egos[0]
        vehicle = self._vehicle(actor_id)
        with self._server_calls(f"attaching sensor {name!r}"):
            sensor_id = self.sensors.reclaim(name, spec, actor_id, since=self.frame + 1)  # kept with its ego
            if sensor_id is None:
                stale = self.sensors.unclaimed(name)  # kept, but now wanted elsewhere or otherwise
                if stale is not None:
                    self._destroy_batch([stale.id])
                    del self._sensor_parent[stale.id]
                sensor_id = self.sensors.attach(self.world, name, spec, vehicle.actor, self.dt,
                                                self.shapes.shapes[actor_id].offset)
                self._sensor_parent[sensor_id] = actor_id
        self.tick()  # its first reading of this episode (a kept sensor's frames before this one are not returned)
        return sensor_id

    def sensor_data(self, name: str) -> np.ndarray:
        """The reading of sensor ``name`` for the current frame: (H, W, 3) uint8 RGB or (N, 4) float32 points."""
        return self.sensors.data(name, self.frame)

