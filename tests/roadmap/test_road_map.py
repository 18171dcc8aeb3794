from pathlib import Path

import numpy as np
import pytest

from cardreamer.roadmap import MapError, RoadMap, plan_route, random_route


@pytest.mark.parametrize("town", ["Town01", "Town04", "Town10HD"])
def test_carla_towns_load_and_route(carla_maps_dir, town):
    road_map = RoadMap.load(str(carla_maps_dir / f"{town}.xodr"))
    assert len(road_map.lanes) > 50
    points = road_map.spawn_points()
    assert len(points.xy) > 50
    rng = np.random.default_rng(0)
    for i in rng.choice(len(points.xy), 5, replace=False):
        route = random_route(road_map, rng, int(points.lane[i]), float(points.s[i]), 200.0)
        steps = np.linalg.norm(np.diff(route.points, axis=0), axis=1)
        assert steps.max() < 2.5, "a route must be a continuous path along lanes"
        assert route.length > 50


def test_town04_four_lane_route_follows_the_lane(town04):
    """CarDreamer's four-lane task: from (5.8, 100) along y to (5.8, -58) stays in its lane."""
    route = plan_route(town04, (5.8, 100.0), (5.8, -58.0))
    assert route.points[0, 1] == pytest.approx(100.0, abs=1.0)
    assert route.points[-1, 1] == pytest.approx(-58.0, abs=1.0)
    assert route.length == pytest.approx(158.0, abs=3.0)
    # The route runs straight down the lane the map puts at x ~ 5 (CARLA coordinates).
    assert np.all(np.abs(route.points[:, 0] - 5.1) < 0.6)
    assert np.all(np.diff(route.points[:, 1]) < 0), "it drives toward -y all along"
    for xy in route.points[::10]:
        lane, s, lateral = town04.locate(xy)
        assert abs(lateral) < 0.05
        assert town04.lanes[lane].width_at(s) == pytest.approx(3.5, abs=0.2)
    heading = np.degrees(route.heading_at(route.s[::10])) % 360
    assert np.allclose(heading, 270.0, atol=2.0)


def test_lane_geometry_queries(town04):
    lane = max((l for l in town04.lanes if not l.is_junction), key=lambda l: l.length)
    s = np.array([5.0, lane.length / 2])
    right = lane.position(s, 1.0)
    s_back, lat_back = lane.project(right)
    assert np.allclose(s_back, s, atol=0.05) and np.allclose(lat_back, 1.0, atol=0.05)
    assert lane.on_lane(lane.position(s)).all()
    assert not lane.on_lane(lane.position(s, lane.width_at(s) + 0.5)).any()


def test_lane_graph_connections(town04):
    for lane in town04.lanes:
        for succ in lane.successors:
            gap = np.linalg.norm(lane.points[-1] - town04.lanes[succ].points[0])
            assert gap < 1.0, f"lane {lane.key} -> {town04.lanes[succ].key} jumps {gap:.2f} m"


def test_signals_resolved_to_lanes(carla_maps_dir):
    town01 = RoadMap.load(str(carla_maps_dir / "Town01.xodr"))
    lights = [s for s in town01.signals if s.kind == "traffic_light"]
    assert lights
    for signal in lights:
        lane = town01.lanes[signal.lane]
        assert 0 <= signal.stop_s <= lane.length + 1e-6


def test_location_off_road_is_a_clear_error(town04):
    with pytest.raises(MapError, match=r"not on a driving lane of map 'Town04'"):
        town04.locate(np.array([5000.0, 5000.0]))


def test_missing_and_malformed_maps(tmp_path):
    with pytest.raises(MapError, match="not found"):
        RoadMap.load("Town99")
    bad = tmp_path / "broken.xodr"
    bad.write_text("<OpenDRIVE><road ")
    with pytest.raises(MapError, match=r"broken\.xodr: not well-formed XML"):
        RoadMap.load(str(bad))
    wrong = tmp_path / "wrong.xodr"
    wrong.write_text("<html></html>")
    with pytest.raises(MapError, match=r"wrong\.xodr: root element is <html>"):
        RoadMap.load(str(wrong))


@pytest.mark.parametrize("name", ["two_lane", "highway", "intersection", "town_grid"])
def test_every_driving_lane_of_the_map_is_a_lane(name):
    """Lanes that offline get_topology leaves out (unlinked roads) are still found."""
    road_map = RoadMap.load(name)
    expected = {(w.road_id, w.lane_id) for w in road_map.carla_map.generate_waypoints(2.0)}
    assert {(lane.key[0], lane.key[2]) for lane in road_map.lanes} == expected


def test_every_spawn_point_resolves_to_a_lane(town04):
    """Town04's overlapping junction roads hide some lane points from get_waypoint; those are dropped."""
    points = town04.spawn_points()
    assert len(points.xy) > 2000
    for xy in points.xy:
        town04.locate(xy, max_distance=0.0)


def test_a_controller_naming_a_missing_signal_is_refused_before_carla_reads_it(tmp_path):
    """carla.Map segfaults on such a file; the road map refuses it with the file's name."""
    text = (Path(__file__).resolve().parents[2] / "cardreamer" / "maps" / "stop_sign.xodr").read_text()
    bad = tmp_path / "bad_controller.xodr"
    bad.write_text(text.replace("</OpenDRIVE>", '<controller id="9"><control signalId="no-such"/></controller>'
                                                "</OpenDRIVE>"))
    with pytest.raises(MapError, match=r"bad_controller\.xodr: controller 9 names signals \['no-such'\]"):
        RoadMap.load(str(bad))
