"""Geometric facts of the bird's-eye view, checked on pixel positions."""
import numpy as np
import pytest
from conftest import color_pixels, ego_pose, place_relative

from cardreamer.observer import DEFAULT_OBSERVATIONS, build_handler
from cardreamer.observer.birdeye import COLORS
from cardreamer.world.api import Pose, TrafficLightStates

EGO_PIXEL = np.array([64.0, 80.0])  # 128 px over 32 m: 4 px/m; ego 12 m above the bottom edge


def render(scene, name="birdeye_wpt", **overrides):
    handler = build_handler(name, {**DEFAULT_OBSERVATIONS.get(name, {"handler": "birdeye"}), **overrides})
    handler.reset(scene.world, scene.ego)
    obs, info = handler.step(scene.world, scene.ego)
    return obs[name], info


def forward_distance(world, ego_id, xy):
    ego_xy, yaw = ego_pose(world, ego_id)
    return float(np.dot(xy - ego_xy, [np.cos(yaw), np.sin(yaw)]))


def centroid(image, color):
    pixels = color_pixels(image, color)
    assert len(pixels), f"no pixel of colour {color}"
    return pixels.mean(axis=0)


def test_ego_sits_at_its_pixel_heading_up(town04):
    image, _ = render(town04, entities=["ego_vehicle"])
    pixels = color_pixels(image, COLORS["ego_vehicle"])
    assert np.allclose(pixels.mean(axis=0), EGO_PIXEL, atol=0.6)
    height = np.ptp(pixels[:, 1]) + 1
    width = np.ptp(pixels[:, 0]) + 1
    assert height == pytest.approx(4.8 * 4, abs=2) and width == pytest.approx(2.1 * 4, abs=2)


def test_car_ahead_in_lane_is_straight_above_and_right_car_is_right(town04):
    image, _ = render(town04, entities=["background_vehicles"])
    v = town04.world.vehicles()
    ahead = v.xy[v.row(town04.others["ahead"])]
    assert np.hypot(*(ahead - ego_pose(town04.world, town04.ego)[0])) == pytest.approx(10.0)
    pixels = color_pixels(image, COLORS["background_vehicles"])
    upper = pixels[pixels[:, 1] < 60]
    assert np.allclose(upper[upper[:, 0] > 50].mean(axis=0), [64.0, 40.0], atol=0.6)  # 10 m ahead = 40 px up
    right = pixels[(np.abs(pixels[:, 1] - 80) < 12) & (pixels[:, 0] > 66)]
    assert right[:, 0].mean() == pytest.approx(64 + 3.5 * 4, abs=2)  # one lane (3.5 m) to the right
    assert right[:, 1].mean() == pytest.approx(80, abs=2)
    opposite = pixels[pixels[:, 0] < 45]
    assert len(opposite) and opposite[:, 0].mean() < 64 - 6 * 4  # the other carriageway, on the left


@pytest.mark.parametrize("yaw_offset", [0.0, 0.7, 2.5, -2.0])
def test_relative_positions_hold_for_any_heading(town04, yaw_offset):
    world = town04.world
    xy, yaw = ego_pose(world, town04.ego)
    world.move(town04.ego, Pose(float(xy[0]), float(xy[1]), yaw + yaw_offset))
    for vid in town04.others.values():
        world.destroy(vid)
    front = place_relative(world, town04.ego, 10.0, 0.0)
    image, _ = render(town04, entities=["background_vehicles"])
    assert np.allclose(centroid(image, COLORS["background_vehicles"]), [64, 40], atol=0.6)
    world.destroy(front)
    place_relative(world, town04.ego, 0.0, 5.0, yaw_offset=np.pi / 2)
    image, _ = render(town04, entities=["background_vehicles"])
    c = centroid(image, COLORS["background_vehicles"])
    assert np.allclose(c, [64 + 20, 80], atol=0.6)
    pixels = color_pixels(image, COLORS["background_vehicles"])
    assert np.ptp(pixels[:, 0]) > np.ptp(pixels[:, 1])  # turned 90 degrees: wider than tall


