"""Reward terms and terminal settings: registered by name, each declaring the facts it needs.

Each step the task's parts fill one StepContext with facts (the route part the ones every task
has, listed in ``ROUTE_FACTS``; other parts theirs in ``ctx.facts``). Every term named in
``task.rewards`` is evaluated on it, multiplied by its scale, reported as ``info["r_<term>"]`` and
summed into the reward; every enabled ``task.terminal`` setting may end the episode.

A term or setting declares the facts it reads (``needs``); validation refuses a task that names
one whose facts none of its parts provides. Users add their own from any module:

    @reward_term("smooth", needs={"lead_gap"})
    def smooth(ctx: StepContext) -> float: ...
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from cardreamer.registry import Registry
from cardreamer.roadmap import Route
from cardreamer.world.api import World


@dataclass
class StepContext:
    """Everything a reward term or terminal check may look at after one tick.

    The fields are the route part's facts (present in every task); ``facts`` holds those of the
    task's other parts, by the names the parts declare in ``provides``.
    """

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
    stalled_for: float           # s the ego has been below 0.1 m/s
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def route_direction(self) -> np.ndarray:
        h = float(self.route.heading_at(self.route_s))
        return np.array([np.cos(h), np.sin(h)])


ROUTE_FACTS = frozenset(f.name for f in fields(StepContext) if f.name not in ("world", "ego_id", "route", "facts"))
"""Facts the route part (in every task) provides: the fields of StepContext."""


class TermParams(BaseModel):
    """Base of a reward term's settings: ``scale`` plus the term's own keys (unknown keys refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    scale: float


@dataclass(frozen=True)
class RewardTerm:
    """A reward term: ``fn(ctx)`` (or ``fn(ctx, settings)`` with ``params``), the facts it needs."""

    fn: Callable[..., float]
    needs: frozenset[str]
    params: type[BaseModel] | None = None

    @cached_property
    def settings(self) -> type[TermParams]:
        """The model of this term's ``task.rewards`` entry: ``scale`` plus its params."""
        if self.params is None:
            return TermParams

        return type(f"{self.params.__name__}Setting", (self.params,), {
            "__module__": self.params.__module__, "__annotations__": {"scale": float},
            "model_config": TermParams.model_config})

    def __call__(self, ctx: StepContext, settings: BaseModel) -> float:
        return self.fn(ctx, settings) if self.params is not None else self.fn(ctx)

    @property
    def doc(self) -> str:
        """The first paragraph of the term's docstring, on one line."""
        return " ".join((self.fn.__doc__ or "").strip().split("\n\n")[0].split())


REWARD_TERMS: Registry[RewardTerm] = Registry("reward term")


def reward_term(name: str, needs: Iterable[str] = (), params: type[BaseModel] | None = None
                ) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Register a reward term under ``name`` (usable in any task's ``rewards:`` mapping).

    ``needs``: the facts it reads (those of ``ROUTE_FACTS`` are always there). ``params``: a
    pydantic model of its settings, given as ``name: {scale: 1.0, key: value}`` and passed to
    ``fn(ctx, settings)``; without it the entry is just the scale and ``fn(ctx)`` is called.
    """
    def decorate(fn: Callable[..., float]) -> Callable[..., float]:
        REWARD_TERMS.register(name, RewardTerm(fn, frozenset(needs), params))
        return fn
    return decorate


_order = itertools.count()


@dataclass(frozen=True)
class TerminalSetting:
    """A ``task.terminal`` key: its type and default and, unless the env handles it, a check.

    ``check(ctx, value)`` runs while the setting is enabled (neither false nor null) and ends the
    episode with ``reason`` when true; ``needs`` are the facts it reads.
    """

    type: Any
    default: Any
    check: Callable[[StepContext, Any], bool] | None
    reason: str
    needs: frozenset[str]
    order: int = field(default_factory=lambda: next(_order))  # checks run in the order they were registered


TERMINAL_SETTINGS: Registry[TerminalSetting] = Registry("terminal setting")


def terminal_setting(name: str, type_: Any, default: Any, reason: str | None = None, needs: Iterable[str] = ()
                     ) -> Callable[[Callable[[StepContext, Any], bool]], Callable[[StepContext, Any], bool]]:
    """Register a terminal setting and its check (ending the episode with ``reason``, default ``name``)."""
    def decorate(fn: Callable[[StepContext, Any], bool]) -> Callable[[StepContext, Any], bool]:
        TERMINAL_SETTINGS.register(name, TerminalSetting(type_, default, fn, reason or name, frozenset(needs)))
        return fn
    return decorate


def enabled(value: Any) -> bool:
    """Whether a terminal setting's value switches its check on (false and null switch it off)."""
    return value is not None and value is not False


def terminal_defaults() -> dict[str, Any]:
    return {name: setting.default for name, setting in TERMINAL_SETTINGS.items()}


def terminal_checks() -> list[tuple[str, TerminalSetting]]:
    """The settings that have a check, in registration order."""
    return sorted(((n, s) for n, s in TERMINAL_SETTINGS.items() if s.check is not None), key=lambda i: i[1].order)


OUT_OF_LANE_THRESHOLD = 0.85
"""Metres off the lane centre beyond which ``out_of_lane`` penalises (unless a task sets its own)."""

WAYPOINT_SPACING = 4.0
"""Metres between the route waypoints whose passing earns the waypoint reward."""


@reward_term("waypoint", needs={"route_s", "route_s_prev"})
def waypoint_reached(ctx: StepContext) -> float:
    """+1 for each route waypoint (every 4 m) passed this step."""
    return float(np.floor(ctx.route_s / WAYPOINT_SPACING) - np.floor(ctx.route_s_prev / WAYPOINT_SPACING))


@reward_term("speed", needs={"velocity", "desired_speed"})
def speed_toward_desired(ctx: StepContext) -> float:
    """1 at the desired speed along the route, less for deviation and for lateral speed."""
    direction = ctx.route_direction
    v_lon = float(ctx.velocity @ direction)
    v_lat = abs(float(ctx.velocity[0] * direction[1] - ctx.velocity[1] * direction[0]))
    return (1.0 - abs(v_lon - ctx.desired_speed) / ctx.desired_speed) - v_lat / ctx.desired_speed


@reward_term("collision", needs={"collided", "collision_speed"})
def collision(ctx: StepContext) -> float:
    """-(1 + impact speed / desired speed) on a collision, else 0."""
    return -(1.0 + ctx.collision_speed / ctx.desired_speed) if ctx.collided else 0.0


class OutOfLane(BaseModel):
    threshold: float = Field(OUT_OF_LANE_THRESHOLD, gt=0)  # m off the lane centre


@reward_term("out_of_lane", needs={"lateral_offset"}, params=OutOfLane)
def out_of_lane(ctx: StepContext, settings: OutOfLane) -> float:
    """-1 while the ego is more than ``threshold`` (0.85 m) off its route's lane centre.

    The default is where a 1.8 m wide car's side reaches the marking of a 3.5 m lane: the
    scripted expert's right turn swings out to 0.72 m, which a tighter threshold would punish."""
    return -1.0 if abs(ctx.lateral_offset) > settings.threshold else 0.0


@reward_term("time")
def time_penalty(ctx: StepContext) -> float:
    """-1 every step."""
    return -1.0


@reward_term("destination", needs={"reached_destination"})
def destination(ctx: StepContext) -> float:
    """+1 on the step the destination is reached."""
    return 1.0 if ctx.reached_destination else 0.0


# ----------------------------------------------------------------------------- termination
PositiveOrNull = Annotated[float, Field(gt=0)] | None

TERMINAL_SETTINGS.register("time_limit", TerminalSetting(Annotated[StrictInt, Field(ge=1)], 1000, None,
                                                         "time_limit", frozenset()))
"""Steps; reaching it truncates the episode (the env counts them)."""


@terminal_setting("collision", StrictBool, True, needs={"collided"})
def _collided(ctx: StepContext, value: bool) -> bool:
    """Terminate on any collision."""
    return ctx.collided


@terminal_setting("out_of_lane", PositiveOrNull, 3.0, needs={"lateral_offset"})
def _out_of_lane(ctx: StepContext, limit: float) -> bool:
    """Terminate beyond this lateral offset from the route (m); null: never."""
    return abs(ctx.lateral_offset) > limit


@terminal_setting("off_road", StrictBool, True, needs={"off_road"})
def _off_road(ctx: StepContext, value: bool) -> bool:
    """Terminate when the ego's centre leaves every driving lane."""
    return ctx.off_road


@terminal_setting("stall_time", PositiveOrNull, 60.0, reason="stalled", needs={"stalled_for"})
def _stalled(ctx: StepContext, limit: float) -> bool:
    """Terminate after this long below 0.1 m/s (s); null: never."""
    return ctx.stalled_for >= limit


@terminal_setting("destination", StrictBool, True, needs={"reached_destination"})
def _destination(ctx: StepContext, value: bool) -> bool:
    """Terminate (successfully) on reaching the end of the route."""
    return ctx.reached_destination
