"""The ego's kinematic bicycle model driven by carla.VehicleControl, on the straight two_lane map."""
from __future__ import annotations

import carla
import numpy as np
import pytest
from world_helpers import pose_on_lane

from cardreamer.world.embedded import EmbeddedWorld


@pytest.fixture
def straight(project_map):
    road_map = project_map("two_lane")
    world = EmbeddedWorld(road_map, seed=0)
    lane = max(road_map.lanes, key=lambda lane: lane.length)
    return world, lane


def run(world, ego, ticks, **control):
    for _ in range(ticks):
        world.apply_control(ego, carla.VehicleControl(**control))
        world.tick()
    v = world.vehicles()
    return v, v.row(ego)


def test_full_throttle_accelerates_like_a_car(straight):
    world, lane = straight
    ego = world.spawn_vehicle(pose_on_lane(world.road_map, lane.index, 5.0), role="ego")
    v, i = run(world, ego, 30, throttle=1.0)
    assert 8.0 < v.speed[i] < 11.0          # ~3 m/s^2 from standstill: 0-100 km/h in about 10 s
    assert v.acceleration[i] @ [np.cos(v.yaw[i]), np.sin(v.yaw[i])] == pytest.approx(3.0, abs=0.4)
    v, i = run(world, ego, 70, throttle=1.0)
    assert 22.0 < v.speed[i] < 32.0         # 10 s of full throttle, acceleration dropping with speed


def test_brake_stops_and_coasting_slows(straight):
    world, lane = straight
    ego = world.spawn_vehicle(pose_on_lane(world.road_map, lane.index, 5.0), role="ego", speed=20.0)
    v, i = run(world, ego, 10)
    assert 18.5 < v.speed[i] < 19.9         # coasting: rolling resistance, drag, engine braking
    x0 = v.xy[i].copy()
    v, i = run(world, ego, 40, brake=1.0)
    assert v.speed[i] == 0.0                # stops and does not roll backwards
    assert 20.0 < np.linalg.norm(v.xy[i] - x0) < 30.0  # ~8 m/s^2 from 19 m/s: about 23 m
    v, i = run(world, ego, 20, brake=1.0)
    assert v.speed[i] == 0.0


def test_positive_steer_turns_toward_increasing_yaw(straight):
    world, lane = straight
    ego = world.spawn_vehicle(pose_on_lane(world.road_map, lane.index, 5.0), role="ego", speed=5.0)
    yaw0 = world.vehicles().yaw[0]
    v, i = run(world, ego, 10, throttle=0.3, steer=0.5)
    turned = np.angle(np.exp(1j * (v.yaw[i] - yaw0)))
    assert turned > 0.3                     # CARLA: positive steer turns right, yaw grows (+y side)
    v, i = run(world, ego, 10, throttle=0.3, steer=-1.0)
    assert np.angle(np.exp(1j * (v.yaw[i] - yaw0))) < turned - 0.3


def test_turning_circle_and_grip_limit(straight):
    world, lane = straight
    ego = world.spawn_vehicle(pose_on_lane(world.road_map, lane.index, 50.0), role="ego", speed=3.0)
    yaws = []
    for _ in range(40):
        world.apply_control(ego, carla.VehicleControl(throttle=0.12, steer=1.0))
        world.tick()
        yaws.append(world.vehicles().yaw[0])
    v = world.vehicles()
    rate = np.mean(np.diff(np.unwrap(yaws))) / world.dt
    radius = abs(v.speed[0] / rate)
    assert 3.5 < radius < 6.0               # 2.9 m wheelbase at 35 degrees: about a 4.2 m radius
    fast = world.spawn_vehicle(pose_on_lane(world.road_map, lane.index, 200.0), role="ego", speed=25.0)
    yaw0 = world.vehicles().yaw[1]
    world.apply_control(fast, carla.VehicleControl(steer=1.0))
    world.tick()
    v = world.vehicles()
    lateral_accel = v.speed[1] * abs(np.angle(np.exp(1j * (v.yaw[1] - yaw0)))) / world.dt
    assert lateral_accel < 9.0              # tyres cannot do more: a full steer at speed understeers


def test_reverse_moves_backwards(straight):
    world, lane = straight
    ego = world.spawn_vehicle(pose_on_lane(world.road_map, lane.index, 50.0), role="ego")
    v, i = run(world, ego, 20, throttle=0.5, reverse=True)
    assert -4.0 < v.speed[i] < -0.5
    heading = np.array([np.cos(v.yaw[i]), np.sin(v.yaw[i])])
    assert (v.xy[i] - lane.position(50.0)) @ heading < -1.0
    v, i = run(world, ego, 30, brake=1.0)
    assert v.speed[i] == 0.0


def test_autopilot_vehicles_refuse_apply_control(straight):
    world, lane = straight
    other = world.spawn_vehicle(pose_on_lane(world.road_map, lane.index, 50.0))
    with pytest.raises(Exception, match="autopilot"):
        world.apply_control(other, carla.VehicleControl(throttle=1.0))


def numpy_ego_acceleration(speed, throttle, brake, reverse, hand_brake):
    """The reference: the vectorized numpy form the compiled ``ego_acceleration`` replaced."""
    from cardreamer.world.embedded.dynamics import (
        AERO,
        ENGINE_ACCEL,
        ENGINE_BRAKE,
        ENGINE_TOP_SPEED,
        HAND_BRAKE,
        MAX_BRAKE,
        REVERSE_ACCEL,
        REVERSE_TOP_SPEED,
        ROLLING,
    )

    gear = np.where(reverse, -1.0, 1.0)
    along = speed * gear
    drive = np.where(reverse,
                     REVERSE_ACCEL * throttle * np.clip(1 - along / REVERSE_TOP_SPEED, 0, 1),
                     ENGINE_ACCEL * throttle * np.clip(1 - along / ENGINE_TOP_SPEED, 0, 1))
    drive = np.where(hand_brake, 0.0, drive) * gear
    moving = np.abs(speed) > 1e-3
    resist = (ROLLING + AERO * speed**2 + ENGINE_BRAKE * (1 - throttle) * moving
              + MAX_BRAKE * brake + HAND_BRAKE * hand_brake)
    at_rest = np.sign(drive) * np.maximum(np.abs(drive) - resist, 0.0)
    return np.where(moving, drive - np.sign(speed) * resist, at_rest)


def test_compiled_ego_acceleration_equals_numpy_bit_for_bit():
    from cardreamer.world.embedded.dynamics import ego_acceleration

    rng = np.random.default_rng(0)
    n = 5000
    speed = rng.normal(size=n) * rng.choice([1e-4, 1.0, 30.0], size=n)
    speed[:50] = 0.0
    throttle = np.where(rng.uniform(size=n) < 0.3, 0.0, rng.uniform(size=n))
    brake = np.where(rng.uniform(size=n) < 0.5, 0.0, rng.uniform(size=n))
    reverse, hand_brake = rng.uniform(size=n) < 0.3, rng.uniform(size=n) < 0.1
    got = ego_acceleration(speed, throttle, brake, reverse, hand_brake)
    want = numpy_ego_acceleration(speed, throttle, brake, reverse, hand_brake)
    assert np.array_equal(got, want)
    assert (got == 0).sum() > 10 and (got > 0).sum() > 100 and (got < 0).sum() > 100
