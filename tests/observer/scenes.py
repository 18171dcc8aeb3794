"""Hand-placed scenes on real CARLA towns for the observer tests, pictures and benchmark.

Run as a script to save a PNG of every image observation for both scenes, and the composites
shown in docs/observations.md: ``python tests/observer/scenes.py /tmp/obs_png [docs/img/obs]``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cardreamer.roadmap import RoadMap, plan_route
from cardreamer.roadmap.route import route_through_lanes
from cardreamer.world.api import Pose, TrafficLightStates

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from carla_towns import carla_town_path
from fake_world import StaticWorld

def load_town(name: str) -> RoadMap:
    """CARLA's town from $CARDREAMER_CARLA_MAPS (read in place); under pytest, skips when absent."""
    if "pytest" in sys.modules:
        return RoadMap.load(str(carla_town_path(name)))
    return RoadMap.load(name)


@dataclass
class Scene:
    world: StaticWorld
    ego: int
    others: dict[str, int]


def town04_straight() -> Scene:
    """Ego at (5.8, 100) heading along its lane toward y = -58; a car 10 m ahead in the same lane,
    one in the lane to its right, one on the opposite carriageway, one changing lanes behind."""
    road_map = load_town("Town04")
    world = StaticWorld(road_map)
    lane_index, s, _ = road_map.locate(np.array([5.8, 100.0]))
    lane = road_map.lanes[lane_index]
    yaw = float(lane.heading_at(s))
    route = plan_route(road_map, (5.8, 100.0), (5.8, -58.0))
    ego = world.spawn_vehicle(Pose(5.8, 100.0, yaw), role="ego", route=route, speed=10.0)
    ahead_xy = np.array([5.8, 100.0]) + 10.0 * np.array([np.cos(yaw), np.sin(yaw)])
    others = {"ahead": world.spawn_vehicle(Pose(*ahead_xy, yaw), route=route, speed=8.0)}
    others["right"] = world.spawn_on_lane(lane.right, float(road_map.lanes[lane.right].project(
        np.array([[9.3, 100.0]]))[0][0]), speed=9.0)
    opposite_index, opp_s, _ = road_map.locate(np.array([-1.8, 80.0]))
    others["opposite"] = world.spawn_on_lane(opposite_index, opp_s, speed=9.0)
    right_lane = road_map.lanes[lane.right]
    s_right = float(right_lane.project(np.array([[9.3, 112.0]]))[0][0])
    change = route_through_lanes(road_map, [lane.right, lane_index], s_right, 60.0)
    others["changing"] = world.spawn_on_lane(lane.right, s_right, route=change, speed=9.0)
    return Scene(world, ego, others)


def town10_junction() -> Scene:
    """Ego 12 m before the big four-way junction of Town10HD (junction 189), turning left through
    it, with cars queued and crossing, and the lights of the junction set red / green."""
    road_map = load_town("Town10HD")
    world = StaticWorld(road_map)
    incoming = [lane for lane in road_map.lanes
                if not lane.is_junction and any(road_map.lanes[n].junction_id == 189 for n in lane.successors)]
    incoming.sort(key=lambda lane: lane.index)
    rng = np.random.default_rng(3)

    def turn(lane_index: int) -> float:
        headings = road_map.lanes[lane_index].headings
        return float(np.angle(np.exp(1j * (headings[-1] - headings[0]))))

    ego_lane = next(lane for lane in incoming if any(turn(n) < -1.2 for n in lane.successors))
    left_turn = road_map.lanes[min(ego_lane.successors, key=turn)]
    lanes = [ego_lane.index, left_turn.index] + left_turn.successors[:1]
    route = route_through_lanes(road_map, lanes, ego_lane.length - 12.0, 30.0)
    start = route.points[0]
    ego = world.spawn_vehicle(Pose(float(start[0]), float(start[1]), float(route.headings[0])), role="ego",
                              route=route, speed=6.0)
    others = {}
    for k, lane in enumerate([lane for lane in incoming if lane is not ego_lane][:6]):
        others[f"queue{k}"] = world.spawn_on_lane(lane.index, max(lane.length - 6.0 - 8.0 * (k % 2), 0.5),
                                                  speed=float(rng.uniform(0, 6)))
    crossing = [lane for lane in road_map.lanes if lane.junction_id == 189]
    for k, lane in enumerate(crossing[3:18:5]):
        others[f"crossing{k}"] = world.spawn_on_lane(lane.index, lane.length / 2, speed=5.0)
    lights = world.traffic_lights()
    for k, signal in enumerate(lights.signals):
        world.set_light_state(int(signal), (TrafficLightStates.RED, TrafficLightStates.GREEN,
                                            TrafficLightStates.YELLOW)[k % 3])
    return Scene(world, ego, others)


