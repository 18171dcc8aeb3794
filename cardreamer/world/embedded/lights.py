"""Traffic-light controller: per junction, one approach arm at a time gets green.

Lights are grouped by (junction, approach road): every light whose controlled lane enters the
junction from the same incoming road shares one phase. The arms of a junction take turns, ordered
by the angle of their stop lines around the junction centre: green, yellow, then an all-red
clearance before the next arm. Only one arm moves at a time, so green movements never cross each
other (as in CARLA's default light groups); vehicles still inside when the light turns red clear
the junction first through the yielding rule.
"""
from __future__ import annotations

import numpy as np

from cardreamer.roadmap import RoadMap
from cardreamer.world.api import TrafficLightStates, WorldError

RED, YELLOW, GREEN = TrafficLightStates.RED, TrafficLightStates.YELLOW, TrafficLightStates.GREEN
STOP_SIGN = 3  # state code the autopilot reads for stop-sign entries
DEFAULT_TIMING = {"green": 10.0, "yellow": 3.0, "red": None}
DEFAULT_CLEARANCE = 1.0  # s of all-red between two arms


class TrafficLightController:
    """States of all traffic lights of a map, advanced with the world clock."""

    def __init__(self, road_map: RoadMap, timing: dict | None = None):
        timing = dict(timing or {})
        unknown = sorted(set(timing) - set(DEFAULT_TIMING))
        if unknown:
            raise WorldError(f"traffic_lights: unknown key(s) {unknown}; valid keys are {sorted(DEFAULT_TIMING)}")
        self.road_map = road_map
        signals = road_map.signals
        self.light_rows = np.array([i for i, s in enumerate(signals) if s.kind == "traffic_light"], dtype=np.int64)
        self.junction_of = np.empty(len(self.light_rows), dtype=np.int64)
        arm_keys = []
        for k, row in enumerate(self.light_rows):
            signal = signals[row]
            lane = road_map.lanes[signal.lane]
            if lane.is_junction:
                junction = lane.junction_id
                arm = road_map.lanes[lane.predecessors[0]].key[0] if lane.predecessors else lane.key[0]
            else:
                junction = signal.junction_id if signal.junction_id >= 0 else -1_000_000 - k
                arm = lane.key[0]
            self.junction_of[k] = junction
            arm_keys.append((junction, arm))
        self.junctions = sorted(set(self.junction_of.tolist()))
        self.slot = np.zeros(len(self.light_rows), dtype=np.int64)     # position of the light's arm in its cycle
        self.arms = np.ones(len(self.light_rows), dtype=np.int64)      # number of arms at its junction
        for junction in self.junctions:
            members = np.flatnonzero(self.junction_of == junction)
            arms = sorted({arm_keys[m][1] for m in members})
            stop_xy = np.array([self._stop_xy(signals[self.light_rows[m]]) for m in members])
            centre = stop_xy.mean(axis=0)
            angle = {arm: np.mean([np.arctan2(*(stop_xy[i] - centre)[::-1]) for i, m in enumerate(members)
                                   if arm_keys[m][1] == arm]) for arm in arms}
            ordered = sorted(arms, key=lambda a: (angle[a], a))
            for m in members:
                self.slot[m] = ordered.index(arm_keys[m][1])
                self.arms[m] = len(ordered)
        self.green = np.zeros(len(self.light_rows))
        self.yellow = np.zeros(len(self.light_rows))
        self.clearance = np.zeros(len(self.light_rows))
        self.cycle_fraction = np.zeros(len(self.light_rows))  # cycle offset as a fraction of the cycle, per light
        self.time = 0.0
        # per road_map.signals row, plus a last always-green entry that index -1 ("no signal") reads
        self.signal_state = np.full(len(signals) + 1, STOP_SIGN, dtype=np.int64)
        self.signal_state[-1] = GREEN
        merged = {**DEFAULT_TIMING, **timing}
        self.set_timing(merged["green"], merged["yellow"], merged["red"])

    def _stop_xy(self, signal) -> np.ndarray:
        return self.road_map.lanes[signal.lane].position(signal.stop_s)

    def set_timing(self, green: float, yellow: float, red: float | None = None, junction_id: int | None = None) -> None:
        """Phase durations; ``red`` (if given) is each light's red time, which sets the all-red clearance."""
        for name, value in (("green", green), ("yellow", yellow)):
            if not value > 0:
                raise WorldError(f"traffic light {name} time must be > 0 s, got {value!r}")
        if junction_id is None:
            targets = self.junctions
        elif junction_id in self.junctions:
            targets = [junction_id]
        else:
            raise WorldError(f"junction {junction_id} has no traffic lights on map {self.road_map.name!r}; "
                             f"junctions with lights: {[j for j in self.junctions if j >= 0]}")
        for junction in targets:
            members = self.junction_of == junction
            arms = int(self.arms[members][0])
            if red is None:
                clearance = DEFAULT_CLEARANCE
            else:
                minimum = (arms - 1) * (green + yellow)
                if red < minimum:
                    raise WorldError(f"red time {red} s too short at junction {junction}: its {arms} arms take "
                                     f"turns, so each light is red at least {minimum} s with green={green}, "
                                     f"yellow={yellow}")
                clearance = (red - minimum) / arms
            self.green[members] = green
            self.yellow[members] = yellow
            self.clearance[members] = clearance
        self._update()  # states now follow the new timing (tasks set it after the world's reset)

    def reset(self, rng: np.random.Generator) -> None:
        """Restart the clock with a random phase offset per junction.

        The offset is kept as a fraction of the cycle, so timing set after the reset (as tasks do)
        gives the same lights whatever timing the previous episode had.
        """
        self.time = 0.0
        per_junction = {j: rng.uniform() for j in self.junctions}
        self.cycle_fraction = np.array([per_junction[j] for j in self.junction_of.tolist()])
        self._update()

    def schedule_green(self, signal_index: int, delay: float) -> None:
        """Shift a junction's cycle so the arm of light ``signal_index`` (a road_map.signals row)
        turns green ``delay`` seconds from now; the arm is red until then when ``delay`` is at most
        its red time."""
        matches = np.flatnonzero(self.light_rows == signal_index)
        if not len(matches):
            raise WorldError(f"road_map.signals[{signal_index}] is not a traffic light; lights are rows "
                             f"{self.light_rows.tolist()[:20]}")
        k = int(matches[0])
        members = self.junction_of == self.junction_of[k]
        phase = self.green[k] + self.yellow[k] + self.clearance[k]
        cycle = self.arms[k] * phase
        self.cycle_fraction[members] = np.mod(cycle - delay - self.time + self.slot[k] * phase, cycle) / cycle
        self._update()

    def advance(self, dt: float) -> None:
        self.time += dt
        self._update()

    def _update(self) -> None:
        phase = self.green + self.yellow + self.clearance
        cycle = self.arms * phase
        local = np.mod(self.time + self.cycle_fraction * cycle - self.slot * phase, cycle)
        self._states = np.where(local < self.green, GREEN, np.where(local < self.green + self.yellow, YELLOW, RED))
        self._elapsed = np.where(self._states == GREEN, local,
                                 np.where(self._states == YELLOW, local - self.green, local - self.green - self.yellow))
        self.signal_state[self.light_rows] = self._states

    def states(self) -> TrafficLightStates:
        return TrafficLightStates(signals=self.light_rows.copy(), states=self._states.copy(),
                                  elapsed=self._elapsed.copy())
