"""Vehicle motion: kinematic bicycle model, the ego's pedal/steering response, pure pursuit.

All functions work on arrays (one entry per vehicle).
"""
from __future__ import annotations

import numpy as np
from numba import njit

MAX_STEER = np.radians(35.0)   # road-wheel angle at steer = +-1
MAX_LATERAL_ACCEL = 8.5        # m/s^2: tyre grip; steering beyond it understeers
ENGINE_ACCEL = 3.5             # m/s^2 at full throttle from standstill
ENGINE_TOP_SPEED = 50.0        # m/s where engine force has dropped to zero
REVERSE_ACCEL = 2.0            # m/s^2 at full throttle in reverse
REVERSE_TOP_SPEED = 8.0        # m/s
MAX_BRAKE = 8.0                # m/s^2 at brake = 1
HAND_BRAKE = 6.0               # m/s^2
ROLLING = 0.15                 # m/s^2 rolling resistance
AERO = 4e-4                    # 1/m: aerodynamic drag coefficient (a = AERO * v^2)
ENGINE_BRAKE = 0.3             # m/s^2 with the throttle released


@njit(cache=True)
def ego_acceleration(speed, throttle, brake, reverse, hand_brake) -> np.ndarray:
    """Longitudinal acceleration (m/s^2, along the heading) of ego vehicles from their pedals.

    Compiled; every operation is exact arithmetic in the order of the numpy form it replaced
    (tests/world/test_ego_dynamics.py keeps that form and compares them bit for bit)."""
    accel = np.empty(len(speed))
    for k in range(len(speed)):
        v, pedal = speed[k], throttle[k]
        gear = -1.0 if reverse[k] else 1.0
        along = v * gear  # speed in the gear's own direction
        if reverse[k]:
            drive = REVERSE_ACCEL * pedal * min(max(1 - along / REVERSE_TOP_SPEED, 0.0), 1.0)
        else:
            drive = ENGINE_ACCEL * pedal * min(max(1 - along / ENGINE_TOP_SPEED, 0.0), 1.0)
        drive = (0.0 if hand_brake[k] else drive) * gear
        moving = abs(v) > 1e-3
        resist = (ROLLING + AERO * (v * v) + ENGINE_BRAKE * (1 - pedal) * (1.0 if moving else 0.0)
                  + MAX_BRAKE * brake[k] + HAND_BRAKE * (1.0 if hand_brake[k] else 0.0))
        if moving:
            accel[k] = drive - _sign(v) * resist
        else:  # resistance cannot push backwards
            accel[k] = _sign(drive) * max(abs(drive) - resist, 0.0)
    return accel


@njit(cache=True, inline="always")
def _sign(x: float) -> float:
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)


def resistance_stops(speed, throttle, reverse) -> np.ndarray:
    """Where resistance alone decelerates the car, so the speed must stop at zero, not cross it."""
    driving_through = (throttle > 0) & np.where(reverse, speed >= 0, speed <= 0)
    return ~driving_through


def integrate(xy, yaw, speed, accel, steer, wheelbase, dt, stop_at_zero, forward_only) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of the kinematic bicycle model about the vehicle centre; returns new xy, yaw, speed.

    Resistive forces must not reverse the motion: where ``stop_at_zero`` the speed is clamped at
    zero when the acceleration would carry it through zero; ``forward_only`` vehicles (autopilot)
    never move backwards.
    """
    new_speed = speed + accel * dt
    crossed = stop_at_zero & ((speed * new_speed < 0) | (forward_only & (new_speed < 0)))
    new_speed = np.where(crossed, 0.0, new_speed)
    v = 0.5 * (speed + new_speed)
    grip = np.arctan(MAX_LATERAL_ACCEL * wheelbase / np.maximum(v * v, 1e-6))
    steer = np.clip(steer, -grip, grip)
    beta = np.arctan(0.5 * np.tan(steer))  # slip angle at the centre (centre halfway between axles)
    heading = yaw + beta
    new_xy = xy + (v * dt)[:, None] * np.stack([np.cos(heading), np.sin(heading)], -1)
    new_yaw = yaw + v * dt * 2.0 * np.sin(beta) / wheelbase
    new_yaw = (new_yaw + np.pi) % (2 * np.pi) - np.pi
    return new_xy, new_yaw, new_speed


def pure_pursuit(xy, yaw, wheelbase, target) -> np.ndarray:
    """Road-wheel angle that steers the rear axle onto the arc through ``target`` points (N, 2)."""
    c, s = np.cos(yaw), np.sin(yaw)
    dx = target[:, 0] - (xy[:, 0] - 0.5 * wheelbase * c)  # from the rear axle
    dy = target[:, 1] - (xy[:, 1] - 0.5 * wheelbase * s)
    lateral = dy * c - dx * s                              # target offset across the heading
    dist2 = np.maximum(dx * dx + dy * dy, 1e-6)
    # curvature of the arc through the target: 2 sin(alpha) / distance = 2 lateral / distance^2
    return np.clip(np.arctan(2.0 * wheelbase * lateral / dist2), -MAX_STEER, MAX_STEER)
