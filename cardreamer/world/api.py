"""The world interface, in CARLA's vocabulary, that tasks and observation handlers use.

Two backends implement it: the embedded simulator (``cardreamer.world.embedded``) and the CARLA
server backend (``cardreamer.world.carla_backend``). Tasks and handlers use nothing else, so a
task moves between backends by changing ``env.world.backend``.

Conventions: CARLA's left-handed frame (x forward/east, y right/south seen from above, metres);
yaw in radians from +x toward +y; speeds in m/s; one ``tick`` advances ``dt`` seconds (0.1 s).
Bulk state is returned as numpy arrays (one row per vehicle) so that handlers stay vectorized.

What every backend can do is on ``World``. What only some can (real sensors: ``SensorWorld``) is a
capability protocol: a caller that needs one asks ``require_capability`` once, which ends in one
line naming the caller and the backend when the world lacks it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar, runtime_checkable

import carla
import numpy as np

from cardreamer.config_loading import ConfigError
from cardreamer.geometry import box_corners
from cardreamer.roadmap import RoadMap, Route


class WorldError(RuntimeError):
    """A world operation failed (the message says which and why)."""


class WorldLost(WorldError):
    """The backend lost its simulator (a server crashed or timed out); ``World.recover`` reconnects."""


class SpawnError(WorldError):
    """A vehicle could not be spawned: off the road, or overlapping another vehicle."""


@dataclass(frozen=True)
class Pose:
    """Position and heading on the ground plane."""

    x: float
    y: float
    yaw: float  # radians

    def to_transform(self) -> carla.Transform:
        return carla.Transform(carla.Location(x=self.x, y=self.y, z=0.0),
                               carla.Rotation(yaw=float(np.degrees(self.yaw))))


@dataclass(frozen=True)
class Behavior:
    """Per-vehicle driving behaviour of background traffic, as CARLA's Traffic Manager offers."""

    desired_speed: float = 8.0         # m/s
    ignore_lights: bool = False
    ignore_signs: bool = False
    ignore_vehicles: bool = False
    auto_lane_change: bool = True
    min_gap: float = 2.5               # m, standstill distance (IDM s0)
    time_headway: float = 1.2          # s (IDM T)
    max_accel: float = 2.5             # m/s^2 (IDM a)
    comfort_decel: float = 3.0         # m/s^2 (IDM b)
    politeness: float = 0.3            # MOBIL p
    on_route_end: str = "continue"     # "continue": pick a new random route | "destroy": leave the world


@dataclass(frozen=True)
class VehicleArrays:
    """Snapshot of every vehicle in the world after the last tick; row i describes ``ids[i]``."""

    ids: np.ndarray           # (N,) int
    xy: np.ndarray            # (N, 2) centre position
    yaw: np.ndarray           # (N,) radians
    speed: np.ndarray         # (N,) m/s along the heading (negative when reversing)
    velocity: np.ndarray      # (N, 2) m/s
    acceleration: np.ndarray  # (N, 2) m/s^2
    extent: np.ndarray        # (N, 2) half length, half width (CARLA bounding-box extent)
    is_ego: np.ndarray        # (N,) bool

    def row(self, actor_id: int) -> int:
        rows = np.flatnonzero(self.ids == actor_id)
        if not len(rows):
            raise WorldError(f"no vehicle with id {actor_id}")
        return int(rows[0])

    def corners(self) -> np.ndarray:
        """(N, 4, 2) corners of each vehicle's box: front-left, front-right, rear-right, rear-left."""
        return box_corners(self.xy, self.yaw, self.extent)


SENSOR_KINDS = ("camera", "lidar")


@dataclass(frozen=True)
class SensorSpec:
    """A camera or lidar mounted on a vehicle: x ahead of its centre, y right, z above the ground (metres), degrees."""

    kind: Literal["camera", "lidar"]
    x: float = 1.5
    y: float = 0.0
    z: float = 2.4
    pitch: float = 0.0
    yaw: float = 0.0
    width: int = 128           # camera
    height: int = 128          # camera
    fov: float = 90.0          # camera, degrees
    channels: int = 32         # lidar
    range: float = 50.0        # lidar, m
    points_per_second: int = 100_000
    upper_fov: float = 10.0    # lidar, degrees
    lower_fov: float = -30.0   # lidar, degrees

    def __post_init__(self) -> None:
        if self.kind not in SENSOR_KINDS:
            raise WorldError(f"sensor kind {self.kind!r} is not supported; valid kinds: {', '.join(SENSOR_KINDS)}")


@dataclass(frozen=True)
class TrafficLightStates:
    """State of every traffic light: ``signals[i]`` indexes ``road_map.signals``."""

    RED, YELLOW, GREEN = 0, 1, 2
    signals: np.ndarray  # (L,) int
    states: np.ndarray   # (L,) int: RED | YELLOW | GREEN
    elapsed: np.ndarray  # (L,) seconds spent in the current state


@dataclass(frozen=True)
class CollisionEvent:
    frame: int
    actor_id: int
    other_id: int          # -1 for static geometry
    relative_speed: float  # m/s at the moment of contact


@dataclass(frozen=True)
class LaneInvasionEvent:
    frame: int
    actor_id: int
    markings: tuple[str, ...] = field(default_factory=tuple)  # crossed marking types, e.g. ("Solid",)


