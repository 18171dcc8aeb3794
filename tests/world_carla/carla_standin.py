"""Stand-ins for the server side of CARLA: Client, World, actors, sensors, Traffic Manager.

There is no CARLA server on the test machine, so these classes play its part with the call
signatures and return types of the carla 0.9.16 client API. carla's value types stay real:
Transform, Location, Rotation, Vector3D, BoundingBox, VehicleControl, WorldSettings,
TrafficLightState, the commands DestroyActor / SetAutopilot / ApplyVehicleControl /
ApplyTargetVelocity, and the Map (a real ``carla.Map`` parsed from the town's .xodr, as the
server would send it). Only ``carla.command.SpawnActor`` is stood in for (``SpawnCommand``),
because it needs a blueprint object that only a server can hand out.

Motion is deliberately simple and deterministic: ego vehicles follow their controls with a
kinematic bicycle, autopilot vehicles drive along their Traffic Manager's waypoint buffer at the
desired speed (planned as CARLA's TM plans it: ``standin_tm_path``), and overlapping boxes stop
both vehicles and report a collision. This checks the backend's translation of the API, not
CARLA's physics.
"""
from __future__ import annotations

import fnmatch
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import carla
import numpy as np
from standin_tm_path import PathFollower

STANDIN_VERSION = "0.9.16"
VEHICLE_EXTENT = carla.Vector3D(x=2.4, y=1.05, z=0.75)
DEFAULT_AUTOPILOT_SPEED = 30.0  # km/h, the TM's default on town roads
VEHICLE_MASS = 1845.0           # kg, a Tesla Model 3 in CARLA
EVENT_DELAY = 0.02              # s after a tick returns before its events reach the client's callbacks

TRAFFIC_MANAGERS: dict[int, StandInTrafficManager] = {}
"""Every Traffic Manager of this process by port, whichever server it was made for (CARLA's static
``TrafficManager::_tm_map``): ``get_trafficmanager(port)`` returns the one there, ``shut_down`` removes it."""


def terminate(reason: str) -> None:
    """What an exception escaping the TM's worker thread does in CARLA: std::terminate, the process aborts."""
    sys.stderr.write(f"terminate called after throwing an instance of 'std::runtime_error'\n  what(): {reason}\n")
    sys.stderr.flush()
    os.abort()


def tick_traffic_managers() -> None:
    """``TrafficManager::Tick()``: run one step of every TM in the process; one whose server is gone terminates."""
    for tm in list(TRAFFIC_MANAGERS.values()):
        if not tm.server.alive or tm.epoch != tm.server.epoch:
            terminate(f"Traffic Manager on port {tm.port}: time-out of 10000ms while waiting for the simulator "
                      f"at {tm.server.address} (its server went away)")
        tm.ticks += 1


@lru_cache(maxsize=4)
def parse_map(path: str) -> carla.Map:
    """The map as a server sends it (name 'Carla/Maps/<Town>'); parsed once per test session."""
    return carla.Map(f"Carla/Maps/{Path(path).stem}", Path(path).read_text(encoding="utf-8"))


class Response:
    """Like carla.command.Response: an actor id, or an error message."""

    def __init__(self, actor_id: int = 0, error: str = ""):
        self.actor_id = actor_id
        self.error = error

    def has_error(self) -> bool:
        return bool(self.error)


class SpawnCommand:
    """Stands in for carla.command.SpawnActor(blueprint, transform[, parent])."""

    def __init__(self, blueprint: Blueprint, transform: carla.Transform, parent: Any = None):
        self.blueprint = blueprint.copy()  # CARLA copies the blueprint into the command
        self.transform = carla.Transform(transform.location, transform.rotation)
        self.parent = parent
        self.followers: list[Any] = []

    def then(self, command: Any) -> SpawnCommand:
        self.followers.append(command)
        return self


# ----------------------------------------------------------------------------- blueprints
class Blueprint:
    def __init__(self, blueprint_id: str, attributes: dict[str, str]):
        self.id = blueprint_id
        self.attributes = dict(attributes)

    def has_attribute(self, key: str) -> bool:
        return key in self.attributes

    def set_attribute(self, key: str, value: str) -> None:
        if key not in self.attributes:
            raise IndexError(f"actor blueprint {self.id!r} has no attribute {key!r}")
        self.attributes[key] = str(value)

    def copy(self) -> Blueprint:
        return Blueprint(self.id, self.attributes)


BLUEPRINTS = {
    "vehicle.tesla.model3": {"role_name": "autopilot"},
    "vehicle.audi.tt": {"role_name": "autopilot"},
    "vehicle.standin.offset_box": {"role_name": "autopilot"},  # a stand-in blueprint whose box is not at its origin
    "sensor.other.collision": {"role_name": "front"},
    "sensor.other.lane_invasion": {"role_name": "front"},
    "sensor.camera.rgb": {"image_size_x": "800", "image_size_y": "600", "fov": "90", "sensor_tick": "0.0",
                          "role_name": "front"},
    "sensor.lidar.ray_cast": {"channels": "32", "range": "10.0", "points_per_second": "56000",
                              "rotation_frequency": "10.0", "upper_fov": "10.0", "lower_fov": "-30.0",
                              "dropoff_general_rate": "0.45", "dropoff_intensity_limit": "0.8",
                              "dropoff_zero_intensity": "0.4", "sensor_tick": "0.0", "role_name": "front"},
}


BOX_OFFSETS = {"vehicle.standin.offset_box": (0.8, 0.1)}
"""Bounding-box centre ahead/right of the actor origin (m) by blueprint; CARLA's blueprints differ too."""