def crowd(count: int = 50, radius: float = 60.0, seed: int = 0) -> Scene:
    """The Town04 scene plus background cars on lane points within ``radius`` of the ego, at least
    6 m apart (``count`` vehicles in all): a dense worst case for the renderers."""
    scene = town04_straight()
    world = scene.world
    road_map = world.road_map
    ego_xy = world.vehicles().xy[world.vehicles().row(scene.ego)]
    candidates = [(lane.index, s) for lane in road_map.lanes for s in np.arange(2.0, lane.length - 2.0, 8.0)
                  if np.hypot(*(lane.position(s) - ego_xy)) < radius]
    rng = np.random.default_rng(seed)
    occupied = list(world.vehicles().xy)
    for i in rng.permutation(len(candidates)):
        if len(occupied) >= count:
            break
        lane_index, s = candidates[i]
        xy = road_map.lanes[lane_index].position(s)
        if min(np.hypot(*(np.array(occupied) - xy).T)) > 6.0:
            world.spawn_on_lane(lane_index, float(s), speed=float(rng.uniform(3, 12)))
            occupied.append(xy)
    return scene


def save_pictures(out_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """Write every image observation of the scenes as PNG; return the observations by scene."""
    import cv2

    from cardreamer.observer import DEFAULT_OBSERVATIONS, Observer

    out_dir.mkdir(parents=True, exist_ok=True)
    rendered = {}
    for scene_name, scene in (("town04", town04_straight()), ("town10_junction", town10_junction()),
                              ("town04_crowd", crowd(50, radius=60.0))):
        observer = Observer(DEFAULT_OBSERVATIONS, list(DEFAULT_OBSERVATIONS))
        obs, _ = observer.reset(scene.world, scene.ego)
        rendered[scene_name] = obs
        for key, value in obs.items():
            if value.dtype == np.uint8 and value.ndim == 3:
                cv2.imwrite(str(out_dir / f"{scene_name}_{key}.png"), cv2.cvtColor(value, cv2.COLOR_RGB2BGR))
    return rendered


def save_doc_pictures(rendered: dict[str, dict[str, np.ndarray]], out_dir: Path) -> None:
    """The composites of docs/observations.md, enlarged with nearest-neighbour sampling."""
    import cv2

    def row(obs, keys, size):
        return np.concatenate([cv2.resize(obs[k], (size, size), interpolation=cv2.INTER_NEAREST) for k in keys], 1)

    out_dir.mkdir(parents=True, exist_ok=True)
    pictures = {
        "town04_bev_camera_lidar.png": row(rendered["town04"], ["birdeye_wpt", "camera", "lidar"], 256),
        "town04_crowd_bev_variants.png": row(rendered["town04_crowd"], [
            "birdeye_full", "birdeye_fov", "birdeye_recursive_fov", "birdeye_intention_error"], 192),
        "town10_spectator.png": cv2.resize(rendered["town10_junction"]["spectator"], (384, 384),
                                           interpolation=cv2.INTER_AREA),
    }
    for name, image in pictures.items():
        cv2.imwrite(str(out_dir / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    results = save_pictures(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/obs_png"))
    if len(sys.argv) > 2:
        save_doc_pictures(results, Path(sys.argv[2]))
