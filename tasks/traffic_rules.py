"""Traffic-rule logic: red-light violations and stop-sign compliance, with their reward terms.

Task logic ``traffic_rules`` finds every stop line on the ego's route (traffic lights and stop
signs, including stop signs a task adds by coordinates) and, each step, reports in ``ctx.extra``:

- ``red_light_violation``: the ego's centre crossed a stop line whose light is red this step;
- ``stop_sign_complied``: this step completed a full stop (below ``params.stop_speed``, 0.1 m/s,
  for ``params.stop_time`` s, 1 s) within ``params.stop_zone`` m (8 m) before a stop sign's line;
- ``stop_sign_violation``: the ego's centre crossed a stop sign's line without such a stop.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from cardreamer.rewards import StepContext, register_terminal_settings, reward_term, terminal_check
from cardreamer.task_runtime import RouteTask, register_task_logic
from cardreamer.world.api import TrafficLightStates, World

register_terminal_settings(red_light=False, stop_sign_violation=False)


@register_task_logic("traffic_rules")
class TrafficRulesTask(RouteTask):
    """A route task that watches the ego at traffic lights and stop signs."""

    def reset(self, world: World, rng: np.random.Generator) -> int:
        ego = super().reset(world, rng)
        route = self.route
        lanes_on_route = set(route.lanes.tolist())
        self.stop_lines: list[tuple[int, str, float]] = []
        for index, signal in enumerate(self.road_map.signals):
            if signal.lane in lanes_on_route:
                xy = self.road_map.lanes[signal.lane].position(signal.stop_s)
                s, lateral = route.project(xy[None])
                if abs(lateral[0]) < 2.0:
                    self.stop_lines.append((index, signal.kind, float(s[0])))
        self.stopped_for = 0.0
        self.complied: set[int] = set()
        return ego

    def add_task_facts(self, ctx: StepContext) -> None:
        params = self.spec.params
        zone, stop_time = params.get("stop_zone", 8.0), params.get("stop_time", 1.0)
        lights = ctx.world.traffic_lights()
        state_of = dict(zip(lights.signals.tolist(), lights.states.tolist()))
        red = complied = violated = False
        for index, kind, stop_s in self.stop_lines:
            crossed = ctx.route_s_prev < stop_s <= ctx.route_s
            if kind == "traffic_light":
                red |= crossed and state_of.get(index) == TrafficLightStates.RED
            elif index not in self.complied:
                if stop_s - zone <= ctx.route_s <= stop_s and abs(ctx.speed) < params.get("stop_speed", 0.1):
                    self.stopped_for += ctx.dt
                    if self.stopped_for >= stop_time - 1e-9:
                        self.complied.add(index)
                        complied = True
                elif crossed:
                    violated = True
                    self.complied.add(index)  # one violation per sign
                else:
                    self.stopped_for = 0.0
        ctx.extra.update(red_light_violation=red, stop_sign_complied=complied, stop_sign_violation=violated)

    def episode_metrics(self, reason: str | None) -> dict[str, Any]:
        return {**super().episode_metrics(reason), "stop_signs_obeyed": len(self.complied)}


@reward_term("red_light")
def red_light(ctx: StepContext) -> float:
    """-1 on the step the ego runs a red light (its centre crosses the stop line), else 0."""
    return -1.0 if ctx.extra.get("red_light_violation") else 0.0


@reward_term("stop_sign")
def stop_sign(ctx: StepContext) -> float:
    """+1 on the step a full stop at a stop sign is completed, -1 when the ego runs one."""
    if ctx.extra.get("stop_sign_violation"):
        return -1.0
    return 1.0 if ctx.extra.get("stop_sign_complied") else 0.0


@terminal_check
def _ran_red_light(ctx: StepContext, cfg: dict[str, Any]) -> str | None:
    return "red_light" if cfg["red_light"] and ctx.extra.get("red_light_violation") else None


@terminal_check
def _ran_stop_sign(ctx: StepContext, cfg: dict[str, Any]) -> str | None:
    return "stop_sign_violation" if cfg["stop_sign_violation"] and ctx.extra.get("stop_sign_violation") else None
