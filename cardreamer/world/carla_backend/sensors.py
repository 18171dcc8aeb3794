"""CARLA sensors on the ego: frame-synchronized camera and lidar readings, and event sensors.

CARLA delivers sensor data on its own threads, possibly late and possibly for an older frame.
Each data sensor therefore feeds a queue; after every ``world.tick()`` the manager waits for the
reading whose ``frame`` equals the tick's frame, dropping stale ones, and raises SensorTimeout when
it does not come. Collision and lane-invasion sensors report events only when something happens;
their events are gathered per tick. Sensors outlive episodes (their vehicle is kept and teleported):
each has the first frame of its current episode, and nothing of an earlier frame reaches the caller.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import carla
import numpy as np

from cardreamer.world.api import LaneInvasionEvent, SensorSpec, WorldError
from cardreamer.world.carla_backend.errors import SensorTimeout

log = logging.getLogger(__name__)

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
        self.since = -1        # the first frame of the sensor's current episode
        self.claimed = True    # attached (again) in the current episode
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

    def reclaim(self, name: str, spec: SensorSpec, parent_id: int, since: int) -> int | None:
        """The actor id of sensor ``name`` kept from an earlier episode when it is ``spec`` on ``parent_id``: claimed
        for this episode, whose readings start at frame ``since``. None when there is no such sensor."""
        sensor = self.sensors.get(name)
        if sensor is None or sensor.claimed or sensor.spec != spec or sensor.parent_id != parent_id:
            return None
        sensor.claimed, sensor.since = True, since
        return sensor.actor.id

    def unclaimed(self, name: str) -> Any | None:
        """Forget sensor ``name`` when it is a kept one not claimed in this episode; returns its actor."""
        sensor = self.sensors.get(name)
        if sensor is None or sensor.claimed:
            return None
        sensor.actor.stop()
        return self.sensors.pop(name).actor

    def keep(self, parent_ids: set[int]) -> list[Any]:
        """At a reset: keep the sensors claimed in the ending episode on ``parent_ids`` (unclaimed for the next one);
        forget and return the actors of the others."""
        dropped = [name for name, sensor in self.sensors.items()
                   if sensor.parent_id not in parent_ids or not sensor.claimed]
        for sensor in self.sensors.values():
            sensor.claimed = False
        for name in dropped:
            self.sensors[name].actor.stop()
        return [self.sensors.pop(name).actor for name in dropped]

    def collect(self, frame: int) -> None:
        for sensor in self.sensors.values():
            sensor.collect(frame, self.timeout)

    def data(self, name: str, frame: int) -> np.ndarray:
        sensor = self.sensors.get(name)
        if sensor is None:
            raise WorldError(f"no sensor named {name!r}; attached sensors: {', '.join(self.sensors) or 'none'}")
        if not sensor.claimed:
            raise WorldError(f"sensor {name!r} was kept from the last episode but not attached in this one")
        if sensor.latest_frame != frame or frame < sensor.since:
            raise WorldError(f"sensor {name!r} has no reading for frame {frame} of this episode yet (attached after "
                             f"the last tick?)")
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
    other_id: int   # -1 for static geometry
    impulse: float  # N s, the length of the event's normal_impulse


def impact_speed(impulse: float, mass: float, other_mass: float | None) -> float:
    """Closing speed (m/s) that a perfectly plastic contact turns into this impulse: J / reduced mass.

    ``other_mass`` None is static geometry (infinitely heavy). Post-impact velocities cannot tell it:
    by the time the snapshot is taken the contact has already slowed both vehicles.
    """
    reduced = mass if other_mass is None else mass * other_mass / (mass + other_mass)
    return impulse / reduced


class EventSensors:
    """Collision and lane-invasion sensors of the ego vehicles; the events of a frame gathered after its tick.

    Events come on client threads after ``world.tick()`` returns (CARLA 0.9.16 computes lane invasions
    client-side, in an on-tick callback). An on-tick callback registered after every invasion sensor
    (callbacks run in registration order) marks each frame's callbacks as done: ``drain(frame)`` waits
    for that mark before taking the events of the frame.
    """

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._done = threading.Condition()
        self._done_frame = -1
        self._barrier: tuple[Any, int] | None = None  # (world, on_tick callback id)
        self._collisions: list[RawCollision] = []
        self._invasions: list[LaneInvasionEvent] = []
        self._since: dict[int, int] = {}        # vehicle id -> the first frame of its current episode
        self.actors: dict[int, list[Any]] = {}  # vehicle id -> its two sensors

    def attach(self, world: Any, vehicle: Any) -> list[int]:
        parent_id = vehicle.id
        collision = spawn_sensor(world, "sensor.other.collision", carla.Transform(), vehicle)
        invasion = spawn_sensor(world, "sensor.other.lane_invasion", carla.Transform(), vehicle)
        collision.listen(lambda event: self._on_collision(parent_id, event))
        self.actors[parent_id] = [collision, invasion]
        self._listen_for_invasions(world, parent_id)
        return [collision.id, invasion.id]

    def _listen_for_invasions(self, world: Any, parent_id: int) -> None:
        """(Re)start the lane-invasion callback, then the barrier after it (on-tick callbacks run in order)."""
        self.actors[parent_id][1].listen(lambda event: self._on_invasion(parent_id, event))
        self._remove_barrier()
        self._barrier = (world, world.on_tick(self._on_tick))

    def restart(self, world: Any, parent_id: int, since: int) -> None:
        """A kept vehicle starts a new episode (teleported): its events start at frame ``since``.

        The lane-invasion sensor listens afresh: CARLA's client-side callback compares each frame's box corners with
        the previous frame's, so after a teleport it would report every marking between the old and new place;
        a new listener starts without a previous frame. Events of earlier frames still queued are dropped.
        """
        self._listen_for_invasions(world, parent_id)
        with self._done:
            self._since[parent_id] = since
            self._collisions = [c for c in self._collisions if c.actor_id != parent_id]
            self._invasions = [i for i in self._invasions if i.actor_id != parent_id]

    def detach(self, parent_id: int) -> list[Any]:
        self._since.pop(parent_id, None)
        return self.actors.pop(parent_id, [])

    def _remove_barrier(self) -> None:
        if self._barrier is not None:
            world, callback_id = self._barrier
            self._barrier = None
            world.remove_on_tick(callback_id)

    def _on_tick(self, snapshot: Any) -> None:
        with self._done:
            self._done_frame = max(self._done_frame, int(snapshot.frame))
            self._done.notify_all()

    def _on_collision(self, parent_id: int, event: Any) -> None:
        other = event.other_actor
        is_mover = other is not None and str(other.type_id).startswith(("vehicle.", "walker."))
        impulse = event.normal_impulse
        with self._done:
            if int(event.frame) < self._since.get(parent_id, -1):
                return  # streamed late from the vehicle's previous episode
            self._collisions.append(RawCollision(int(event.frame), parent_id, int(other.id) if is_mover else -1,
                                                 float(np.sqrt(impulse.x ** 2 + impulse.y ** 2 + impulse.z ** 2))))

    def _on_invasion(self, parent_id: int, event: Any) -> None:
        markings = tuple(str(marking.type) for marking in event.crossed_lane_markings)
        with self._done:
            if int(event.frame) < self._since.get(parent_id, -1):
                return
            self._invasions.append(LaneInvasionEvent(int(event.frame), parent_id, markings))

    def drain(self, frame: int) -> tuple[list[RawCollision], list[LaneInvasionEvent]]:
        """The events of ``frame`` and earlier, once the frame's on-tick callbacks are done (bounded wait).

        A collision delivered after the frame's on-tick callbacks still counts, at the next drain, with its own frame.
        """
        with self._done:
            if self._barrier is not None and not self._done.wait_for(lambda: self._done_frame >= frame, self.timeout):
                log.warning("the on-tick callbacks of frame %d did not run within %g s; its lane invasions may "
                            "come with a later tick", frame, self.timeout)
            collisions = [c for c in self._collisions if c.frame <= frame]
            invasions = [i for i in self._invasions if i.frame <= frame]
            self._collisions = [c for c in self._collisions if c.frame > frame]
            self._invasions = [i for i in self._invasions if i.frame > frame]
        return collisions, invasions

    def clear(self) -> None:
        for pair in self.actors.values():
            for actor in pair:
                actor.stop()
        self.actors.clear()
        self._since.clear()
        self._remove_barrier()
        with self._done:
            self._collisions, self._invasions = [], []