class World(ABC):
    """A driving world: one map, vehicles, traffic lights and stop signs, advanced by ``tick``."""

    road_map: RoadMap
    dt: float
    frame: int

    @abstractmethod
    def reset(self, seed: int) -> None:
        """Remove every vehicle this world spawned and restart lights; seed its randomness."""

    @abstractmethod
    def spawn_vehicle(self, pose: Pose, *, role: str = "background", route: Route | None = None,
                      behavior: Behavior | None = None, speed: float = 0.0,
                      extent: tuple[float, float] = (2.4, 1.05)) -> int:
        """Spawn a vehicle and return its actor id.

        ``role="ego"`` vehicles are driven by ``apply_control``; others drive themselves along
        ``route`` with ``behavior`` (autopilot). Raises SpawnError if the pose is off every driving
        lane or the box would overlap another vehicle.
        """

    def try_spawn_vehicle(self, pose: Pose, **kwargs) -> int | None:
        """Like spawn_vehicle but returns None instead of raising when the vehicle cannot be placed."""
        try:
            return self.spawn_vehicle(pose, **kwargs)
        except SpawnError:
            return None

    @abstractmethod
    def spawn_traffic(self, count: int, behavior: Behavior | None = None,
                      exclude_near: np.ndarray | None = None, exclude_radius: float = 0.0) -> list[int]:
        """Spawn up to ``count`` autopilot vehicles at free spawn points with random routes."""

    @abstractmethod
    def destroy(self, actor_id: int) -> None:
        """Remove a vehicle."""

    @abstractmethod
    def apply_control(self, actor_id: int, control: carla.VehicleControl) -> None:
        """Set the control an ego vehicle uses from the next tick on."""

    @abstractmethod
    def tick(self) -> int:
        """Advance the world by ``dt`` and return the new frame number."""

    @abstractmethod
    def vehicles(self) -> VehicleArrays:
        """Snapshot of all vehicles (consistent with the last tick)."""

    @abstractmethod
    def route_of(self, actor_id: int) -> Route | None:
        """The planned route (intention) of a vehicle, or None if it has none."""

    @abstractmethod
    def route_progress(self, actor_id: int) -> float:
        """Distance (m) the vehicle has travelled along its route."""

    def intended_route(self, actor_id: int) -> tuple[Route, float] | None:
        """What a vehicle will drive, as shared intentions report it: (route, distance along it where the vehicle is),
        or None without a route. Here the planned route and the progress along it; a backend whose traffic is driven
        by something else (CARLA's Traffic Manager) reports what that will do."""
        route = self.route_of(actor_id)
        return None if route is None else (route, self.route_progress(actor_id))

    @abstractmethod
    def traffic_lights(self) -> TrafficLightStates:
        """Current state of every traffic light."""

    @abstractmethod
    def set_traffic_light_timing(self, green: float, yellow: float, red: float | None = None,
                                 junction_id: int | None = None) -> None:
        """Phase durations (s) of the lights of one junction (or all when None)."""

    @abstractmethod
    def collisions(self, actor_id: int) -> list[CollisionEvent]:
        """Collisions of a vehicle during the last tick."""

    @abstractmethod
    def lane_invasions(self, actor_id: int) -> list[LaneInvasionEvent]:
        """Lane markings a vehicle crossed during the last tick."""

    @abstractmethod
    def is_off_road(self, actor_id: int) -> bool:
        """Whether the centre of a vehicle lies outside every driving lane."""

    @abstractmethod
    def close(self) -> None:
        """Release everything the world holds (actors, connections, settings)."""

    def recover(self) -> None:
        """Reconnect after WorldLost (a backend without a server never loses it); ``reset`` follows."""
        raise WorldError(f"{type(self).__name__} cannot recover a lost world")

    def transform(self, actor_id: int) -> carla.Transform:
        """CARLA transform of a vehicle (convenience over ``vehicles()``)."""
        v = self.vehicles()
        i = v.row(actor_id)
        return Pose(float(v.xy[i, 0]), float(v.xy[i, 1]), float(v.yaw[i])).to_transform()


class CapabilityError(ConfigError):
    """A task or observation needs a capability the configured world backend does not have."""


@runtime_checkable
class SensorWorld(Protocol):
    """real sensors mounted on vehicles (attach_sensor, sensor_data; the carla backend has them)

    The first docstring line is what ``require_capability`` calls the capability.
    """

    def attach_sensor(self, name: str, spec: SensorSpec, actor_id: int | None = None) -> int:
        """Mount a camera or lidar on a vehicle (default: the only ego); returns the sensor's id."""

    def sensor_data(self, name: str) -> np.ndarray:
        """The reading of sensor ``name`` for the current frame: (H, W, 3) uint8 RGB or (N, 4) float32 points."""


C = TypeVar("C")


def require_capability(world: World, capability: type[C], needed_by: str, hint: str = "") -> C:
    """``world`` as the capability protocol ``capability``; a CapabilityError otherwise.

    The one-line message names ``needed_by`` (who needs it, e.g. ``"camera.source: 'sensor'"``),
    the capability (the first line of its docstring), the world's backend and ``hint``.
    """
    if isinstance(world, capability):
        return world
    what = (capability.__doc__ or capability.__name__).strip().splitlines()[0]
    raise CapabilityError(f"{needed_by} needs a world with {what}; {type(world).__name__} has none"
                          + (f"; {hint}" if hint else ""))