class BlueprintLibrary:
    def find(self, blueprint_id: str) -> Blueprint:
        if blueprint_id not in BLUEPRINTS:
            raise IndexError(f"blueprint {blueprint_id!r} not found")
        return Blueprint(blueprint_id, BLUEPRINTS[blueprint_id])


# ----------------------------------------------------------------------------- actors
class Actor:
    def __init__(self, server: StandInServer, actor_id: int, type_id: str, transform: carla.Transform,
                 attributes: dict[str, str], parent: Actor | None = None):
        self._server = server
        self.id = actor_id
        self.type_id = type_id
        self.attributes = attributes
        self.parent = parent
        self.xy = np.array([transform.location.x, transform.location.y])
        self.z = transform.location.z
        self.yaw = np.radians(transform.rotation.yaw)
        self.velocity = np.zeros(2)
        self.acceleration = np.zeros(2)
        self.pitch = transform.rotation.pitch
        self.bounding_box = carla.BoundingBox(carla.Location(), carla.Vector3D())

    def get_transform(self) -> carla.Transform:
        self._server.check()
        return carla.Transform(carla.Location(x=float(self.xy[0]), y=float(self.xy[1]), z=float(self.z)),
                               carla.Rotation(yaw=float(np.degrees(self.yaw))))

    def get_velocity(self) -> carla.Vector3D:
        self._server.check()
        return carla.Vector3D(x=float(self.velocity[0]), y=float(self.velocity[1]), z=0.0)

    def get_acceleration(self) -> carla.Vector3D:
        self._server.check()
        return carla.Vector3D(x=float(self.acceleration[0]), y=float(self.acceleration[1]), z=0.0)


class Vehicle(Actor):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        dx, dy = BOX_OFFSETS.get(self.type_id, (0.0, 0.0))
        self.bounding_box = carla.BoundingBox(carla.Location(x=dx, y=dy, z=VEHICLE_EXTENT.z), VEHICLE_EXTENT)
        self.control = carla.VehicleControl()
        self.speed = 0.0
        self.autopilot_port: int | None = None
        self.path: list[np.ndarray] = []
        self.desired_speed_kmh = DEFAULT_AUTOPILOT_SPEED
        self.tm_settings: dict[str, Any] = {}

    def get_speed_limit(self) -> float:
        return 50.0

    def get_physics_control(self) -> carla.VehiclePhysicsControl:
        self._server.check()
        return carla.VehiclePhysicsControl(mass=VEHICLE_MASS)


class Sensor(Actor):
    """A server-side sensor: ``emit`` hands a reading to the listener (what CARLA's stream does)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.callback: Callable[[Any], None] | None = None

    def listen(self, callback: Callable[[Any], None]) -> None:
        """Server-side sensors stream to ``callback``; a lane-invasion sensor, as in CARLA 0.9.16, is
        client-side: an on-tick callback of the world that compares its parent's place in each snapshot with
        the one in the snapshot before (a new listener, replacing the old one, starts without one), so a
        vehicle teleported between ticks is reported crossing every marking between its old and new place."""
        self._server.check()
        self.callback = callback
        if self.type_id == "sensor.other.lane_invasion":
            self.stop()
            self.callback = callback
            self._last_place: tuple[int, np.ndarray] | None = None
            self.on_tick_id = self._server.world.on_tick(self._report_invasion)

    def stop(self) -> None:
        self.callback = None
        if getattr(self, "on_tick_id", None) is not None:
            self._server.world.remove_on_tick(self.on_tick_id)
            self.on_tick_id = None

    def _report_invasion(self, snapshot: Snapshot) -> None:
        parent = snapshot.find(self.parent.id)
        if parent is None:
            return
        place = parent.get_transform().location
        xy, last = np.array([place.x, place.y]), self._last_place
        self._last_place = (snapshot.frame, xy)
        if last is None or last[0] >= snapshot.frame:
            return
        markings = self._server.world.crossed_markings(last[1], xy, place.z)
        if markings:
            self.emit(LaneInvasionData(snapshot.frame, self.parent, markings))

    def is_listening(self) -> bool:
        return self.callback is not None

    def emit(self, data: Any) -> None:
        if self.callback is not None:
            self.callback(data)


class TrafficLight(Actor):
    CYCLE = (carla.TrafficLightState.Green, carla.TrafficLightState.Yellow, carla.TrafficLightState.Red)

    def __init__(self, *args, opendrive_id: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.opendrive_id = opendrive_id
        self.times = {carla.TrafficLightState.Green: 10.0, carla.TrafficLightState.Yellow: 3.0,
                      carla.TrafficLightState.Red: 2.0}
        self.state = carla.TrafficLightState.Red
        self.elapsed = 0.0

    def get_opendrive_id(self) -> str:
        return self.opendrive_id

    def get_state(self) -> carla.TrafficLightState:
        return self.state

    def get_elapsed_time(self) -> float:
        return self.elapsed

    def set_green_time(self, seconds: float) -> None:
        self.times[carla.TrafficLightState.Green] = seconds

    def set_yellow_time(self, seconds: float) -> None:
        self.times[carla.TrafficLightState.Yellow] = seconds

    def set_red_time(self, seconds: float) -> None:
        self.times[carla.TrafficLightState.Red] = seconds

    def advance(self, dt: float) -> None:
        self.elapsed += dt
        if self.elapsed >= self.times[self.state]:
            self.state = self.CYCLE[(self.CYCLE.index(self.state) + 1) % 3]
            self.elapsed = 0.0


class ActorList(list):
    def filter(self, pattern: str) -> ActorList:
        return ActorList(a for a in self if fnmatch.fnmatch(a.type_id, pattern))


# ----------------------------------------------------------------------------- sensor data
class Reading:
    """A camera image or lidar measurement: ``frame`` and ``raw_data`` as CARLA's SensorData has."""

    def __init__(self, frame: int, raw_data: bytes, width: int = 0, height: int = 0):
        self.frame = frame
        self.raw_data = raw_data
        self.width = width
        self.height = height


