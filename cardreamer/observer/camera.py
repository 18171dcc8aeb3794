"""Forward RGB camera rendered by perspective projection (no simulator renderer needed).

The ground is the map's RoadRaster mapped into the image with one ``cv2.warpPerspective`` (the
homography of the ground plane z = 0); vehicles are shaded 3-D boxes, one ``cv2.fillConvexPoly``
per visible face, drawn far to near and clipped at the near plane. Above the horizon is sky;
ground farther than ``far`` metres is drawn plain. With ``source`` (see sensor_source) the image is
the world's real camera instead, on worlds that have one (CARLA).
"""
from __future__ import annotations

import cv2
import gymnasium
import numpy as np
from pydantic import Field

from cardreamer.geometry import box_corners_complex, complex_to_xy
from cardreamer.observer.birdeye import COLORS, road_palette
from cardreamer.observer.handler import Handler, HandlerConfig, register_handler
from cardreamer.observer.sensor_source import SensorSource, source_field, uses_sensor
from cardreamer.roadmap.raster import RoadRaster
from cardreamer.world.api import SensorSpec, World

CAMERA_COLORS = {"sky": (140, 185, 235), "ground": (95, 110, 80)}
LIGHT = np.array([0.35, -0.45, 0.82]) / np.linalg.norm([0.35, -0.45, 0.82])  # world direction toward the light
SHIFT = 3
ONE = 1 << SHIFT

# Box faces as indices into the 8 corners [bottom FL, FR, RR, RL, top FL, FR, RR, RL]; face f faces
# direction f of [forward, right, backward, left, up].
FACES = np.array([[0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7], [4, 5, 6, 7]])


def palette_words(palette: np.ndarray) -> np.ndarray:
    """A (16, 3) RGB palette packed as 32-bit words, for ``colorize``."""
    packed = np.zeros((len(palette), 4), dtype=np.uint8)
    packed[:, :3] = palette
    return packed.view(np.uint32).ravel()


def colorize(labels: np.ndarray, words: np.ndarray) -> np.ndarray:
    """RGB image (H, W, 3) of a label image through a palette packed by ``palette_words``.

    Looking colours up as 32-bit words is several times faster than ``palette[labels]``.
    """
    rgba = np.take(words, labels).view(np.uint8).reshape(*labels.shape, 4)
    return cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)


class CameraConfig(HandlerConfig):
    width: int = Field(128, ge=8)
    height: int = Field(128, ge=8)
    fov: float = Field(90.0, gt=0, lt=180, description="horizontal field of view, degrees")
    x: float = Field(1.0, description="mounting point ahead of the vehicle centre, metres")
    z: float = Field(1.6, gt=0, description="mounting height, metres")
    pitch: float = Field(-8.0, gt=-89, lt=89, description="degrees, negative looks down")
    near: float = Field(0.3, gt=0)
    far: float = Field(60.0, gt=1)
    vehicle_height: float = Field(1.5, gt=0)
    raster_pixels_per_meter: float = Field(4.0, gt=0)
    source: SensorSource = source_field()


