"""Vehicle motion: kinematic bicycle model, the ego's pedal/steering response, pure pursuit.

All functions work on arrays (one entry per vehicle).
"""
from __future__ import annotations

import numpy as np

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


def ego_acceleration(speed, throttle, brake, reverse, hand_brake) -> np.ndarray:
    """Longitudinal acceleration (m/s^2, along the heading) of ego vehicles from their pedals."""
    gear = np.where(reverse, -1.0, 1.0)
    along = speed * gear  # speed in the gear's own direction
    drive = np.where(reverse,
                     REVERSE_ACCEL * throttle * np.clip(1 - along / REVERSE_TOP_SPEED, 0, 1),
                     ENGINE_ACCEL * throttle * np.clip(1 - along / ENGINE_TOP_SPEED, 0, 1))
    drive = np.where(hand_brake, 0.0, drive) * gear
    moving = np.abs(speed) > 1e-3
    resist = (ROLLING + AERO * speed**2 + ENGINE_BRAKE * (1 - throttle) * moving
              + MAX_BRAKE * brake + HAND_BRAKE * hand_brake)
    at_rest = np.sign(drive) * np.maximum(np.abs(drive) - resist, 0.0)  # resistance cannot push backwards
    return np.where(moving, drive - np.sign(speed) * resist, at_rest)


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
