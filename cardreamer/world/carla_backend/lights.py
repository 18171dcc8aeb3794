"""The server's traffic-light actors matched to the road map's traffic-light signals.

A road-map signal is an OpenDRIVE signal id on one controlled lane; the server's light is found
by that id (``get_opendrive_id``), failing that as the light governing the signal's stop line
(``get_traffic_lights_from_waypoint``), and failing that as the light standing where the signal
does: CARLA's waypoint lookup goes through the same ids (LibCarla client/World.cpp), and a light
placed in the editor need not carry its signal's.
"""
from __future__ import annotations

from typing import Any

import carla
import numpy as np

from cardreamer.roadmap import RoadMap
from cardreamer.world.api import TrafficLightStates, WorldError
from cardreamer.world.carla_backend.heights import LaneHeights

STATE_INDEX = {carla.TrafficLightState.Red: TrafficLightStates.RED,
               carla.TrafficLightState.Yellow: TrafficLightStates.YELLOW,
               carla.TrafficLightState.Green: TrafficLightStates.GREEN}
"""Off and Unknown lights stop nobody and are reported GREEN."""
LIGHT_SEARCH_DISTANCE = 10.0  # m ahead of a stop line to look for its light
LIGHT_POSITION_TOLERANCE = 5.0  # m between a signal's position and a light with an unknown id standing for it


class LightTable:
    """Which server light drives each traffic-light signal of the road map."""

    def __init__(self, world: Any, road_map: RoadMap, heights: LaneHeights):
        self.road_map, self.heights = road_map, heights
        actors = list(world.get_actors().filter("traffic.traffic_light"))
        by_id = {str(light.get_opendrive_id()): light for light in actors}
        named = {signal.id for signal in road_map.signals}
        unnamed = [light for light in actors if str(light.get_opendrive_id()) not in named]
        unnamed_xy = np.array([(light.get_transform().location.x, light.get_transform().location.y)
                               for light in unnamed], dtype=float).reshape(-1, 2)
        rows, lights = [], []
        for row, signal in enumerate(road_map.signals):
            if signal.kind != "traffic_light":
                continue
            light = (by_id.get(signal.id) or self._light_at_stop_line(world, signal)
                     or _light_standing_at(signal.location, unnamed, unnamed_xy))
            if light is not None:
                rows.append(row)
                lights.append(light)
        self.lights = list({light.id: light for light in lights}.values())  # unique, in first-seen order
        column = {light.id: i for i, light in enumerate(self.lights)}
        self.signals = np.array(rows, dtype=int)
        self.light_of_row = np.array([column[light.id] for light in lights], dtype=int)

    def _light_at_stop_line(self, world: Any, signal) -> Any | None:
        lane = self.road_map.lanes[signal.lane]
        x, y = lane.position(signal.stop_s)
        z = self.heights.at(signal.lane, signal.stop_s)  # the stop line's own deck where roads cross
        waypoint = self.road_map.carla_map.get_waypoint(carla.Location(x=float(x), y=float(y), z=z))
        found = world.get_traffic_lights_from_waypoint(waypoint, LIGHT_SEARCH_DISTANCE) if waypoint else []
        return found[0] if found else None

    def states(self) -> TrafficLightStates:
        state = np.array([STATE_INDEX.get(light.get_state(), TrafficLightStates.GREEN) for light in self.lights],
                         dtype=int)
        elapsed = np.array([light.get_elapsed_time() for light in self.lights], dtype=float)
        return TrafficLightStates(signals=self.signals.copy(), states=state[self.light_of_row],
                                  elapsed=elapsed[self.light_of_row])

    def _junction_of(self, signal) -> int:
        """The junction a light governs: its lane's own junction (CARLA towns put lights inside), else the next one."""
        lane = self.road_map.lanes[signal.lane]
        return lane.junction_id if lane.is_junction else signal.junction_id

    def set_timing(self, green: float, yellow: float, red: float | None, junction_id: int | None) -> None:
        """Phase durations of the lights of one junction (all when None); red left to the server when None."""
        for name, value in (("green", green), ("yellow", yellow)):
            if not value > 0:
                raise WorldError(f"traffic light {name} time must be > 0 s, got {value!r}")
        if junction_id is not None:
            junctions = np.array([self._junction_of(self.road_map.signals[row]) for row in self.signals], dtype=int)
            keep = junctions == junction_id
            if not keep.any():
                raise WorldError(f"no traffic light controls junction {junction_id}; junctions with lights: "
                                 f"{sorted(set(junctions.tolist()))}")
            columns = np.unique(self.light_of_row[keep])
        else:
            columns = np.unique(self.light_of_row)
        for column in columns:
            light = self.lights[column]
            light.set_green_time(float(green))
            light.set_yellow_time(float(yellow))
            if red is not None:
                light.set_red_time(float(red))


def _light_standing_at(xy: np.ndarray, lights: list[Any], lights_xy: np.ndarray) -> Any | None:
    """The nearest of ``lights`` to ``xy``, if within LIGHT_POSITION_TOLERANCE."""
    if not lights:
        return None
    distance = np.hypot(*(lights_xy - xy).T)
    nearest = int(np.argmin(distance))
    return lights[nearest] if distance[nearest] <= LIGHT_POSITION_TOLERANCE else None
