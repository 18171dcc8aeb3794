"""Part ``traffic_rules``: red-light violations and stop-sign compliance, with their reward terms
and terminal settings.

The part finds every stop line on the ego's route (traffic lights and stop signs, including stop
signs a task adds by coordinates) and each step provides the facts

- ``red_light_violation``: the ego's centre crossed a stop line whose light is red this step;
- ``stop_sign_complied``: this step completed a full stop (below ``stop_speed``, 0.1 m/s, for
  ``stop_time`` s, 1 s) within ``stop_zone`` m (8 m) before a stop sign's line;
- ``stop_sign_violation``: the ego's centre crossed a stop sign's line without such a stop.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import StrictBool

from cardreamer.config import NonNegative, PositiveFloat
from cardreamer.rewards import StepContext, reward_term, terminal_setting
from cardreamer.task_runtime import TASK_PARTS, PartParams, TaskPart
from cardreamer.world.api import TrafficLightStates, World


@TASK_PARTS.register("traffic_rules")
class TrafficRules(TaskPart):
    """Watches the ego at the traffic lights and stop signs on its route."""

    class Params(PartParams):
        stop_time: NonNegative = 1.0     # s at a standstill ...
        stop_zone: NonNegative = 8.0     # ... within this many metres before the stop line
        stop_speed: PositiveFloat = 0.1  # m/s below which the ego counts as standing

    provides = frozenset({"red_light_violation", "stop_sign_complied", "stop_sign_violation"})

    def reset(self, world: World, rng: np.random.Generator) -> None:
        route, road_map = self.task.route, self.task.road_map
        lanes_on_route = set(route.lanes.tolist())
        self.stop_lines: list[tuple[int, str, float]] = []
        for index, signal in enumerate(road_map.signals):
            if signal.lane in lanes_on_route:
                xy = road_map.lanes[signal.lane].position(signal.stop_s)
                s, lateral = route.project(xy[None])
                if abs(lateral[0]) < 2.0:
                    self.stop_lines.append((index, signal.kind, float(s[0])))
        self.stopped_for = 0.0
        self.complied: set[int] = set()

    def observe(self, ctx: StepContext) -> None:
        p = self.params
        lights = ctx.world.traffic_lights()
        state_of = dict(zip(lights.signals.tolist(), lights.states.tolist()))
        red = complied = violated = False
        for index, kind, stop_s in self.stop_lines:
            crossed = ctx.route_s_prev < stop_s <= ctx.route_s
            if kind == "traffic_light":
                red |= crossed and state_of.get(index) == TrafficLightStates.RED
            elif index not in self.complied:
                if stop_s - p.stop_zone <= ctx.route_s <= stop_s and abs(ctx.speed) < p.stop_speed:
                    self.stopped_for += ctx.dt
                    if self.stopped_for >= p.stop_time - 1e-9:
                        self.complied.add(index)
                        complied = True
                elif crossed:
                    violated = True
                    self.complied.add(index)  # one violation per sign
                else:
                    self.stopped_for = 0.0
        ctx.facts.update(red_light_violation=red, stop_sign_complied=complied, stop_sign_violation=violated)

    def metrics(self, reason: str | None) -> dict[str, Any]:
        return {"stop_signs_obeyed": len(self.complied)}


@reward_term("red_light", needs={"red_light_violation"})
def red_light(ctx: StepContext) -> float:
    """-1 on the step the ego runs a red light (its centre crosses the stop line), else 0."""
    return -1.0 if ctx.facts["red_light_violation"] else 0.0


@reward_term("stop_sign", needs={"stop_sign_complied", "stop_sign_violation"})
def stop_sign(ctx: StepContext) -> float:
    """+1 on the step a full stop at a stop sign is completed, -1 when the ego runs one."""
    if ctx.facts["stop_sign_violation"]:
        return -1.0
    return 1.0 if ctx.facts["stop_sign_complied"] else 0.0


@terminal_setting("red_light", StrictBool, False, needs={"red_light_violation"})
def _ran_red_light(ctx: StepContext, value: bool) -> bool:
    """Terminate when the ego runs a red light."""
    return ctx.facts["red_light_violation"]


@terminal_setting("stop_sign_violation", StrictBool, False, needs={"stop_sign_violation"})
def _ran_stop_sign(ctx: StepContext, value: bool) -> bool:
    """Terminate when the ego runs a stop sign."""
    return ctx.facts["stop_sign_violation"]
