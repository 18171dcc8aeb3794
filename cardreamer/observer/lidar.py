"""2-D lidar: rays cast in the ground plane against vehicle boxes and road edges.

Vehicle hits come from a vectorized ray / box-edge intersection; road-edge hits from marching
every ray over the RoadRaster's drivable layer. The observation is a top-down image of the scan
(free space and hit points, ego-centred like the birdeye view); with ``points: true`` also the
hit points themselves, one per ray.

With ``source`` (see sensor_source) the scan comes instead from the world's real ray-cast lidar
(CARLA's ``sensor.lidar.ray_cast``, one sweep per tick), reduced to the same rays by point_cloud:
a return on another vehicle's box is a vehicle hit, any other obstacle in the height slice (kerb,
wall, barrier, pole, building) a road-edge hit. Same spaces, same image, same points.
"""
from __future__ import annotations

import cv2
import gymnasium
import numpy as np
from pydantic import Field, model_validator

from cardreamer.geometry import box_corners_complex, complex_to_xy, to_ego_frame
from cardreamer.observer.birdeye import COLORS
from cardreamer.observer.geometry import BevView, apply_affine, compose_affine
from cardreamer.observer.handler import Handler, HandlerConfig, ObservationConfigError, register_handler
from cardreamer.observer.point_cloud import CloudSlice, inside_boxes, nearest_per_ray
from cardreamer.observer.sensor_source import SensorSource, source_field, uses_sensor
from cardreamer.roadmap.raster import ROAD, RoadRaster
from cardreamer.world.api import SensorSpec, World

NO_HIT, ROAD_EDGE, VEHICLE = 0, 1, 2
LIDAR_COLORS = {"free": (45, 45, 45), "road_edge": (255, 255, 255), "vehicle": (255, 60, 60)}
SHIFT = 3


class LidarConfig(HandlerConfig):
    shape: tuple[int, int, int] = (128, 128, 3)
    obs_range: float = Field(32.0, gt=0, description="metres spanned by the image height")
    ego_offset: float = Field(12.0, ge=0)
    rays: int = Field(240, ge=8)
    lidar_range: float = Field(32.0, gt=0)
    edge_step: float = Field(0.5, gt=0, description="metres between road-edge samples along a ray")
    points: bool = Field(False, description="also return the hit points as '<name>_points'")
    raster_pixels_per_meter: float = Field(4.0, gt=0)
    source: SensorSource = source_field()
    # The real sensor (source sensor/auto on CARLA): mount, beams, and the slice of returns that counts.
    x: float = Field(0.0, description="sensor: mounting point ahead of the vehicle centre, metres")
    z: float = Field(2.0, gt=0, description="sensor: mounting height above the ground, metres")
    channels: int = Field(32, ge=1, description="sensor: laser beams")
    points_per_second: int = Field(100_000, ge=1, description="sensor: points of all beams per second")
    upper_fov: float = Field(10.0, gt=-90, le=90, description="sensor: angle of the highest beam, degrees")
    lower_fov: float = Field(-30.0, ge=-90, lt=90, description="sensor: angle of the lowest beam, degrees")
    min_height: float = Field(0.3, ge=0, description="sensor: returns lower than this above the ground are road")
    max_height: float = Field(2.5, gt=0, description="sensor: returns higher than this pass overhead")

    @model_validator(mode="after")
    def _check(self) -> LidarConfig:
        if self.shape[2] != 3:
            raise ValueError(f"shape must be [height, width, 3], got {list(self.shape)}")
        if self.ego_offset >= self.obs_range:
            raise ValueError(f"ego_offset ({self.ego_offset}) must be less than obs_range ({self.obs_range})")
        if self.lower_fov >= self.upper_fov:
            raise ValueError(f"lower_fov ({self.lower_fov}) must be below upper_fov ({self.upper_fov})")
        if self.min_height >= self.max_height:
            raise ValueError(f"min_height ({self.min_height}) must be below max_height ({self.max_height})")
        return self