def camera_reading(frame: int, width: int, height: int) -> Reading:
    """A BGRA image whose blue channel is frame % 256 and red channel 200 (checks the RGB flip)."""
    bgra = np.zeros((height, width, 4), dtype=np.uint8)
    bgra[..., 0] = frame % 256
    bgra[..., 2] = 200
    bgra[..., 3] = 255
    return Reading(frame, bgra.tobytes(), width, height)


def lidar_reading(frame: int, points: np.ndarray) -> Reading:
    """A LidarMeasurement of (N, 3) points in the sensor's frame: float32 x, y, z, intensity rows."""
    data = np.empty((len(points), 4), dtype=np.float32)
    data[:, :3] = points
    data[:, 3] = np.exp(-0.004 * np.linalg.norm(points, axis=1))  # CARLA's default atmospheric attenuation
    return Reading(frame, data.tobytes())


LIDAR_AZIMUTH_STEP = 0.25         # degrees between the stand-in lidar's horizontal rays
LIDAR_HIT_HEIGHTS = (0.5, 1.2)     # m above a vehicle's origin where two beams meet its sides
GROUND_RING = (np.arange(3.0, 30.0, 3.0), np.radians(np.arange(0.0, 360.0, 5.0)))  # radii (m), bearings


def lidar_scene(sensor: Sensor, poses: dict[int, tuple[np.ndarray, float, float]]) -> np.ndarray:
    """What a ray-cast lidar on ``sensor.parent`` returns, simplified, in the sensor's frame (N, 3).

    A horizontal ray every LIDAR_AZIMUTH_STEP degrees stops at the first side of another
    vehicle's box it crosses, and returns there at two heights; a ring of returns lies on the
    ground around the parent; none beyond the blueprint's range. ``poses`` are actor id ->
    (xy, z, yaw) at the frame. World -> sensor goes through real carla.Transform matrices, so
    CARLA's left-handed axes (y to the right) are CARLA's own.
    """
    def matrix(xy, z, yaw_radians, pitch=0.0) -> np.ndarray:
        location = carla.Location(x=float(xy[0]), y=float(xy[1]), z=float(z))
        return np.array(carla.Transform(location, carla.Rotation(pitch=pitch, yaw=float(np.degrees(yaw_radians))))
                        .get_matrix())

    parent_xy, parent_z, parent_yaw = poses[sensor.parent.id]
    sensor_to_world = matrix(parent_xy, parent_z, parent_yaw) @ matrix(sensor.xy, sensor.z, sensor.yaw, sensor.pitch)
    origin = sensor_to_world[:2, 3]
    azimuth = np.radians(np.arange(0.0, 360.0, LIDAR_AZIMUTH_STEP))
    rays = np.stack([np.cos(azimuth), np.sin(azimuth)], axis=-1)                 # (A, 2) world directions
    reach = np.full(len(rays), np.inf)
    height = np.zeros(len(rays))
    for actor_id, (xy, z, yaw) in poses.items():
        actor = sensor._server.actors.get(actor_id)
        if actor_id == sensor.parent.id or not isinstance(actor, Vehicle):
            continue
        ex, ey = actor.bounding_box.extent.x, actor.bounding_box.extent.y
        c, s = np.cos(yaw), np.sin(yaw)
        corners = xy + np.array([[ex, ey], [ex, -ey], [-ex, -ey], [-ex, ey]]) @ np.array([[c, s], [-s, c]])
        for p, q in zip(corners, np.roll(corners, -1, axis=0)):  # ray o + t d meets side p + u (q - p)
            side, w = q - p, p - origin
            denom = rays[:, 0] * side[1] - rays[:, 1] * side[0]
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (w[0] * side[1] - w[1] * side[0]) / denom
                u = (w[0] * rays[:, 1] - w[1] * rays[:, 0]) / denom
            hit = (t > 0) & (u >= 0) & (u <= 1) & (t < reach)
            reach[hit], height[hit] = t[hit], z
    hit = np.isfinite(reach)
    points = [np.column_stack([origin + reach[hit, None] * rays[hit], height[hit] + h]) for h in LIDAR_HIT_HEIGHTS]
    radii, bearings = np.meshgrid(*GROUND_RING)
    ring = parent_xy + np.column_stack([radii.ravel() * np.cos(bearings.ravel() + parent_yaw),
                                        radii.ravel() * np.sin(bearings.ravel() + parent_yaw)])
    points.append(np.column_stack([ring, np.full(len(ring), parent_z)]))
    world = np.concatenate(points)
    local = (np.linalg.inv(sensor_to_world) @ np.column_stack([world, np.ones(len(world))]).T).T[:, :3]
    return local[np.linalg.norm(local, axis=1) <= float(sensor.attributes["range"])]


class CollisionData:
    def __init__(self, frame: int, actor: Actor, other: Actor | None):
        self.frame = frame
        self.actor = actor
        self.other_actor = other
        self.normal_impulse = carla.Vector3D()


class LaneInvasionData:
    def __init__(self, frame: int, actor: Actor, markings: list[Any]):
        self.frame = frame
        self.actor = actor
        self.crossed_lane_markings = markings


