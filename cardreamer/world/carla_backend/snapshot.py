"""Converting a ``carla.WorldSnapshot`` into the VehicleArrays every handler reads.

One snapshot per tick carries every actor's transform, velocity and acceleration. Which actors
are vehicles, and their bounding boxes, never change, so they are asked of the server only for
ids not seen before and kept while the actor lives.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cardreamer.geometry import from_ego_frame
from cardreamer.world.api import Pose, VehicleArrays


@dataclass(frozen=True)
class Shape:
    """A vehicle's bounding box (half length, half width, the box centre's offset from the actor origin) and mass (kg)."""

    extent: tuple[float, float]
    offset: tuple[float, float]
    mass: float


class ShapeCache:
    """Vehicle shapes by actor id (None for actors that are not vehicles), pruned to live actors."""

    def __init__(self) -> None:
        self.shapes: dict[int, Shape | None] = {}

    def remember(self, actors: Iterable[Any]) -> None:
        for actor in actors:
            if not str(actor.type_id).startswith("vehicle."):
                self.shapes[actor.id] = None
                continue
            box = actor.bounding_box
            self.shapes[actor.id] = Shape((box.extent.x, box.extent.y), (box.location.x, box.location.y),
                                          float(actor.get_physics_control().mass))

    def update(self, world: Any, live_ids: list[int]) -> None:
        """Learn the shapes of unseen ids (one get_actors call) and forget ids no longer alive."""
        unseen = [i for i in live_ids if i not in self.shapes]
        if unseen:
            self.remember(world.get_actors(unseen))
            for i in unseen:  # actors gone between the snapshot and the query
                self.shapes.setdefault(i, None)
        if len(self.shapes) > len(live_ids):
            live = set(live_ids)
            self.shapes = {i: s for i, s in self.shapes.items() if i in live}


def vehicle_arrays(snapshot: Any, shapes: ShapeCache, egos: set[int], hidden: set[int],
                   pending: dict[int, tuple[Pose, float, Shape]]) -> VehicleArrays:
    """VehicleArrays of the snapshot's vehicles (minus ``hidden``) plus vehicles spawned since it was taken."""
    rows = [a for a in snapshot if shapes.shapes.get(a.id) is not None and a.id not in hidden
            and a.id not in pending]  # a kept vehicle moved since the snapshot is where it was put
    n = len(rows) + len(pending)
    ids = np.empty(n, dtype=np.int64)
    pose = np.empty((n, 3))           # origin x, y, yaw (radians)
    motion = np.zeros((n, 4))         # vx, vy, ax, ay
    extent = np.empty((n, 2))
    offset = np.empty((n, 2))
    for i, actor in enumerate(rows):
        t, v, a = actor.get_transform(), actor.get_velocity(), actor.get_acceleration()
        shape = shapes.shapes[actor.id]
        ids[i] = actor.id
        pose[i] = (t.location.x, t.location.y, np.radians(t.rotation.yaw))
        motion[i] = (v.x, v.y, a.x, a.y)
        extent[i], offset[i] = shape.extent, shape.offset
    for i, (actor_id, (start, speed, shape)) in enumerate(pending.items(), start=len(rows)):
        ids[i] = actor_id
        pose[i] = (start.x, start.y, start.yaw)
        motion[i, :2] = speed * np.cos(start.yaw), speed * np.sin(start.yaw)
        extent[i], offset[i] = shape.extent, (0.0, 0.0)  # a pending pose is already the box centre
    yaw = np.angle(np.exp(1j * pose[:, 2]))
    xy = from_ego_frame(offset, pose[:, :2], yaw)  # the box centre, ``offset`` ahead/right of the actor origin
    cos, sin = np.cos(yaw), np.sin(yaw)
    velocity = motion[:, :2]
    return VehicleArrays(ids=ids, xy=xy, yaw=yaw, speed=velocity[:, 0] * cos + velocity[:, 1] * sin,
                         velocity=velocity.copy(), acceleration=motion[:, 2:].copy(), extent=extent,
                         is_ego=np.isin(ids, list(egos)))
