"""Default configs of CarDreamer's observation variants, by observation name.

A task enables some of them (``env.observation.enabled``) and may override any key. The BEV
variants differ in what they show: ``raw`` (road and vehicles), ``wpt`` (plus the ego's route),
traffic lights, stop signs, field-of-view restricted sight (``fov``, ``recursive_fov``) and shared
intentions of other vehicles (``intention``, with transmission errors in ``intention_error``).
"""
from __future__ import annotations

_BEV = {"handler": "birdeye", "shape": [128, 128, 3], "obs_range": 32.0, "ego_offset": 12.0}
_FOV_SIGHT = {"sight_range": 32.0, "sight_fov_front": 150.0, "sight_fov_rear": 0.0}

DEFAULT_OBSERVATIONS: dict[str, dict] = {
    "birdeye_raw": {**_BEV, "entities": ["roadmap", "ego_vehicle", "background_vehicles"]},
    "birdeye_wpt": {**_BEV, "entities": ["roadmap", "waypoints", "ego_vehicle", "background_vehicles"]},
    "birdeye_with_traffic_lights": {
        **_BEV, "entities": ["roadmap", "waypoints", "ego_vehicle", "background_vehicles", "traffic_lights"]},
    "birdeye_with_stop_signs": {
        **_BEV, "entities": ["roadmap", "waypoints", "ego_vehicle", "background_vehicles", "stop_signs"]},
    "birdeye_full": {
        **_BEV, "entities": ["roadmap", "waypoints", "background_waypoints", "ego_vehicle", "background_vehicles",
                             "traffic_lights", "stop_signs"]},
    "birdeye_fov": {
        **_BEV, **_FOV_SIGHT, "observability": "fov",
        "entities": ["roadmap", "waypoints", "fov_lines", "ego_vehicle", "background_vehicles"]},
    "birdeye_recursive_fov": {
        **_BEV, **_FOV_SIGHT, "observability": "recursive_fov", "recursion_depth": 2,
        "entities": ["roadmap", "waypoints", "fov_lines", "ego_vehicle", "background_vehicles"]},
    "birdeye_intention": {
        **_BEV, **_FOV_SIGHT, "observability": "fov", "waypoint_observability": "visible",
        "entities": ["roadmap", "waypoints", "background_waypoints", "fov_lines", "ego_vehicle",
                     "background_vehicles"]},
    "birdeye_intention_error": {
        **_BEV, **_FOV_SIGHT, "observability": "fov", "waypoint_observability": "visible",
        "error_rate": 0.2, "error_seed": 0,
        "entities": ["roadmap", "waypoints", "error_background_waypoints", "fov_lines", "ego_vehicle",
                     "background_vehicles"]},
    "camera": {"handler": "camera", "width": 128, "height": 128, "fov": 90.0, "x": 1.0, "z": 1.6, "pitch": -8.0},
    "lidar": {"handler": "lidar", "shape": [128, 128, 3], "obs_range": 32.0, "ego_offset": 12.0, "rays": 240,
              "lidar_range": 32.0, "points": True},
    "collision": {"handler": "collision"},
    "spectator": {"handler": "spectator", "shape": [512, 512, 3], "obs_range": 64.0, "ego_offset": 24.0},
    "message": {"handler": "message", "neighbors": 6, "message_range": 50.0},
    "state": {"handler": "state", "waypoints": 10, "waypoint_spacing": 2.0},
}