# ----------------------------------------------------------------------------- server
class StandInServer:
    """One stand-in simulator; ``client`` is the client factory handed to CarlaWorld.

    Test hooks: ``kill`` makes every call time out as a dead server does; ``restart`` brings
    up a fresh, empty server; ``tick_seconds`` makes each tick take that long (longer than the client's timeout: the
    tick times out, the server lives); ``sensor_delay`` delivers camera/lidar readings from another
    thread after that many seconds; ``stale_readings`` sends a reading of the previous frame
    first; ``drop_frames`` never sends those frames; ``lidar_points`` (N, 3), when set, is what
    every lidar returns (sensor frame) instead of ``lidar_scene``; ``foreign_light_ids`` gives the
    traffic lights of worlds made after it is set OpenDRIVE ids that are not their signals' (and
    poles a metre off the signals' positions), as lights placed in the editor can have.
    """

    def __init__(self, maps: dict[str, Path], version: str = STANDIN_VERSION, host: str = "127.0.0.1",
                 port: int = 2000):
        self.maps = {name: Path(path) for name, path in maps.items()}
        self.version = version
        self.address = f"{host}:{port}"
        self.sensor_delay = 0.0
        self.stale_readings = False
        self.drop_frames: set[int] = set()
        self.lidar_points: np.ndarray | None = None
        self.tick_seconds = 0.0
        self.foreign_light_ids = False
        self.batches: list[list[Any]] = []  # every command batch received, for inspection
        self.physics_warnings: list[str] = []
        self.generations = 0  # settings whose physics substeps do not cover the step
        self.spawned: Counter[str] = Counter()  # actors ever spawned, by blueprint
        self.epoch = 0
        self.restart()

    def restart(self) -> None:
        """A fresh, empty server on the same address (a new epoch: TMs made for the old one are stale)."""
        self.alive = True
        self.epoch += 1
        self.actors: dict[int, Actor] = {}
        self.next_id = 1
        self.world = StandInWorld(self, next(iter(self.maps)))

    @property
    def traffic_managers(self) -> dict[int, StandInTrafficManager]:
        """The process's Traffic Managers made for this server."""
        return {port: tm for port, tm in TRAFFIC_MANAGERS.items() if tm.server is self}

    def kill(self, message: str = "") -> None:
        """Every later call fails with ``message`` (default: libcarla's time-out), as against a dead server."""
        self.alive = False
        self.death = message or (f"time-out of 10000ms while waiting for the simulator, make sure the simulator is "
                                 f"ready and connected to {self.address}")

    def check(self) -> None:
        if not self.alive:
            raise RuntimeError(self.death)

    def client(self, host: str, port: int) -> StandInClient:
        self.last_client = StandInClient(self)
        return self.last_client

    def cache(self, actors: list[Actor]) -> list[Actor]:
        """Remember ``actors`` in the newest client's actor cache, as libcarla's ``CachedActorList`` does for every
        actor it fetches or spawns: entries of destroyed actors are never dropped (only loading a map clears it)."""
        self.last_client.actor_cache.update((a.id, a.type_id) for a in actors)
        return actors

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def live(self, prefix: str = "") -> list[Actor]:
        """Actors alive on the server whose type id starts with ``prefix`` (traffic lights only when asked)."""
        return [a for a in self.actors.values() if a.type_id.startswith(prefix)
                and (prefix.startswith("traffic") or not a.type_id.startswith("traffic"))]


class StandInClient:
    def __init__(self, server: StandInServer):
        self.server = server
        self.timeout = 5.0
        self.actor_cache: dict[int, str] = {}  # id -> type of every actor this client has seen

    def set_timeout(self, seconds: float) -> None:
        self.timeout = seconds

    def get_server_version(self) -> str:
        self.server.check()
        return self.server.version

    def get_client_version(self) -> str:
        return STANDIN_VERSION

    def get_available_maps(self) -> list[str]:
        self.server.check()
        return [f"/Game/Carla/Maps/{name}" for name in self.server.maps]

    def get_world(self) -> StandInWorld:
        self.server.check()
        return self.server.world

    def load_world(self, name: str) -> StandInWorld:
        self.server.check()
        if name not in self.server.maps:
            raise RuntimeError(f"map '{name}' not found")
        for actor in list(self.server.actors.values()):
            del self.server.actors[actor.id]
        self.actor_cache.clear()  # a new episode (Episode::OnEpisodeStarted)
        self.server.world = StandInWorld(self.server, name)
        return self.server.world

    def generate_opendrive_world(self, opendrive: str, parameters: carla.OpendriveGenerationParameters,
                                 reset_settings: bool = True) -> StandInWorld:
        self.server.check()
        self.server.generated_xodr = opendrive
        self.server.generations += 1  # meshes generated: tens of seconds on CARLA
        self.server.actors.clear()    # a new episode, as load_world
        self.actor_cache.clear()
        self.server.world = StandInWorld(self.server, None, opendrive)
        return self.server.world

    def get_trafficmanager(self, port: int = 8000) -> StandInTrafficManager:
        """The process's TM on ``port`` if there is one (even one made for a server that is gone), else a new one."""
        self.server.check()
        if port not in TRAFFIC_MANAGERS:
            TRAFFIC_MANAGERS[port] = StandInTrafficManager(self.server, port)
        return TRAFFIC_MANAGERS[port]

    def apply_batch(self, commands: list[Any]) -> None:
        """Commands without an answer; SetAutopilot among them registers nothing with a TM, as in libcarla."""
        self.server.check()
        self.server.batches.append(list(commands))
        for command in commands:
            self.server.world.execute(command)

    def apply_batch_sync(self, commands: list[Any], do_tick: bool = False) -> list[Response]:
        """As libcarla's Python binding: after the batch, vehicles of successful SetAutopilot commands (chained to a
        spawn or not) are registered with ``get_trafficmanager(port)`` of the last such command's port (8000 when
        none says), which makes a new, asynchronous TM there when the process has none."""
        self.server.check()
        self.server.batches.append(list(commands))
        responses = [self.server.world.execute(command) for command in commands]
        port, enable, disable = 8000, [], []
        for command, response in zip(commands, responses):
            chained = command.followers if isinstance(command, SpawnCommand) else [command]
            for autopilot in (c for c in chained if isinstance(c, carla.command.SetAutopilot)):
                port = autopilot.tm_port
                if not response.error and response.actor_id in self.server.actors:
                    (enable if autopilot.enabled else disable).append(self.server.actors[response.actor_id])
        if enable or disable:
            tm = self.get_trafficmanager(port)
            for vehicle in enable:
                vehicle.autopilot_port = tm.port
            for vehicle in disable:
                vehicle.autopilot_port = None
        return responses