def test_route_points_up_from_the_ego(town04):
    image, _ = render(town04, entities=["waypoints"])
    pixels = color_pixels(image, COLORS["waypoints"])
    assert pixels[:, 1].min() == 0 and pixels[:, 1].max() <= 82  # from the ego to the top edge
    # The route follows the lane centre, 0.38 m left of the ego: 1.5 px
    assert pixels[:, 0].mean() == pytest.approx(64 - 0.38 * 4, abs=1.0)


def test_road_layer_shows_lane_edges_where_they_are(town04):
    image, _ = render(town04, entities=["roadmap"])
    assert tuple(image[80, 64]) == COLORS["junction"]  # Town04's ego lane belongs to a long highway junction
    # solid line on the ego lane's left edge: 0.38 + 1.75 m left of the ego
    column = 64 - round((0.38 + 1.75) * 4)
    solid = np.all(image[:, column - 1:column + 2] == COLORS["solid_marking"], axis=-1).any(axis=1)
    assert solid.mean() > 0.9
    broken_col = 64 + round((1.75 - 0.38) * 4)
    broken = np.all(image[:, broken_col - 1:broken_col + 2] == COLORS["broken_marking"], axis=-1).any(axis=1)
    assert 0.3 < broken.mean() < 0.7
    median = image[80, 64 - round(4.5 * 4):64 - round(2.6 * 4)]  # 2.6-4.5 m left: between the carriageways
    assert np.all(median == COLORS["background"])


def test_fov_hides_what_the_ego_cannot_see(town04):
    world = town04.world
    behind = place_relative(world, town04.ego, -10.0, 3.5)
    far = place_relative(world, town04.ego, 40.0, 0.0)
    _, info = render(town04, "birdeye_fov")
    visible = set(info["birdeye_fov_visible_ids"].tolist())
    assert town04.others["ahead"] in visible and behind not in visible and far not in visible
    _, info = render(town04, "birdeye_fov", sight_fov_rear=60.0)
    assert behind in set(info["birdeye_fov_visible_ids"].tolist())
    # recursive: the car 10 m ahead sees 32 m further, so the car 40 m ahead is relayed
    _, info = render(town04, "birdeye_recursive_fov")
    assert far in set(info["birdeye_recursive_fov_visible_ids"].tolist())
    image, _ = render(town04, "birdeye_fov", entities=["background_vehicles"], color_by_visibility=True)
    hidden = color_pixels(image, COLORS["hidden_vehicles"])  # 10 m behind, 3.5 m right; cut by the bottom edge
    assert hidden[:, 0].mean() == pytest.approx(64 + 14, abs=1)
    assert hidden[:, 1].min() == pytest.approx(80 + 4 * (10 - 2.4), abs=1)


def test_traffic_light_stop_line_takes_the_light_colour(town10):
    world = town10.world
    route = world.route_of(town10.ego)
    signals = world.road_map.signals

    def stop_point(signal):
        return world.road_map.lanes[signal.lane].position(signal.stop_s)

    on_route = {}
    for i, signal in enumerate(signals):
        along, across = route.project(stop_point(signal)[None])
        if signal.kind == "traffic_light" and abs(across[0]) < 0.5 and along[0] > 1:
            on_route[i] = along[0]
    assert on_route, "no light controls the ego's route"
    first = min(on_route.values())
    mine = [i for i, along in on_route.items() if along < first + 1.0]
    for state, color in ((TrafficLightStates.RED, "light_red"), (TrafficLightStates.GREEN, "light_green")):
        for signal in mine:
            world.set_light_state(signal, state)
        image, _ = render(town10, "birdeye_with_traffic_lights", entities=["traffic_lights"])
        pixels = color_pixels(image, COLORS[color])
        near_ego = pixels[np.abs(pixels[:, 0] - 64) < 8]
        assert len(near_ego)
        # the stop line is where the lane ends, ~12 m ahead
        ahead = forward_distance(world, town10.ego, stop_point(signals[mine[0]]))
        assert near_ego[:, 1].mean() == pytest.approx(80 - 4 * ahead, abs=2)


