"""Reward terms and terminal conditions, registered by name and referenced from task YAML.

Each step the task builds one StepContext; every term named in ``task.rewards`` is evaluated on
it, multiplied by its scale, reported as ``info["r_<term>"]`` and summed into the reward.
Users add terms with ``@reward_term("name")`` in their own module, without editing the core.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cardreamer.roadmap import Route
from cardreamer.world.api import World


@dataclass
class StepContext:
    """Everything a reward term or terminal condition may look at after one tick."""

    world: World
    ego_id: int
    route: Route
    desired_speed: float
    dt: float
    step: int
    speed: float                 # m/s along the ego's heading
    velocity: np.ndarray         # (2,) world frame
    route_s: float               # progress along the route (m)
    route_s_prev: float
    lateral_offset: float        # m from the route centre line, positive right
    heading_error: float         # rad, ego yaw minus route heading, wrapped
    collided: bool
    collision_speed: float       # m/s relative speed of the worst collision this tick
    lane_invasions: int
    off_road: bool
    reached_destination: bool
    params: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)  # task logic may add facts here

    @property
    def route_direction(self) -> np.ndarray:
        h = float(self.route.heading_at(self.route_s))
        return np.array([np.cos(h), np.sin(h)])


RewardTerm = Callable[[StepContext], float]
REWARD_TERMS: dict[str, RewardTerm] = {}


def reward_term(name: str) -> Callable[[RewardTerm], RewardTerm]:
    """Register a reward term under ``name`` (usable in any task's ``rewards:`` mapping)."""
    def decorate(fn: RewardTerm) -> RewardTerm:
        REWARD_TERMS[name] = fn
        return fn
    return decorate


OUT_OF_LANE_THRESHOLD = 0.85
"""Metres off the lane centre beyond which ``out_of_lane`` penalises (unless a task sets its own)."""

WAYPOINT_SPACING = 4.0
"""Metres between the route waypoints whose passing earns the waypoint reward."""


@reward_term("waypoint")
def waypoint_reached(ctx: StepContext) -> float:
    """+1 for each route waypoint (every 4 m) passed this step."""
    return float(np.floor(ctx.route_s / WAYPOINT_SPACING) - np.floor(ctx.route_s_prev / WAYPOINT_SPACING))


@reward_term("speed")
def speed_toward_desired(ctx: StepContext) -> float:
    """1 at the desired speed along the route, less for deviation and for lateral speed."""
    direction = ctx.route_direction
    v_lon = float(ctx.velocity @ direction)
    v_lat = abs(float(ctx.velocity[0] * direction[1] - ctx.velocity[1] * direction[0]))
    return (1.0 - abs(v_lon - ctx.desired_speed) / ctx.desired_speed) - v_lat / ctx.desired_speed


@reward_term("collision")
def collision(ctx: StepContext) -> float:
    """-(1 + impact speed / desired speed) on a collision, else 0."""
    return -(1.0 + ctx.collision_speed / ctx.desired_speed) if ctx.collided else 0.0


@reward_term("out_of_lane")
def out_of_lane(ctx: StepContext) -> float:
    """-1 while the ego is more than ``out_of_lane_threshold`` off its route's lane centre.

    The default, 0.85 m, is where a 1.8 m wide car's side reaches the marking of a 3.5 m lane: the
    scripted expert's right turn swings out to 0.72 m, which a tighter threshold would punish."""
    threshold = ctx.params.get("out_of_lane_threshold", OUT_OF_LANE_THRESHOLD)
    return -1.0 if abs(ctx.lateral_offset) > threshold else 0.0


@reward_term("time")
def time_penalty(ctx: StepContext) -> float:
    """-1 every step."""
    return -1.0


@reward_term("destination")
def destination(ctx: StepContext) -> float:
    """+1 on the step the destination is reached."""
    return 1.0 if ctx.reached_destination else 0.0


# ----------------------------------------------------------------------------- termination
TERMINAL_DEFAULTS: dict[str, Any] = {
    "time_limit": 1000,     # steps; reaching it truncates the episode
    "collision": True,      # terminate on any collision
    "out_of_lane": 3.0,     # terminate beyond this lateral offset from the route (m); null: never
    "off_road": True,       # terminate when the ego's centre leaves every driving lane
    "stall_time": 60.0,     # terminate after this long below 0.1 m/s (s); null: never
    "destination": True,    # terminate (successfully) on reaching the end of the route
}

TerminalCheck = Callable[[StepContext, dict[str, Any]], str | None]
TERMINAL_CHECKS: list[TerminalCheck] = []


def terminal_check(fn: TerminalCheck) -> TerminalCheck:
    """Register a terminal condition: returns a reason string to end the episode, else None."""
    TERMINAL_CHECKS.append(fn)
    return fn


@terminal_check
def _collided(ctx: StepContext, cfg: dict[str, Any]) -> str | None:
    return "collision" if cfg["collision"] and ctx.collided else None


@terminal_check
def _out_of_lane(ctx: StepContext, cfg: dict[str, Any]) -> str | None:
    limit = cfg["out_of_lane"]
    return "out_of_lane" if limit is not None and abs(ctx.lateral_offset) > limit else None


@terminal_check
def _off_road(ctx: StepContext, cfg: dict[str, Any]) -> str | None:
    return "off_road" if cfg["off_road"] and ctx.off_road else None


@terminal_check
def _stalled(ctx: StepContext, cfg: dict[str, Any]) -> str | None:
    limit = cfg["stall_time"]
    return "stalled" if limit is not None and ctx.extra.get("stalled_for", 0.0) >= limit else None


@terminal_check
def _destination(ctx: StepContext, cfg: dict[str, Any]) -> str | None:
    return "destination" if cfg["destination"] and ctx.reached_destination else None


def register_terminal_settings(**defaults: Any) -> None:
    """Declare extra ``task.terminal`` keys (with defaults) read by a module's own terminal checks."""
    for name, value in defaults.items():
        if name in TERMINAL_DEFAULTS:
            raise ValueError(f"terminal setting {name!r} is already registered")
        TERMINAL_DEFAULTS[name] = value