def _tm_setting(name: str):
    """A Traffic Manager per-vehicle setter that records its value on the vehicle."""
    def store(self, vehicle: Vehicle, value) -> None:
        vehicle.tm_settings[name] = value
    return store


class StandInTrafficManager:
    def __init__(self, server: StandInServer, port: int):
        self.server = server
        self.epoch = server.epoch
        self.port = port
        self.synchronous = False
        self.seed: int | None = None
        self.running = True
        self.ticks = 0
        self.rng = np.random.default_rng(0)
        self.followers: dict[int, PathFollower] = {}
        self._options: dict[tuple[int, int, int], str] = {}

    def get_port(self) -> int:
        return self.port

    def shut_down(self) -> None:
        """Stop the TM's threads and leave the process registry (no server call: works on a lost server)."""
        self.running = False
        if TRAFFIC_MANAGERS.get(self.port) is self:
            del TRAFFIC_MANAGERS[self.port]

    def set_synchronous_mode(self, enabled: bool) -> None:
        self.server.check()
        self.synchronous = enabled

    def set_random_device_seed(self, seed: int) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def follower(self, vehicle: Vehicle) -> PathFollower:
        """The TM's waypoint buffer for ``vehicle`` (made on first use, on the map of the server's world)."""
        follower = self.followers.get(vehicle.id)
        if follower is None or follower.carla_map is not self.server.world.carla_map:
            follower = self.followers[vehicle.id] = PathFollower(self.server.world.carla_map, self.rng, self._options)
        return follower

    def set_desired_speed(self, vehicle: Vehicle, kmh: float) -> None:
        vehicle.desired_speed_kmh = kmh

    def set_path(self, vehicle: Vehicle, locations: list[carla.Location], empty_buffer: bool = True) -> None:
        """Record the path sent (``vehicle.path``, ``vehicle.path_xyz``) and hand it to the vehicle's planner, which
        re-plans it on the map's waypoints as CARLA's localization stage does."""
        vehicle.path = [np.array([loc.x, loc.y]) for loc in locations]
        vehicle.path_xyz = [(loc.x, loc.y, loc.z) for loc in locations]
        self.follower(vehicle).set_path(locations)

    def get_all_actions(self, vehicle: Vehicle) -> list[list[Any]]:
        """``[road option, carla.Waypoint]`` pairs: the buffer's front and each change of road option
        (``TrafficManager::GetActionBuffer``); [] for a vehicle this TM does not drive or has not planned yet."""
        if vehicle.autopilot_port != self.port or vehicle.id not in self.followers:
            return []
        return self.follower(vehicle).actions()

    ignore_lights_percentage = _tm_setting("ignore_lights_percentage")
    ignore_signs_percentage = _tm_setting("ignore_signs_percentage")
    ignore_vehicles_percentage = _tm_setting("ignore_vehicles_percentage")
    auto_lane_change = _tm_setting("auto_lane_change")
    distance_to_leading_vehicle = _tm_setting("distance_to_leading_vehicle")
    vehicle_percentage_speed_difference = _tm_setting("vehicle_percentage_speed_difference")


def boxes_overlap(a: Actor, b: Actor) -> bool:
    """Separating-axis test of two vehicles' ground boxes."""
    def corners(actor: Actor) -> np.ndarray:
        ex, ey = actor.bounding_box.extent.x, actor.bounding_box.extent.y
        c, s = np.cos(actor.yaw), np.sin(actor.yaw)
        box = actor.bounding_box.location
        local = np.array([[ex, ey], [ex, -ey], [-ex, -ey], [-ex, ey]]) + np.array([box.x, box.y])
        return actor.xy + local @ np.array([[c, s], [-s, c]])

    ca, cb = corners(a), corners(b)
    for yaw in (a.yaw, b.yaw):
        for axis in (np.array([np.cos(yaw), np.sin(yaw)]), np.array([-np.sin(yaw), np.cos(yaw)])):
            pa, pb = ca @ axis, cb @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


class Snapshot:
    """carla.WorldSnapshot: the frame and a copy of every actor's state at that tick."""

    class ActorSnapshot:
        """State copied at the tick; carla value objects built only when asked for."""

        def __init__(self, actor: Actor):
            self.id = actor.id
            self._state = (actor.xy.copy(), actor.z, actor.yaw, actor.velocity.copy(), actor.acceleration.copy())

        def get_transform(self) -> carla.Transform:
            xy, z, yaw, _, _ = self._state
            return carla.Transform(carla.Location(x=float(xy[0]), y=float(xy[1]), z=float(z)),
                                   carla.Rotation(yaw=float(np.degrees(yaw))))

        def get_velocity(self) -> carla.Vector3D:
            v = self._state[3]
            return carla.Vector3D(x=float(v[0]), y=float(v[1]), z=0.0)

        def get_acceleration(self) -> carla.Vector3D:
            a = self._state[4]
            return carla.Vector3D(x=float(a[0]), y=float(a[1]), z=0.0)

    def __init__(self, frame: int, actors: list[Actor]):
        self.frame = frame
        self._actors = [self.ActorSnapshot(a) for a in actors]

    def __iter__(self):
        return iter(self._actors)

    def __len__(self) -> int:
        return len(self._actors)

    def find(self, actor_id: int) -> ActorSnapshot | None:
        return next((a for a in self._actors if a.id == actor_id), None)


