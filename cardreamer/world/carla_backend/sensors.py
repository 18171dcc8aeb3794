"""CARLA sensors on the ego: frame-synchronized camera and lidar readings, and event sensors.

CARLA delivers sensor data on its own threads, possibly late and possibly for an older frame.
Each data sensor therefore feeds a queue; after every ``world.tick()`` the manager waits for the
reading whose ``frame`` equals the tick's frame, dropping stale ones, and raises SensorTimeout when
it does not come. Collision and lane-invasion sensors report events only when something happens;
their events are gathered per tick.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import carla
import numpy as np

from cardreamer.world.api import LaneInvasionEvent, SensorSpec, WorldError
from cardreamer.world.carla_backend.errors import SensorTimeout

SENSOR_BLUEPRINTS = {"camera": "sensor.camera.rgb", "lidar": "sensor.lidar.ray_cast"}
LIDAR_NO_DROPOFF = {"dropoff_general_rate": "0.0", "dropoff_intensity_limit": "1.0", "dropoff_zero_intensity": "0.0"}
"""CARLA drops 45% of lidar returns at random by default; a scan wants every return."""


def mount_transform(spec: SensorSpec, centre: tuple[float, float] = (0.0, 0.0)) -> carla.Transform:
    """The mount relative to the vehicle's actor origin, whose bounding-box centre is at ``centre`` (x, y)."""
    return carla.Transform(carla.Location(x=spec.x + centre[0], y=spec.y + centre[1], z=spec.z),
                           carla.Rotation(pitch=spec.pitch, yaw=spec.yaw))


def blueprint_attributes(spec: SensorSpec, dt: float) -> dict[str, str]:
    """Blueprint attributes: one reading per tick (a full lidar sweep per ``dt``, no random drop-off)."""
    if spec.kind == "camera":
        return {"image_size_x": str(spec.width), "image_size_y": str(spec.height), "fov": str(spec.fov),
                "sensor_tick": "0.0"}
    return {"channels": str(spec.channels), "range": str(spec.range),
            "points_per_second": str(spec.points_per_second), "rotation_frequency": str(1.0 / dt),
            "upper_fov": str(spec.upper_fov), "lower_fov": str(spec.lower_fov), "sensor_tick": "0.0",
            **LIDAR_NO_DROPOFF}


def reading_to_array(kind: str, data: Any) -> np.ndarray:
    """Camera image -> (H, W, 3) uint8 RGB; lidar measurement -> (N, 4) float32 x, y, z, intensity."""
    if kind == "camera":
        bgra = np.frombuffer(data.raw_data, dtype=np.uint8).reshape(data.height, data.width, 4)
        return bgra[:, :, 2::-1].copy()
    return np.frombuffer(data.raw_data, dtype=np.float32).reshape(-1, 4).copy()


def spawn_sensor(world: Any, blueprint_id: str, transform: carla.Transform, parent: Any,
                 attributes: dict[str, str] | None = None) -> Any:
    blueprint = world.get_blueprint_library().find(blueprint_id)
    for key, value in (attributes or {}).items():
        if blueprint.has_attribute(key):
            blueprint.set_attribute(key, value)
    return world.spawn_actor(blueprint, transform, attach_to=parent)