@register_handler("lidar")
class LidarHandler(Handler):
    """Top-down lidar image (H, W, 3) uint8 and, optionally, points (rays, 3) float32.

    Points are (x forward, y right, kind) in the ego frame, one per ray in order of angle
    (ray k points 360 * k / rays degrees clockwise from the heading); kind is 0 for no hit (the
    point then lies at ``lidar_range``), 1 for a road edge, 2 for a vehicle.
    """

    Config = LidarConfig

    def __init__(self, name: str, config: LidarConfig):
        super().__init__(name, config)
        height, width, _ = config.shape
        self.view = BevView(width, height, config.obs_range, config.ego_offset)
        angles = 2 * np.pi * np.arange(config.rays) / config.rays
        self.directions = np.stack([np.cos(angles), np.sin(angles)], axis=-1)     # ego frame
        self.samples = np.arange(1, int(config.lidar_range / config.edge_step) + 1) * config.edge_step
        # Road edges are looked up in an ego-centred crop of the road raster (x forward = up), at
        # fixed pixels: every ray's samples, precomputed.
        k = config.raster_pixels_per_meter
        self.crop_size = 2 * int(np.ceil(config.lidar_range * k)) + 3
        self.crop = BevView(self.crop_size, self.crop_size, self.crop_size / k, self.crop_size / k / 2)
        sample_xy = self.directions[:, None, :] * self.samples[None, :, None]          # (R, M, 2) ego frame
        centre = self.crop.ego_pixel
        cols = np.rint(centre[0] + k * sample_xy[..., 1]).astype(np.intp)
        rows = np.rint(centre[1] - k * sample_xy[..., 0]).astype(np.intp)
        self.sample_index = rows * self.crop_size + cols                                 # (R, M) flat pixel index
        self.raster: RoadRaster | None = None
        self.use_sensor = False
        self.slice = CloudSlice((config.x, 0.0, config.z), config.min_height, config.max_height, config.lidar_range)

    def observation_space(self) -> dict[str, gymnasium.spaces.Space]:
        spaces = {self.name: gymnasium.spaces.Box(0, 255, self.config.shape, np.uint8)}
        if self.config.points:
            r = self.config.lidar_range
            low = np.tile(np.array([-r, -r, NO_HIT], dtype=np.float32), (self.config.rays, 1))
            high = np.tile(np.array([r, r, VEHICLE], dtype=np.float32), (self.config.rays, 1))
            spaces[f"{self.name}_points"] = gymnasium.spaces.Box(low, high, dtype=np.float32)
        return spaces

    def reset(self, world: World, ego_id: int) -> None:
        c = self.config
        self.raster = RoadRaster.for_map(world.road_map, c.raster_pixels_per_meter)
        self.use_sensor = uses_sensor(self.name, c.source, world)
        if self.use_sensor:
            per_beam = c.points_per_second * world.dt / c.channels  # points of one beam in one sweep (one tick)
            if per_beam < c.rays:
                raise ObservationConfigError(
                    f"{self.name}.points_per_second: {c.points_per_second} gives each of the {c.channels} beams "
                    f"{per_beam:.0f} points per {world.dt:g} s sweep, fewer than its {c.rays} rays; use at least "
                    f"{int(np.ceil(c.channels * c.rays / world.dt))} or fewer rays")
            world.attach_sensor(self.name, SensorSpec("lidar", x=c.x, z=c.z, channels=c.channels, range=c.lidar_range,
                                                      points_per_second=c.points_per_second, upper_fov=c.upper_fov,
                                                      lower_fov=c.lower_fov), ego_id)

    def step(self, world: World, ego_id: int) -> tuple[dict[str, np.ndarray], dict]:
        if self.raster is None:
            self.reset(world, ego_id)
        vehicles = world.vehicles()
        ego = vehicles.row(ego_id)
        ego_xy, ego_yaw = vehicles.xy[ego], float(vehicles.yaw[ego])
        if self.use_sensor:
            distance, kind = self.sensor_scan(world.sensor_data(self.name), vehicles, ego)
        else:
            distance, kind = self.scan(vehicles, ego, ego_xy, ego_yaw)
        points = self.directions * distance[:, None]
        obs = {self.name: self._image(points, kind, vehicles, ego)}
        if self.config.points:
            obs[f"{self.name}_points"] = np.concatenate([points, kind[:, None]], axis=1).astype(np.float32)
        return obs, {}

    def scan(self, vehicles, ego: int, ego_xy: np.ndarray, ego_yaw: float) -> tuple[np.ndarray, np.ndarray]:
        """(rays,) hit distance and hit kind of every ray from the ego's centre."""
        r = self.config.lidar_range
        distance = np.full(len(self.directions), r)
        kind = np.full(len(self.directions), NO_HIT)
        # Road edges: the first sample along each ray that is off the drivable surface.
        warp = compose_affine(self.crop.world_to_image(ego_xy, ego_yaw), self.raster.pixel_to_world)
        crop = cv2.warpAffine(self.raster.labels, warp, (self.crop_size, self.crop_size), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        off_road = (np.take(crop, self.sample_index) & ROAD) == 0                        # (R, M)
        hit = off_road.any(axis=1)
        distance[hit] = self.samples[np.argmax(off_road[hit], axis=1)]
        kind[hit] = ROAD_EDGE
        # Vehicles: slab test of every ray against every nearby box, in the box's own frame.
        near = np.hypot(*(vehicles.xy - ego_xy).T) <= r + vehicles.extent[:, 0]
        near[ego] = False
        if near.any():
            t_vehicle = _ray_box_distance(self.directions, to_ego_frame(vehicles.xy[near], ego_xy, ego_yaw),
                                          vehicles.yaw[near] - ego_yaw, vehicles.extent[near])
            closer = t_vehicle < distance
            distance[closer] = t_vehicle[closer]
            kind[closer] = VEHICLE
        return distance, kind

    def sensor_scan(self, cloud: np.ndarray, vehicles, ego: int) -> tuple[np.ndarray, np.ndarray]:
        """(rays,) hit distance and hit kind from a real lidar's point cloud (N, 4) in the sensor frame."""
        xy = self.slice.points(cloud)
        xy = xy[~inside_boxes(xy, np.zeros((1, 2)), np.zeros(1), vehicles.extent[ego:ego + 1])]  # the ego itself
        distance, nearest = nearest_per_ray(xy, self.config.rays)
        hit = nearest >= 0
        kind = np.where(hit, ROAD_EDGE, NO_HIT)
        others = np.arange(len(vehicles.ids)) != ego
        ego_xy, ego_yaw = vehicles.xy[ego], float(vehicles.yaw[ego])
        on_vehicle = inside_boxes(xy[nearest[hit]], to_ego_frame(vehicles.xy[others], ego_xy, ego_yaw),
                                  vehicles.yaw[others] - ego_yaw, vehicles.extent[others])
        kind[np.flatnonzero(hit)[on_vehicle]] = VEHICLE
        return np.where(hit, distance, self.config.lidar_range), kind

    def _image(self, points: np.ndarray, kind: np.ndarray, vehicles, ego: int) -> np.ndarray:
        image = np.zeros(self.config.shape, dtype=np.uint8)
        k = self.view.pixels_per_meter
        cu, cv = self.view.ego_pixel
        # ego frame (x forward, y right) -> image (col, row)
        to_image = np.array([[0.0, k, cu], [-k, 0.0, cv]])
        pixels = apply_affine(to_image, points)
        cv2.fillPoly(image, [np.round(pixels * (1 << SHIFT)).astype(np.int32)], LIDAR_COLORS["free"],
                     lineType=cv2.LINE_AA, shift=SHIFT)
        ego_box = complex_to_xy(box_corners_complex(np.zeros((1, 2)), np.zeros(1),
                                                    vehicles.extent[ego:ego + 1]))[0]  # ego frame
        cv2.fillConvexPoly(image, np.round(apply_affine(to_image, ego_box) * (1 << SHIFT)).astype(np.int32),
                           COLORS["ego_vehicle"], cv2.LINE_AA, SHIFT)
        px = np.rint(pixels).astype(np.int64)
        inside = (px[:, 0] >= 0) & (px[:, 0] < self.view.width) & (px[:, 1] >= 0) & (px[:, 1] < self.view.height)
        for hit_kind, color in ((ROAD_EDGE, "road_edge"), (VEHICLE, "vehicle")):
            sel = inside & (kind == hit_kind)
            image[px[sel, 1], px[sel, 0]] = LIDAR_COLORS[color]
        return image


def _ray_box_distance(directions: np.ndarray, centres: np.ndarray, yaws: np.ndarray,
                      extents: np.ndarray) -> np.ndarray:
    """(R,) distance from the origin along each ray to the nearest box it enters (inf: none).

    Slab method: rays and origin are rotated into each box's frame, where the box is the
    axis-aligned rectangle |x| <= half length, |y| <= half width. A ray starting inside a box
    hits it at distance 0.
    """
    c, s = np.cos(yaws), np.sin(yaws)
    origin_x = -(centres[:, 0] * c + centres[:, 1] * s)                      # (K,) origin in box frames
    origin_y = -(-centres[:, 0] * s + centres[:, 1] * c)
    dir_x = directions[:, :1] * c + directions[:, 1:] * s                   # (R, K)
    dir_y = -directions[:, :1] * s + directions[:, 1:] * c
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_x, inv_y = 1.0 / dir_x, 1.0 / dir_y
        tx1, tx2 = (-extents[:, 0] - origin_x) * inv_x, (extents[:, 0] - origin_x) * inv_x
        ty1, ty2 = (-extents[:, 1] - origin_y) * inv_y, (extents[:, 1] - origin_y) * inv_y
        t_enter = np.maximum(np.minimum(tx1, tx2), np.minimum(ty1, ty2))
        t_exit = np.minimum(np.maximum(tx1, tx2), np.maximum(ty1, ty2))
    hit = (t_exit >= np.maximum(t_enter, 0.0)) & ~np.isnan(t_enter)
    return np.where(hit, np.maximum(t_enter, 0.0), np.inf).min(axis=1)