class StandInWorld:
    def __init__(self, server: StandInServer, town: str | None, xodr: str | None = None):
        self.server = server
        self.carla_map = parse_map(str(server.maps[town])) if town else carla.Map("generated", xodr)
        self.frame = 1000 * len(server.maps) + server.next_id  # CARLA's frame counter does not start at 0
        self.settings = {"synchronous_mode": False, "fixed_delta_seconds": 0.0, "no_rendering_mode": False}
        self.ticks = 0
        self._snapshot = Snapshot(self.frame, [])
        self._on_tick: dict[int, Callable[[Snapshot], None]] = {}  # run in registration order, as CARLA's CallbackList
        self._next_callback = 1
        for landmark in {lm.id: lm for lm in self.carla_map.get_all_landmarks_of_type("1000001")}.values():
            actor_id, transform = server.new_id(), landmark.transform
            opendrive_id = str(landmark.id)
            if server.foreign_light_ids:  # placed in the editor: its own id, its pole a metre off the signal's
                opendrive_id = f"editor-{actor_id}"
                location = transform.location + carla.Location(x=0.8, y=-0.6)
                transform = carla.Transform(location, transform.rotation)
            light = TrafficLight(server, actor_id, "traffic.traffic_light", transform, {}, opendrive_id=opendrive_id)
            server.actors[light.id] = light

    def check(self) -> None:
        """Calls on a world object of an episode the server no longer runs fail, as CARLA's do."""
        self.server.check()
        if self.server.world is not self:
            raise RuntimeError("trying to access an expired episode; a new episode was started in the simulation "
                               "but an object tried accessing the old one.")

    def on_tick(self, callback: Callable[[Snapshot], None]) -> int:
        self._next_callback += 1
        self._on_tick[self._next_callback] = callback
        return self._next_callback

    def remove_on_tick(self, callback_id: int) -> None:
        self.check()
        self._on_tick.pop(callback_id, None)

    # ---- settings and map
    def get_map(self) -> carla.Map:
        self.check()
        return self.carla_map

    def get_settings(self) -> carla.WorldSettings:
        self.check()
        return carla.WorldSettings(**self.settings)

    def apply_settings(self, settings: carla.WorldSettings) -> int:
        self.check()
        self.settings = {"synchronous_mode": settings.synchronous_mode,
                         "fixed_delta_seconds": settings.fixed_delta_seconds or 0.0,
                         "no_rendering_mode": settings.no_rendering_mode, "substepping": settings.substepping,
                         "max_substep_delta_time": settings.max_substep_delta_time,
                         "max_substeps": settings.max_substeps}
        covered = settings.max_substep_delta_time * settings.max_substeps
        if settings.substepping and (settings.fixed_delta_seconds or 0.0) > covered + 1e-9:
            # CARLA's condition for substepping (docs: adv_synchrony_timestep): the physics falls behind the step
            self.server.physics_warnings.append(f"fixed_delta_seconds {settings.fixed_delta_seconds} > "
                                                f"max_substep_delta_time * max_substeps = {covered}")
        tick_traffic_managers()  # the client's apply_settings ticks every TM of the process, as world.tick does
        return self.frame

    def get_blueprint_library(self) -> BlueprintLibrary:
        self.check()
        return BlueprintLibrary()

    # ---- actors
    def get_actors(self, actor_ids: list[int] | None = None) -> ActorList:
        self.check()
        if actor_ids is None:
            return ActorList(self.server.cache(list(self.server.actors.values())))
        return ActorList(self.server.cache([self.server.actors[i] for i in actor_ids if i in self.server.actors]))

    def get_actor(self, actor_id: int) -> Actor | None:
        self.check()
        actor = self.server.actors.get(actor_id)
        return self.server.cache([actor])[0] if actor is not None else None

    def spawn_actor(self, blueprint: Blueprint, transform: carla.Transform, attach_to: Actor | None = None) -> Actor:
        response = self.execute(SpawnCommand(blueprint, transform, attach_to))
        if response.error:
            raise RuntimeError(response.error)
        return self.server.cache([self.server.actors[response.actor_id]])[0]

    def get_traffic_lights_from_waypoint(self, waypoint: carla.Waypoint, distance: float) -> list[TrafficLight]:
        """As CARLA's (client/World.cpp): the traffic-light landmarks within ``distance`` ahead, each
        looked up by its id among the lights' OpenDRIVE ids, so a light with another id is not found."""
        self.check()
        by_id = {light.opendrive_id: light for light in self.server.live("traffic.")}
        found: dict[str, TrafficLight] = {}
        for landmark in waypoint.get_landmarks_of_type(distance, "1000001", False):
            if landmark.id in by_id:
                found.setdefault(landmark.id, by_id[landmark.id])
        return list(found.values())

    def reset_all_traffic_lights(self) -> None:
        self.check()
        for light in self.server.live("traffic."):
            light.state, light.elapsed = carla.TrafficLightState.Red, 0.0

    # ---- commands
    def execute(self, command: Any) -> Response:
        server = self.server
        if isinstance(command, SpawnCommand):
            return self._spawn(command)
        if isinstance(command, carla.command.DestroyActor):
            if server.actors.pop(command.actor_id, None) is None:
                return Response(error=f"actor {command.actor_id} not found")
            return Response(command.actor_id)
        actor = server.actors.get(command.actor_id)
        if actor is None:
            return Response(error=f"actor {command.actor_id} not found")
        if isinstance(command, carla.command.ApplyVehicleControl):
            actor.control = command.control
        elif isinstance(command, carla.command.SetAutopilot):
            pass  # the server does nothing: the client registers the vehicle with a TM (StandInClient.apply_batch_sync)
        elif isinstance(command, carla.command.ApplyTransform):
            actor.xy = np.array([command.transform.location.x, command.transform.location.y])
            actor.z = command.transform.location.z
            actor.yaw = np.radians(command.transform.rotation.yaw)
        elif isinstance(command, carla.command.ApplyTargetVelocity):
            actor.velocity = np.array([command.velocity.x, command.velocity.y])
            actor.speed = float(np.linalg.norm(actor.velocity))
        elif isinstance(command, carla.command.ApplyTargetAngularVelocity):
            pass  # the stand-in's vehicles do not spin
        else:
            return Response(error=f"the stand-in does not know {type(command).__name__}")
        return Response(actor.id)

    def _spawn(self, command: SpawnCommand) -> Response:
        server, blueprint = self.server, command.blueprint
        kind = blueprint.id.split(".")[0]
        if kind == "vehicle":
            actor = Vehicle(server, 0, blueprint.id, command.transform, dict(blueprint.attributes))
            if any(abs(actor.z - other.z) < 2.0 and boxes_overlap(actor, other) for other in server.live("vehicle.")):
                return Response(error="Spawn failed because of collision at spawn position")
        elif kind == "sensor":
            if command.parent is None or command.parent.id not in server.actors:
                return Response(error=f"sensor {blueprint.id} needs a live parent")
            actor = Sensor(server, 0, blueprint.id, command.transform, dict(blueprint.attributes), command.parent)
        else:
            return Response(error=f"cannot spawn {blueprint.id}")
        actor.id = server.new_id()
        server.actors[actor.id] = actor
        server.spawned[blueprint.id] += 1
        for follower in command.followers:
            follower.actor_id = actor.id  # FutureActor resolved, as the server does
            response = self.execute(follower)
            if response.error:  # the actor stays: CARLA reports the error with the new actor's id
                return Response(actor.id, response.error)
        return Response(actor.id)

    # ---- simulation
    def tick(self, seconds: float = 0.0) -> int:
        """One synchronous step. As libcarla 0.9.16 (client/World.cpp, detail/Simulator.cpp): ``seconds`` 0 waits the
        client's timeout for the frame; when the step takes longer, the server has still stepped, but the call raises
        a time-out and the process's Traffic Managers are not ticked. The step's time is the server's
        ``tick_seconds`` (not this process's own work, so a loaded test machine times nothing out)."""
        self.check()
        timeout = seconds or self.server.last_client.timeout
        if not self.settings["synchronous_mode"]:
            raise RuntimeError("stand-in: tick() called while the world is in asynchronous mode")
        dt = self.settings["fixed_delta_seconds"] or 0.05
        self.frame += 1
        self.ticks += 1
        vehicles = self.server.live("vehicle.")
        before = {v.id: (v.xy.copy(), v.yaw, v.velocity.copy()) for v in vehicles}
        for vehicle in vehicles:
            if vehicle.autopilot_port is not None:
                self._drive_autopilot(vehicle, dt)
            else:
                self._drive_controls(vehicle, dt)
            vehicle.acceleration = (vehicle.velocity - before[vehicle.id][2]) / dt
        hits = self._collide(vehicles, before)
        for light in self.server.live("traffic."):
            light.advance(dt)
        self._snapshot = Snapshot(self.frame, list(self.server.actors.values()))
        self._send_sensor_data(before)
        self._deliver_events(self._snapshot, hits)
        if self.server.tick_seconds:
            time.sleep(self.server.tick_seconds)
        if self.server.tick_seconds > timeout:
            raise RuntimeError(f"time-out of {int(timeout * 1000)}ms while waiting for the simulator, make sure the "
                               f"simulator is ready and connected to {self.server.address}")
        tick_traffic_managers()
        return self.frame

    def get_snapshot(self) -> Snapshot:
        self.check()
        return self._snapshot

    @staticmethod
    def _drive_controls(vehicle: Vehicle, dt: float) -> None:
        c = vehicle.control
        accel = 5.0 * c.throttle - 8.0 * c.brake - 0.2 * np.sign(vehicle.speed)
        vehicle.speed = max(vehicle.speed + accel * dt, 0.0)
        vehicle.yaw += vehicle.speed * np.tan(0.6 * c.steer) / 2.9 * dt
        heading = np.array([np.cos(vehicle.yaw), np.sin(vehicle.yaw)])
        vehicle.velocity = vehicle.speed * heading
        vehicle.xy = vehicle.xy + vehicle.velocity * dt

    @staticmethod
    def _drive_autopilot(vehicle: Vehicle, dt: float) -> None:
        """Localize on the vehicle's TM (its buffer, see ``standin_tm_path``), then drive ``desired speed * dt`` along
        the buffer from where the vehicle is (waypoints behind the one before are skipped); without its TM, straight."""
        step = vehicle.desired_speed_kmh / 3.6 * dt
        tm = TRAFFIC_MANAGERS.get(vehicle.autopilot_port)
        corners = [vehicle.xy.copy()]
        if tm is not None:
            follower = tm.follower(vehicle)
            follower.update(np.array([*vehicle.xy, vehicle.z]), vehicle.yaw, vehicle.speed)
            for waypoint, xyz in zip(follower.buffer, follower.polyline()):
                forward = np.radians(waypoint.transform.rotation.yaw)
                if np.dot(xyz[:2] - corners[-1], [np.cos(forward), np.sin(forward)]) > 1e-3:
                    corners.append(xyz[:2])
        if len(corners) == 1:
            corners.append(vehicle.xy + 100.0 * np.array([np.cos(vehicle.yaw), np.sin(vehicle.yaw)]))
        corners = np.array(corners)
        s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(corners, axis=0), axis=1))])
        d = min(step, s[-1])
        position = np.array([np.interp(d, s, corners[:, 0]), np.interp(d, s, corners[:, 1])])
        segment = min(int(np.searchsorted(s, d, side="right")), len(s) - 1)
        offset = corners[segment] - corners[segment - 1]
        if d > 1e-9 and np.linalg.norm(offset) > 1e-9:  # a vehicle standing still does not turn
            vehicle.yaw = float(np.arctan2(offset[1], offset[0]))
        vehicle.velocity = (position - vehicle.xy) / dt
        vehicle.speed = float(np.linalg.norm(vehicle.velocity))
        vehicle.xy = position

    def _collide(self, vehicles: list[Vehicle], before: dict) -> list[tuple[Sensor, CollisionData]]:
        """Stop overlapping vehicles where they stood before the tick; the collision events to stream.

        The impulse is what a plastic contact of the two boxes gives: the reduced mass times the closing
        speed before the tick (the velocities after it are already zero).
        """
        sensed = {s.parent.id: s for s in self.server.live("sensor.other.collision") if s.parent is not None}
        hits = []
        for vehicle in vehicles:
            if vehicle.id not in sensed:
                continue
            for other in vehicles:
                if other is vehicle or abs(vehicle.z - other.z) > 2.0 or not boxes_overlap(vehicle, other):
                    continue
                closing = float(np.linalg.norm(before[vehicle.id][2] - before[other.id][2]))
                for hit in (vehicle, other):  # contact stops both, where they stood before the tick
                    hit.xy, hit.yaw, _ = before[hit.id]
                    hit.speed, hit.velocity = 0.0, np.zeros(2)
                for a, b in ((vehicle, other), (other, vehicle)):
                    if a.id in sensed:
                        event = CollisionData(self.frame, a, b)
                        event.normal_impulse = carla.Vector3D(x=VEHICLE_MASS / 2 * closing, y=0.0, z=0.0)
                        hits.append((sensed[a.id], event))
        return hits

    def _deliver_events(self, snapshot: Snapshot, hits: list[tuple[Sensor, CollisionData]]) -> None:
        """After the tick returns, on another thread: the collision stream, then the on-tick callbacks (in order)."""
        def deliver() -> None:
            time.sleep(EVENT_DELAY)
            for sensor, event in hits:
                sensor.emit(event)
            for callback in list(self._on_tick.values()):
                callback(snapshot)

        threading.Thread(target=deliver, daemon=True).start()

    def _send_sensor_data(self, before: dict) -> None:
        frame = self.frame
        for sensor in self.server.live("sensor."):
            if sensor.type_id in ("sensor.camera.rgb", "sensor.lidar.ray_cast") and frame not in self.server.drop_frames:
                self._send_reading(sensor, frame, before)

    def _send_reading(self, sensor: Sensor, frame: int, before: dict) -> None:
        """The reading of this frame, after one of the previous frame (its scene) when ``stale_readings``."""
        now = {v.id: (v.xy, v.z, v.yaw) for v in self.server.live("vehicle.")}
        previous = {i: (before[i][0], z, before[i][1]) if i in before else (xy, z, yaw) for i, (xy, z, yaw) in now.items()}

        def make(f: int, poses: dict) -> Reading:
            if sensor.type_id == "sensor.camera.rgb":
                return camera_reading(f, int(sensor.attributes["image_size_x"]), int(sensor.attributes["image_size_y"]))
            return lidar_reading(f, lidar_scene(sensor, poses) if self.server.lidar_points is None
                                 else self.server.lidar_points)

        readings = ([make(frame - 1, previous)] if self.server.stale_readings else []) + [make(frame, now)]
        if self.server.sensor_delay > 0:
            timer = threading.Timer(self.server.sensor_delay, lambda: [sensor.emit(r) for r in readings])
            timer.daemon = True
            timer.start()
        else:
            for reading in readings:
                sensor.emit(reading)

    def crossed_markings(self, xy_from: np.ndarray, xy_to: np.ndarray, z: float) -> list[Any]:
        """The marking between two driving lanes of one road that the vehicle moved across (at its height)."""
        def waypoint(xy):
            return self.carla_map.get_waypoint(carla.Location(x=float(xy[0]), y=float(xy[1]), z=float(z)))

        a, b = waypoint(xy_from), waypoint(xy_to)
        if a is None or b is None or (a.road_id, a.section_id) != (b.road_id, b.section_id) or a.lane_id == b.lane_id:
            return []
        right = a.get_right_lane()
        return [a.right_lane_marking if right is not None and right.lane_id == b.lane_id else a.left_lane_marking]


_PROCESS_SERVERS: dict[str, StandInServer] = {}


@dataclass(frozen=True)
class StandInFactory:
    """A picklable client factory: the stand-in server lives in the process that calls it (a CARLA worker).

    ``maps`` are (town, .xodr path) pairs; ``tick_seconds`` is the server's ``tick_seconds``. The first call
    in a process also stands in for ``carla.command.SpawnActor`` there, as the tests' fixtures do.
    """

    maps: tuple[tuple[str, str], ...]
    tick_seconds: float = 0.0

    def __call__(self, host: str, port: int) -> StandInClient:
        from cardreamer.world.carla_backend import world as world_module

        address = f"{host}:{port}"
        if address not in _PROCESS_SERVERS:
            world_module.SpawnActor = SpawnCommand
            server = StandInServer({name: Path(path) for name, path in self.maps}, host=host, port=port)
            server.tick_seconds = self.tick_seconds
            _PROCESS_SERVERS[address] = server
        return _PROCESS_SERVERS[address].client(host, port)