class SyncedSensor:
    """One data sensor and the queue its readings arrive on."""

    def __init__(self, name: str, spec: SensorSpec, actor: Any, parent_id: int):
        self.name = name
        self.spec = spec
        self.actor = actor
        self.parent_id = parent_id
        self.readings: queue.Queue = queue.Queue()
        self.latest: np.ndarray | None = None
        self.latest_frame = -1
        actor.listen(self.readings.put)

    def collect(self, frame: int, timeout: float) -> None:
        """Wait for the reading of ``frame``; older readings are discarded."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                data = self.readings.get(timeout=max(remaining, 0.0)) if remaining > 0 else self.readings.get_nowait()
            except queue.Empty:
                raise SensorTimeout(
                    f"sensor {self.name!r} ({self.spec.kind}) sent no reading for frame {frame} within {timeout:g} s "
                    f"(last reading: frame {self.latest_frame}); the server may be overloaded, raise sensor_timeout"
                ) from None
            if data.frame < frame:
                continue
            if data.frame > frame:
                raise SensorTimeout(f"sensor {self.name!r} sent frame {data.frame} while frame {frame} was expected: "
                                    f"another client is ticking this world")
            self.latest = reading_to_array(self.spec.kind, data)
            self.latest_frame = frame
            return


class SensorManager:
    """Data sensors by name, synchronized to the world's ticks."""

    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout
        self.sensors: dict[str, SyncedSensor] = {}

    def attach(self, world: Any, name: str, spec: SensorSpec, parent: Any, dt: float,
               centre: tuple[float, float] = (0.0, 0.0)) -> int:
        """Spawn the sensor on ``parent`` (whose box centre is ``centre`` from its origin); returns its actor id."""
        if name in self.sensors:
            raise WorldError(f"a sensor named {name!r} is already attached; names in use: {', '.join(self.sensors)}")
        actor = spawn_sensor(world, SENSOR_BLUEPRINTS[spec.kind], mount_transform(spec, centre), parent,
                             blueprint_attributes(spec, dt))
        self.sensors[name] = SyncedSensor(name, spec, actor, parent.id)
        return actor.id

    def collect(self, frame: int) -> None:
        for sensor in self.sensors.values():
            sensor.collect(frame, self.timeout)

    def data(self, name: str, frame: int) -> np.ndarray:
        sensor = self.sensors.get(name)
        if sensor is None:
            raise WorldError(f"no sensor named {name!r}; attached sensors: {', '.join(self.sensors) or 'none'}")
        if sensor.latest_frame != frame:
            raise WorldError(f"sensor {name!r} has no reading for frame {frame} yet (attached after the last tick?)")
        return sensor.latest

    def detach(self, parent_id: int) -> list[Any]:
        """Forget the sensors mounted on one vehicle; returns their actors."""
        names = [name for name, sensor in self.sensors.items() if sensor.parent_id == parent_id]
        return [self.sensors.pop(name).actor for name in names]

    def clear(self) -> None:
        """Forget every sensor (their actors are destroyed by the caller)."""
        for sensor in self.sensors.values():
            sensor.actor.stop()
        self.sensors.clear()


@dataclass(frozen=True)
class RawCollision:
    frame: int
    actor_id: int
    other_id: int  # -1 for static geometry


class EventSensors:
    """Collision and lane-invasion sensors of the ego vehicles; events gathered once per tick."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._collisions: list[RawCollision] = []
        self._invasions: list[LaneInvasionEvent] = []
        self.actors: dict[int, list[Any]] = {}  # vehicle id -> its two sensors

    def attach(self, world: Any, vehicle: Any) -> list[int]:
        parent_id = vehicle.id
        collision = spawn_sensor(world, "sensor.other.collision", carla.Transform(), vehicle)
        invasion = spawn_sensor(world, "sensor.other.lane_invasion", carla.Transform(), vehicle)
        collision.listen(lambda event: self._on_collision(parent_id, event))
        invasion.listen(lambda event: self._on_invasion(parent_id, event))
        self.actors[parent_id] = [collision, invasion]
        return [collision.id, invasion.id]

    def detach(self, parent_id: int) -> list[Any]:
        return self.actors.pop(parent_id, [])

    def _on_collision(self, parent_id: int, event: Any) -> None:
        other = event.other_actor
        is_mover = other is not None and str(other.type_id).startswith(("vehicle.", "walker."))
        with self._lock:
            self._collisions.append(RawCollision(int(event.frame), parent_id, int(other.id) if is_mover else -1))

    def _on_invasion(self, parent_id: int, event: Any) -> None:
        markings = tuple(str(marking.type) for marking in event.crossed_lane_markings)
        with self._lock:
            self._invasions.append(LaneInvasionEvent(int(event.frame), parent_id, markings))

    def drain(self) -> tuple[list[RawCollision], list[LaneInvasionEvent]]:
        """Events received since the last drain (a late event counts for the tick it arrived in)."""
        with self._lock:
            collisions, self._collisions = self._collisions, []
            invasions, self._invasions = self._invasions, []
        return collisions, invasions

    def clear(self) -> None:
        for pair in self.actors.values():
            for actor in pair:
                actor.stop()
        self.actors.clear()
        self.drain()