@register_handler("camera")
class CameraHandler(Handler):
    """Forward camera image (height, width, 3) uint8."""

    Config = CameraConfig

    def __init__(self, name: str, config: CameraConfig):
        super().__init__(name, config)
        c = config
        self.focal = (c.width / 2) / np.tan(np.radians(c.fov) / 2)
        self.centre = (c.width / 2, c.height / 2)
        pitch = np.radians(c.pitch)
        # First image row that shows ground nearer than `far` (rows above it: sky, then plain ground).
        self.horizon_row = self._row_at_depression(pitch, 0.0)
        self.far_row = int(np.clip(np.ceil(self._row_at_depression(pitch, np.arctan(c.z / c.far))), 0, c.height))
        palette = road_palette()
        palette[0] = CAMERA_COLORS["ground"]
        self.palette = palette_words(palette)
        self.raster: RoadRaster | None = None
        self.use_sensor = False

    def _row_at_depression(self, pitch: float, depression: float) -> float:
        return self.centre[1] + self.focal * np.tan(pitch + depression)

    def observation_space(self) -> dict[str, gymnasium.spaces.Space]:
        return {self.name: gymnasium.spaces.Box(0, 255, (self.config.height, self.config.width, 3), np.uint8)}

    def reset(self, world: World, ego_id: int) -> None:
        c = self.config
        self.use_sensor = uses_sensor(self.name, c.source, world)
        if self.use_sensor:
            world.attach_sensor(self.name, SensorSpec("camera", x=c.x, z=c.z, pitch=c.pitch, width=c.width,
                                                      height=c.height, fov=c.fov), ego_id)
        self.raster = RoadRaster.for_map(world.road_map, c.raster_pixels_per_meter)

    def step(self, world: World, ego_id: int) -> tuple[dict[str, np.ndarray], dict]:
        if self.raster is None:
            self.reset(world, ego_id)
        if self.use_sensor:
            return {self.name: world.sensor_data(self.name)}, {}
        c = self.config
        vehicles = world.vehicles()
        ego = vehicles.row(ego_id)
        axes, position = self._camera_pose(vehicles.xy[ego], float(vehicles.yaw[ego]))
        image = np.empty((c.height, c.width, 3), dtype=np.uint8)
        sky_rows = int(np.clip(np.ceil(self.horizon_row), 0, c.height))
        image[:sky_rows] = CAMERA_COLORS["sky"]
        image[sky_rows:self.far_row] = CAMERA_COLORS["ground"]
        if self.far_row < c.height:
            self._draw_ground(image, axes, position)
        self._draw_vehicles(image, axes, position, vehicles, ego)
        return {self.name: image}, {}

    def _camera_pose(self, ego_xy: np.ndarray, ego_yaw: float) -> tuple[np.ndarray, np.ndarray]:
        """(3, 3) rows forward / right / up of the camera in world coordinates, and its position."""
        cy, sy = np.cos(ego_yaw), np.sin(ego_yaw)
        cp, sp = np.cos(np.radians(self.config.pitch)), np.sin(np.radians(self.config.pitch))
        heading = np.array([cy, sy, 0.0])
        right = np.array([-sy, cy, 0.0])
        forward = cp * heading + sp * np.array([0.0, 0.0, 1.0])
        up = -sp * heading + cp * np.array([0.0, 0.0, 1.0])
        position = np.array([ego_xy[0] + self.config.x * cy, ego_xy[1] + self.config.x * sy, self.config.z])
        return np.stack([forward, right, up]), position

    def _project_rows(self) -> np.ndarray:
        """(3, 3) from camera coordinates (forward, right, up) to homogeneous pixels."""
        cu, cv = self.centre
        return np.array([[cu, self.focal, 0.0], [cv, 0.0, -self.focal], [1.0, 0.0, 0.0]])

    def _draw_ground(self, image: np.ndarray, axes: np.ndarray, position: np.ndarray) -> None:
        c = self.config
        # world (x, y, 1) on z = 0 -> camera coordinates -> pixels, then raster pixels -> world first.
        world_to_camera = np.concatenate([axes[:, :2], -(axes @ position)[:, None]], axis=1)
        raster_to_world = np.vstack([self.raster.pixel_to_world, [0.0, 0.0, 1.0]])
        to_rows = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -self.far_row], [0.0, 0.0, 1.0]])
        homography = to_rows @ self._project_rows() @ world_to_camera @ raster_to_world
        labels = cv2.warpPerspective(self.raster.labels, homography, (c.width, c.height - self.far_row),
                                     flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        image[self.far_row:] = colorize(labels, self.palette)

    def _draw_vehicles(self, image: np.ndarray, axes: np.ndarray, position: np.ndarray, vehicles, ego: int) -> None:
        c = self.config
        others = np.flatnonzero(np.arange(len(vehicles.ids)) != ego)
        rel = vehicles.xy[others] - position[:2]
        depth = rel @ axes[0, :2]
        reach = depth + vehicles.extent[others, 0]
        half_width = (c.width / 2) / self.focal * np.maximum(depth, 0) + vehicles.extent[others, 0] + 1.0
        lateral = np.abs(rel @ axes[1, :2])
        keep = (reach > c.near) & (depth < c.far) & (lateral < half_width)
        rows = others[keep][np.argsort(-depth[keep])]  # far to near
        if not len(rows):
            return
        base = complex_to_xy(box_corners_complex(vehicles.xy[rows], vehicles.yaw[rows],
                                                 vehicles.extent[rows]))                 # (K, 4, 2)
        ground = np.concatenate([base, np.zeros((*base.shape[:2], 1))], axis=-1)
        top = ground + np.array([0.0, 0.0, c.vehicle_height])
        corners = np.concatenate([ground, top], axis=1)                                 # (K, 8, 3)
        camera = (corners - position) @ axes.T                                           # (K, 8, 3)
        yaw = vehicles.yaw[rows]
        fwd = np.stack([np.cos(yaw), np.sin(yaw), np.zeros_like(yaw)], -1)
        right = np.stack([-np.sin(yaw), np.cos(yaw), np.zeros_like(yaw)], -1)
        up = np.broadcast_to([0.0, 0.0, 1.0], fwd.shape)
        normals = np.stack([fwd, right, -fwd, -right, up], axis=1)                      # (K, 5, 3)
        centres = corners[:, FACES].mean(axis=2)                                         # (K, 5, 3)
        facing = np.einsum("kfi,kfi->kf", position - centres, normals) > 0
        shade = 0.45 + 0.55 * np.clip(normals @ LIGHT, 0.0, None)                        # (K, 5)
        colors = (np.array(COLORS["background_vehicles"], dtype=np.float64) * shade[..., None]).astype(int).tolist()
        project = self._project_rows()
        pixels = camera @ project.T
        corner_px = np.round(pixels[..., :2] / np.maximum(pixels[..., 2:], c.near) * ONE).astype(np.int32)
        face_px = np.ascontiguousarray(corner_px[:, FACES])  # (K, 5, 4, 2)
        face_in_front = (camera[..., 0] >= c.near)[:, FACES].all(axis=-1)                # (K, 5)
        for k, f in zip(*np.nonzero(facing)):  # row-major: vehicle by vehicle, far to near
            if face_in_front[k, f]:
                polygon = face_px[k, f]
            else:
                clipped = _clip_near(camera[k, FACES[f]], c.near)
                if len(clipped) < 3:
                    continue
                clipped_px = clipped @ project.T
                polygon = np.round(clipped_px[:, :2] / clipped_px[:, 2:] * ONE).astype(np.int32)
            cv2.fillConvexPoly(image, polygon, colors[k][f], cv2.LINE_8, SHIFT)


def _clip_near(polygon: np.ndarray, near: float) -> np.ndarray:
    """Clip a convex polygon (M, 3) in camera coordinates to the half-space forward >= near."""
    out = []
    for i in range(len(polygon)):
        a, b = polygon[i], polygon[(i + 1) % len(polygon)]
        if a[0] >= near:
            out.append(a)
        if (a[0] >= near) != (b[0] >= near):
            t = (near - a[0]) / (b[0] - a[0])
            out.append(a + t * (b - a))
    return np.array(out).reshape(-1, 3)
