"""The ego and its sensors outlive episodes: teleported, stopped and reset, never spawned again while they live."""
from __future__ import annotations

import carla
import numpy as np
import pytest
from carla_standin import CollisionData

from cardreamer.world.api import Pose, SensorSpec, WorldError

CAMERA = SensorSpec("camera", width=8, height=6)


def lane_pose(world, x: float, y: float) -> Pose:
    lane, s, _ = world.road_map.locate(np.array([x, y]))
    return Pose(x, y, float(world.road_map.lanes[lane].heading_at(s)))


def episode(world, pose: Pose, ticks: int = 5, throttle: float = 1.0, camera: bool = True) -> int:
    """One episode: spawn the ego at ``pose`` (with a camera), drive it on ``throttle``."""
    ego = world.spawn_vehicle(pose, role="ego")
    if camera:
        world.attach_sensor("camera", CAMERA)
    for _ in range(ticks):
        world.apply_control(ego, carla.VehicleControl(throttle=throttle))
        world.tick()
        if camera:
            assert world.sensor_data("camera")[0, 0, 2] == world.frame % 256  # this tick's image
    return ego


def test_the_ego_and_its_sensors_are_spawned_once_across_episodes(make_world, server):
    world = make_world()
    pose = lane_pose(world, 5.8, 60.0)
    egos = []
    for seed in range(5):
        world.reset(seed)
        egos.append(episode(world, pose))
    assert len(set(egos)) == 1
    assert server.spawned == {"vehicle.tesla.model3": 1, "sensor.camera.rgb": 1, "sensor.other.collision": 1,
                              "sensor.other.lane_invasion": 1}
    world.close()
    assert server.live() == []


def test_a_kept_ego_starts_where_asked_at_rest_with_neutral_controls(make_world, server):
    world = make_world()
    start = lane_pose(world, 5.8, 60.0)
    ego = episode(world, start, ticks=20)  # full throttle: moving fast when the episode ends
    assert server.actors[ego].speed > 5.0
    world.reset(1)
    assert world.vehicles().ids.size == 0  # the parked ego is not part of the new episode
    assert world.spawn_vehicle(start, role="ego") == ego
    v = world.vehicles()
    assert v.xy[v.row(ego)] == pytest.approx([start.x, start.y]) and v.speed[v.row(ego)] == 0.0
    world.tick()  # no control applied in this episode yet: the last episode's throttle must not carry over
    v = world.vehicles()
    assert v.speed[v.row(ego)] == pytest.approx(0.0, abs=1e-9)
    assert v.xy[v.row(ego)] == pytest.approx([start.x, start.y], abs=1e-6)
    assert world.route_progress(ego) == 0.0
    world.reset(2)  # parked with its brakes on; a start speed and neutral controls release them
    assert world.spawn_vehicle(start, role="ego", speed=5.0) == ego
    world.tick()
    v = world.vehicles()
    assert v.speed[v.row(ego)] == pytest.approx(5.0 - 0.2 * world.dt)  # only the stand-in's rolling resistance


def test_a_teleported_ego_reports_no_event_of_its_old_place_or_episode(make_world, server):
    world = make_world()
    ego = episode(world, lane_pose(world, 9.0, 60.0), ticks=2, throttle=0.0, camera=False)
    collision_sensor = next(s for s in server.live("sensor.other.collision"))
    last_frame = world.frame
    world.reset(1)
    assert episode(world, lane_pose(world, 5.8, 60.0), ticks=0, camera=False) == ego  # the next lane, same road
    collision_sensor.emit(CollisionData(last_frame, server.actors[ego], None))  # streamed late, previous episode
    for _ in range(3):
        world.tick()
        # the lane-invasion callback compares each frame's place with the last one: kept across the teleport, it
        # reports the marking between the two lanes in the new episode's first frame
        assert world.lane_invasions(ego) == [] and world.collisions(ego) == []


def test_a_kept_ego_destroyed_meanwhile_is_spawned_anew(make_world, server):
    world = make_world()
    pose = lane_pose(world, 5.8, 60.0)
    ego = episode(world, pose)
    world.reset(1)
    server.world.execute(carla.command.DestroyActor(ego))  # e.g. removed by another tool on the server
    world.tick()
    new = world.spawn_vehicle(pose, role="ego")
    assert new != ego and server.spawned["vehicle.tesla.model3"] == 2
    assert len(server.live("sensor.")) == 2  # the old ego's sensors destroyed, the new one's two event sensors
    world.attach_sensor("camera", CAMERA)
    assert server.spawned["sensor.camera.rgb"] == 2


def test_a_kept_sensor_is_replaced_when_asked_otherwise_and_dropped_when_not_asked(make_world, server):
    world = make_world()
    pose = lane_pose(world, 5.8, 60.0)
    episode(world, pose)
    world.reset(1)
    world.spawn_vehicle(pose, role="ego")
    with pytest.raises(WorldError, match="kept from the last episode but not attached"):
        world.sensor_data("camera")
    world.attach_sensor("camera", SensorSpec("camera", width=4, height=4))  # another spec: a new camera
    assert server.spawned["sensor.camera.rgb"] == 2 and len(server.live("sensor.camera.rgb")) == 1
    world.reset(2)  # kept, then not attached in this episode: it goes at the next reset
    world.spawn_vehicle(pose, role="ego")
    world.reset(3)
    assert server.live("sensor.camera.rgb") == [] and len(server.live()) == 3  # the ego, its event sensors