def test_stop_sign_is_drawn_across_its_lane():
    from fake_world import StaticWorld
    from scenes import Scene, load_town

    road_map = load_town("Town10HD")
    signal = next(s for s in road_map.signals if s.kind == "stop_sign" and road_map.lanes[s.lane].predecessors)
    lane = road_map.lanes[signal.lane]
    before = road_map.lanes[lane.predecessors[0]]
    world = StaticWorld(road_map)
    ego = world.spawn_on_lane(before.index, before.length - 9.0, role="ego")
    image, _ = render(Scene(world, ego, {}), "birdeye_with_stop_signs", entities=["stop_signs"])
    pixels = color_pixels(image, COLORS["stop_sign"])
    mine = pixels[np.abs(pixels[:, 0] - 64) <= lane.width_at(signal.stop_s) * 2]
    distance = forward_distance(world, ego, lane.position(signal.stop_s))
    # several lanes may share the sign (their stop lines can be a metre apart): one line is at the right row
    line_rows = np.unique(mine[:, 1])
    assert np.min(np.abs(line_rows - (80 - 4 * distance))) <= 1
    assert np.ptp(mine[:, 0]) >= lane.width_at(signal.stop_s) * 4 - 2


def test_intentions_with_errors_are_reproducible_and_differ(town04):
    clean, _ = render(town04, "birdeye_full", entities=["background_waypoints"])
    noisy, info = render(town04, "birdeye_intention_error", error_rate=1.0,
                         waypoint_observability="all", entities=["error_background_waypoints"])
    errors = info["birdeye_intention_error_intention_errors"]
    assert set(errors) >= {town04.others["ahead"], town04.others["right"]}
    assert set(errors.values()) <= {"shift", "truncate"}
    assert not np.array_equal(clean, noisy)
    again, info_again = render(town04, "birdeye_intention_error", error_rate=1.0,
                               waypoint_observability="all", entities=["error_background_waypoints"])
    assert np.array_equal(noisy, again)
    assert info_again["birdeye_intention_error_intention_errors"] == errors
    none, info_none = render(town04, "birdeye_intention_error", error_rate=0.0,
                             waypoint_observability="all", entities=["error_background_waypoints"])
    assert np.array_equal(none, clean) and not info_none["birdeye_intention_error_intention_errors"]


def test_waypoint_observability_modes(town04):
    world = town04.world
    behind = place_relative(world, town04.ego, -8.0, 3.5, route=world.route_of(town04.others["right"]))
    for mode, expect_behind in (("visible", False), ("all", True), ("neighbor", True)):
        handler = build_handler("bev", {"handler": "birdeye", "observability": "fov", "waypoint_observability": mode,
                                        "entities": ["background_waypoints"]})
        handler.reset(world, town04.ego)
        frame = handler._frame(world, town04.ego)
        senders = set(frame.vehicles.ids[handler._intention_senders(frame)].tolist())
        assert (behind in senders) == expect_behind, mode
        assert town04.ego not in senders


def test_spectator_is_large_and_labelled(town10):
    image, _ = render(town10, "spectator")
    assert image.shape == (512, 512, 3)
    assert len(color_pixels(image, COLORS["vehicle_id"])) > 20
    # 8 px/m, ego 24 m above the bottom
    assert np.allclose(centroid(image, COLORS["ego_vehicle"]), [256, 512 - 24 * 8], atol=2)


def test_non_square_view_keeps_metric_geometry(town04):
    # 96 px over 32 m: 3 px/m; 160 px wide; ego 12 m = 36 px above the bottom edge, centred
    image, _ = render(town04, shape=[96, 160, 3], entities=["ego_vehicle", "background_vehicles"])
    assert image.shape == (96, 160, 3)
    assert np.allclose(centroid(image, COLORS["ego_vehicle"]), [80, 60], atol=0.6)
    ahead = color_pixels(image, COLORS["background_vehicles"])
    ahead = ahead[np.abs(ahead[:, 0] - 80) < 6]
    assert np.allclose(ahead[ahead[:, 1] < 45].mean(axis=0), [80, 60 - 30], atol=0.6)
