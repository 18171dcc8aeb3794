"""Bird's-eye view (BEV) handlers: the agent's ego-centred raster and a large spectator view.

The road layer is cut out of the map's static RoadRaster (coloured once) with one
``cv2.warpAffine``; vehicles are drawn with one ``cv2.fillPoly`` per colour after mapping all box
corners into the image at once. Entities are drawn in the order of ``ENTITIES`` whatever order the config lists.
Colours are RGB, listed in ``COLORS`` and in docs/observations.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import cv2
import gymnasium
import numpy as np
from pydantic import Field, field_validator, model_validator

from cardreamer.geometry import box_corners_complex, complex_to_xy
from cardreamer.observer.geometry import BevView, apply_affine, compose_affine
from cardreamer.observer.handler import Handler, HandlerConfig, register_handler
from cardreamer.observer.intentions import IntentionChannel, route_ahead
from cardreamer.observer.visibility import Sight, visible_vehicles
from cardreamer.roadmap.raster import BROKEN, JUNCTION, ROAD, SOLID, RoadRaster
from cardreamer.world.api import TrafficLightStates, VehicleArrays, World

Entity = Literal["roadmap", "waypoints", "background_waypoints", "error_background_waypoints", "fov_lines",
                 "ego_vehicle", "background_vehicles", "traffic_lights", "stop_signs"]
ENTITIES: tuple[str, ...] = get_args(Entity)  # drawing order

COLORS: dict[str, tuple[int, int, int]] = {
    "background": (0, 0, 0),
    "road": (70, 70, 70),
    "junction": (95, 95, 95),
    "broken_marking": (170, 170, 170),
    "solid_marking": (255, 255, 255),
    "waypoints": (0, 110, 255),
    "background_waypoints": (230, 0, 230),
    "fov_lines": (140, 90, 255),
    "ego_vehicle": (0, 230, 230),
    "background_vehicles": (255, 140, 0),
    "hidden_vehicles": (110, 60, 0),
    "ego_trail": (0, 120, 120),
    "background_trail": (130, 70, 0),
    "light_red": (255, 0, 0),
    "light_yellow": (255, 230, 0),
    "light_green": (0, 220, 0),
    "stop_sign": (255, 80, 160),
    "vehicle_id": (255, 255, 255),
}
SHIFT = 3  # fixed-point bits for sub-pixel drawing
ONE = 1 << SHIFT


def road_palette() -> np.ndarray:
    """(16, 3) RGB colour of each packed RoadRaster label value (markings over junction over road)."""
    palette = np.zeros((16, 3), dtype=np.uint8)
    for label in range(16):
        if label & SOLID:
            palette[label] = COLORS["solid_marking"]
        elif label & BROKEN:
            palette[label] = COLORS["broken_marking"]
        elif label & JUNCTION:
            palette[label] = COLORS["junction"]
        elif label & ROAD:
            palette[label] = COLORS["road"]
    return palette


class BirdeyeConfig(HandlerConfig):
    shape: tuple[int, int, int] = (128, 128, 3)
    obs_range: float = Field(32.0, gt=0, description="metres spanned by the image height")
    ego_offset: float = Field(12.0, ge=0, description="metres from the bottom edge to the ego")
    entities: list[Entity] = Field(default_factory=lambda: ["roadmap", "waypoints", "ego_vehicle",
                                                            "background_vehicles"])
    observability: Literal["full", "fov", "recursive_fov"] = "full"
    sight_range: float = Field(32.0, gt=0)
    sight_fov_front: float = Field(150.0, ge=0, le=360, description="degrees, full opening")
    sight_fov_rear: float = Field(0.0, ge=0, le=360, description="degrees, full opening (0: none)")
    recursion_depth: int = Field(2, ge=1)
    waypoint_observability: Literal["neighbor", "visible", "all"] = "all"
    neighbor_distance: float = Field(15.0, gt=0)
    color_by_visibility: bool = False
    intention_length: float = Field(20.0, gt=0, description="metres of other vehicles' routes drawn")
    error_rate: float = Field(0.2, ge=0, le=1)
    error_seed: int = 0
    waypoint_width: float = Field(0.8, gt=0, description="metres")
    antialias: bool = Field(False, description="smooth edges (slower; for human viewers)")
    show_ids: bool = False
    motion_trail: float = Field(1.0, ge=0, description="seconds of motion drawn behind each vehicle (0: none)")
    motion_trail_boxes: int = Field(3, ge=1, description="dimmed boxes that draw the motion trail")
    raster_pixels_per_meter: float | None = Field(None, gt=0, description="default: the image's, at most 4")

    @field_validator("shape")
    @classmethod
    def _rgb(cls, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        if shape[2] != 3 or shape[0] < 8 or shape[1] < 8:
            raise ValueError(f"shape must be [height >= 8, width >= 8, 3], got {list(shape)}")
        return shape

    @model_validator(mode="after")
    def _offset_in_image(self) -> BirdeyeConfig:
        if self.ego_offset >= self.obs_range:
            raise ValueError(f"ego_offset ({self.ego_offset}) must be less than obs_range ({self.obs_range})")
        return self


@dataclass
class _Frame:
    """Per-step state shared by the entity drawers."""

    image: np.ndarray
    to_image: np.ndarray      # (2, 3) world -> image affine
    vehicles: VehicleArrays
    ego_row: int
    in_view: np.ndarray       # (N,) bool, ego excluded
    visible: np.ndarray       # (N,) bool, ego excluded
    boxes: np.ndarray         # (N, 4, 2) int32 fixed-point image corners; valid for in-view rows and the ego


@register_handler("birdeye")
class BirdeyeHandler(Handler):
    """Ego-centred top-down raster (H, W, 3) uint8, ego heading up."""

    Config = BirdeyeConfig

    def __init__(self, name: str, config: BirdeyeConfig):
        super().__init__(name, config)
        height, width, _ = config.shape
        self.view = BevView(width, height, config.obs_range, config.ego_offset)
        self.entities = [e for e in ENTITIES if e in config.entities]
        self.sight = Sight(config.sight_range, config.sight_fov_front, config.sight_fov_rear)
        self.fov_outline = self._fov_outline()
        rate = config.error_rate if "error_background_waypoints" in self.entities else 0.0
        self.intentions = IntentionChannel(rate, config.error_seed)
        self.line_type = cv2.LINE_AA if config.antialias else cv2.LINE_8
        self.raster: RoadRaster | None = None
        self.road_image: np.ndarray | None = None
        self.stop_lines: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def observation_space(self) -> dict[str, gymnasium.spaces.Space]:
        return {self.name: gymnasium.spaces.Box(0, 255, self.config.shape, np.uint8)}

    def reset(self, world: World, ego_id: int) -> None:
        ppm = self.config.raster_pixels_per_meter or min(self.view.pixels_per_meter, 4.0)
        self.raster = RoadRaster.for_map(world.road_map, ppm)
        self.road_image = self.raster.colored(road_palette())
        self.stop_lines = {kind: _stop_lines(world, kind) for kind in ("traffic_light", "stop_sign")}
        self.intentions.reset()

    # ------------------------------------------------------------------ per step
    def step(self, world: World, ego_id: int) -> tuple[dict[str, np.ndarray], dict]:
        if self.raster is None:
            self.reset(world, ego_id)
        frame = self._frame(world, ego_id)  # the road map, if enabled, is its first layer
        for entity in self.entities:
            if entity != "roadmap":
                getattr(self, f"_draw_{entity}")(world, ego_id, frame)
        info = {}
        if self.config.observability != "full":
            info[f"{self.name}_visible_ids"] = frame.vehicles.ids[frame.visible]
        if "error_background_waypoints" in self.entities:
            info[f"{self.name}_intention_errors"] = {i: e.kind for i, e in self.intentions.errors.items() if e}
        return {self.name: frame.image}, info

    def _frame(self, world: World, ego_id: int) -> _Frame:
        vehicles = world.vehicles()
        ego = vehicles.row(ego_id)
        to_image = self.view.world_to_image(vehicles.xy[ego], float(vehicles.yaw[ego]))
        offset = vehicles.xy - vehicles.xy[ego]
        reach = self.view.radius + vehicles.extent[:, 0]
        in_view = np.einsum("ij,ij->i", offset, offset) <= reach * reach
        drawn = np.flatnonzero(in_view)
        in_view[ego] = False
        boxes = np.zeros((len(vehicles.ids), 4, 2), dtype=np.int32)
        corners = box_corners_complex(vehicles.xy[drawn], vehicles.yaw[drawn], vehicles.extent[drawn], to_image)
        boxes[drawn] = np.rint(complex_to_xy(corners) * ONE)
        if self.config.observability == "full":
            visible = in_view.copy()
        else:
            depth = self.config.recursion_depth if self.config.observability == "recursive_fov" else 1
            reach = depth * self.sight.sight_range + vehicles.extent[:, 0]
            rows = np.flatnonzero(np.einsum("ij,ij->i", offset, offset) <= reach * reach)  # ego included
            corners = complex_to_xy(box_corners_complex(vehicles.xy[rows], vehicles.yaw[rows],
                                                        vehicles.extent[rows]))
            visible = np.zeros(len(vehicles.ids), dtype=bool)
            visible[rows] = visible_vehicles(self.sight, vehicles.xy[rows], vehicles.yaw[rows], corners,
                                             int(np.searchsorted(rows, ego)), depth)
        if "roadmap" in self.entities:
            warp = compose_affine(to_image, self.raster.pixel_to_world)
            image = cv2.warpAffine(self.road_image, warp, (self.view.width, self.view.height),
                                   flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                                   borderValue=COLORS["background"])
        else:
            image = np.zeros(self.config.shape, dtype=np.uint8)
        return _Frame(image, to_image, vehicles, ego, in_view, visible, boxes)

    def _fixed(self, to_image: np.ndarray, xy: np.ndarray) -> np.ndarray:
        return np.round(apply_affine(to_image, xy) * ONE).astype(np.int32)

    def _polylines(self, frame: _Frame, lines: list[np.ndarray], color: str, width_m: float) -> None:
        """Draw world polylines (points every metre or so; every second one is used) with one
        transform of all their points and one cv2 call."""
        lines = [line[::2] if len(line) % 2 else np.concatenate([line[::2], line[-1:]]) for line in lines
                 if len(line) >= 2]
        if lines:
            thickness = max(1, round(width_m * self.view.pixels_per_meter))
            pixels = self._fixed(frame.to_image, lines[0] if len(lines) == 1 else np.concatenate(lines))
            parts = [pixels] if len(lines) == 1 else np.split(pixels, np.cumsum([len(p) for p in lines[:-1]]))
            cv2.polylines(frame.image, parts, False, COLORS[color], thickness=thickness, lineType=self.line_type,
                          shift=SHIFT)

    # ------------------------------------------------------------------ entity drawers
    def _draw_waypoints(self, world: World, ego_id: int, frame: _Frame) -> None:
        window = route_ahead(world, ego_id, self.view.radius)
        if window is not None:
            route, lo, hi = window
            self._polylines(frame, [route.points[lo:hi]], "waypoints", self.config.waypoint_width)

    def _intention_senders(self, frame: _Frame) -> np.ndarray:
        mode = self.config.waypoint_observability
        if mode == "visible":
            return frame.visible
        if mode == "neighbor":
            v = frame.vehicles
            senders = np.hypot(*(v.xy - v.xy[frame.ego_row]).T) <= self.config.neighbor_distance
        else:
            senders = np.ones(len(frame.vehicles.ids), dtype=bool)
        senders[frame.ego_row] = False
        return senders

    def _draw_background_waypoints(self, world: World, ego_id: int, frame: _Frame) -> None:
        self._draw_intentions(world, frame)

    def _draw_error_background_waypoints(self, world: World, ego_id: int, frame: _Frame) -> None:
        self._draw_intentions(world, frame)

    def _draw_intentions(self, world: World, frame: _Frame) -> None:
        reach = self.view.radius + self.config.intention_length
        v = frame.vehicles
        near = np.hypot(*(v.xy - v.xy[frame.ego_row]).T) <= reach
        lines = []
        for actor_id in v.ids[self._intention_senders(frame) & near]:
            points = self.intentions.received(world, int(actor_id), self.config.intention_length)
            if points is not None and len(points) >= 2:
                lines.append(points)
        self._polylines(frame, lines, "background_waypoints", self.config.waypoint_width)

    def _draw_fov_lines(self, world: World, ego_id: int, frame: _Frame) -> None:
        cv2.polylines(frame.image, self.fov_outline, False, COLORS["fov_lines"], thickness=1,
                      lineType=self.line_type, shift=SHIFT)

    def _fov_outline(self) -> list[np.ndarray]:
        """Fixed-point image polylines of the sight cones: static, since the ego never moves in the image."""
        k = self.view.pixels_per_meter
        cu, cv = self.view.ego_pixel
        lines = []
        for centre, opening in ((0.0, self.sight.fov_front), (180.0, self.sight.fov_rear)):
            if opening <= 0:
                continue
            angles = np.radians(centre + np.linspace(-opening / 2, opening / 2, 25))
            forward, right = self.sight.sight_range * np.cos(angles), self.sight.sight_range * np.sin(angles)
            outline = np.stack([cu + k * right, cv - k * forward], axis=-1)
            if opening < 360:
                outline = np.concatenate([[[cu, cv]], outline, [[cu, cv]]])
            lines.append(np.round(outline * ONE).astype(np.int32))
        return lines

    def _fill_boxes(self, frame: _Frame, rows: np.ndarray, color: str) -> None:
        if len(rows):
            cv2.fillPoly(frame.image, frame.boxes[rows], COLORS[color], lineType=self.line_type, shift=SHIFT)

    def _draw_trails(self, frame: _Frame, groups: list[tuple[np.ndarray, str]]) -> None:
        """Dimmed boxes where each vehicle was up to ``motion_trail`` seconds ago at its current velocity,
        for each (rows, colour) group, under every vehicle's box.

        One frame then shows every vehicle's speed and direction (the ego's own included), which
        a single view otherwise hides: the ego never moves in its own image."""
        groups = [(rows, color) for rows, color in groups if len(rows)]
        if not self.config.motion_trail or not groups:
            return
        v, n = frame.vehicles, self.config.motion_trail_boxes
        rows = np.concatenate([group_rows for group_rows, _ in groups])
        lags = self.config.motion_trail * np.arange(n, 0, -1) / n  # oldest first, so newer boxes cover it
        xy = v.xy[rows][None] - lags[:, None, None] * v.velocity[rows][None]
        corners = box_corners_complex(xy.reshape(-1, 2), np.tile(v.yaw[rows], n), np.tile(v.extent[rows], (n, 1)),
                                      frame.to_image)
        boxes = np.rint(complex_to_xy(corners) * ONE).astype(np.int32).reshape(n, len(rows), 4, 2)
        for lag in range(n):  # one fill per lag and colour: fillPoly leaves overlaps of one call unfilled
            start = 0
            for group_rows, color in groups:
                cv2.fillPoly(frame.image, boxes[lag, start:start + len(group_rows)], COLORS[color],
                             lineType=self.line_type, shift=SHIFT)
                start += len(group_rows)

    def _draw_ego_vehicle(self, world: World, ego_id: int, frame: _Frame) -> None:
        rows = np.array([frame.ego_row])
        trails = [(rows, "ego_trail")]
        if "background_vehicles" in self.entities:  # all trails under all boxes: a close leader's trail
            trails.append((np.flatnonzero(frame.in_view & frame.visible), "background_trail"))  # not over the ego
        self._draw_trails(frame, trails)
        self._fill_boxes(frame, rows, "ego_vehicle")

    def _draw_background_vehicles(self, world: World, ego_id: int, frame: _Frame) -> None:
        shown = frame.in_view & frame.visible
        if "ego_vehicle" not in self.entities:
            self._draw_trails(frame, [(np.flatnonzero(shown), "background_trail")])
        self._fill_boxes(frame, np.flatnonzero(shown), "background_vehicles")
        if self.config.color_by_visibility:
            self._fill_boxes(frame, np.flatnonzero(frame.in_view & ~frame.visible), "hidden_vehicles")
        if self.config.show_ids:
            shown_or_hidden = frame.in_view & (frame.visible | self.config.color_by_visibility)
            rows = np.flatnonzero(shown_or_hidden)
            for row, (u, vv) in zip(rows, apply_affine(frame.to_image, frame.vehicles.xy[rows])):
                cv2.putText(frame.image, str(frame.vehicles.ids[row]), (int(u) + 6, int(vv) - 6),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.4, COLORS["vehicle_id"], 1, cv2.LINE_AA)

    def _draw_traffic_lights(self, world: World, ego_id: int, frame: _Frame) -> None:
        signal_index, lines = self.stop_lines["traffic_light"]
        near = self._lines_near(frame, lines)
        if not near.any():
            return
        lights: TrafficLightStates = world.traffic_lights()
        state_of = np.full(len(world.road_map.signals), -1)
        state_of[lights.signals] = lights.states
        states = state_of[signal_index[near]]
        near_lines = lines[near]
        for state, color in ((lights.RED, "light_red"), (lights.YELLOW, "light_yellow"),
                             (lights.GREEN, "light_green")):
            if np.any(states == state):
                self._polylines(frame, list(near_lines[states == state]), color, 0.8)

    def _draw_stop_signs(self, world: World, ego_id: int, frame: _Frame) -> None:
        _, lines = self.stop_lines["stop_sign"]
        near = self._lines_near(frame, lines)
        if near.any():
            self._polylines(frame, list(lines[near]), "stop_sign", 0.8)

    def _lines_near(self, frame: _Frame, lines: np.ndarray) -> np.ndarray:
        offset = lines[:, 0] - frame.vehicles.xy[frame.ego_row]
        reach = self.view.radius + 5.0
        return np.einsum("ij,ij->i", offset, offset) <= reach * reach


def _stop_lines(world: World, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(signal indices, (L, 2, 2) stop-line end points) of the map's signals of one kind."""
    index, lines = [], []
    for i, signal in enumerate(world.road_map.signals):
        if signal.kind != kind:
            continue
        lane = world.road_map.lanes[signal.lane]
        half = float(lane.width_at(signal.stop_s)) / 2
        ends = lane.position(np.array([signal.stop_s, signal.stop_s]), np.array([-half, half]))
        index.append(i)
        lines.append(ends)
    return np.array(index, dtype=int), np.array(lines, dtype=np.float64).reshape(-1, 2, 2)


class SpectatorConfig(BirdeyeConfig):
    shape: tuple[int, int, int] = (512, 512, 3)
    obs_range: float = 64.0
    ego_offset: float = 24.0
    entities: list[Entity] = Field(default_factory=lambda: [
        "roadmap", "waypoints", "background_waypoints", "ego_vehicle", "background_vehicles", "traffic_lights",
        "stop_signs"])
    show_ids: bool = True
    antialias: bool = True


@register_handler("spectator")
class SpectatorHandler(BirdeyeHandler):
    """A large top-down view for people watching (512 x 512, 64 m, every layer, vehicle ids)."""

    Config = SpectatorConfig
