"""A lane section much shorter than the raster cells, where the lane is ``type="none"`` between two
driving sections (a RoadRunner artefact of CARLA towns), must not leave a hole in the road: the lane
graph runs through it, and a vehicle on the lane centre there is on the road, in every raster.

The map is a file the test writes: a straight 100 m road, one lane each way, whose lanes are
``none`` for a short section in the middle.
"""
from __future__ import annotations

import numpy as np
import pytest

from cardreamer.roadmap import RoadMap, plan_route
from cardreamer.roadmap.preflight import CACHE_DIR_ENV
from cardreamer.roadmap.raster import RoadRaster
from cardreamer.world.api import Behavior, Pose
from cardreamer.world.embedded.lane_raster import RESOLUTION, LaneRaster
from cardreamer.world.embedded.world import EmbeddedWorld

ROAD_LENGTH = 100.0
STUB_START = 50.05
LANE_Y = 1.75  # CARLA's y of the right-hand (lane -1) centre; lane 1 runs at -LANE_Y


def _lane(lane_id: int, lane_type: str) -> str:
    return (f'<lane id="{lane_id}" type="{lane_type}" level="false">'
            f'<link><predecessor id="{lane_id}"/><successor id="{lane_id}"/></link>'
            f'<width sOffset="0" a="3.5" b="0" c="0" d="0"/>'
            f'<roadMark sOffset="0" type="solid" weight="standard" color="white" width="0.15"/></lane>')


def _section(s: float, lane_type: str) -> str:
    return (f'<laneSection s="{s}"><left>{_lane(1, lane_type)}</left>'
            f'<center><lane id="0" type="none" level="false"/></center>'
            f'<right>{_lane(-1, lane_type)}</right></laneSection>')


def stub_road_xodr(stub_length: float) -> str:
    """A straight road whose lanes are driving, then ``none`` for ``stub_length`` m, then driving."""
    sections = (_section(0.0, "driving") + _section(STUB_START, "none")
                + _section(STUB_START + stub_length, "driving"))
    return (f'<?xml version="1.0"?><OpenDRIVE><header revMajor="1" revMinor="4" name="stub"/>'
            f'<road name="r" length="{ROAD_LENGTH}" id="1" junction="-1"><link/><planView>'
            f'<geometry s="0" x="0" y="0" hdg="0" length="{ROAD_LENGTH}"><line/></geometry></planView>'
            f'<lanes>{sections}</lanes></road></OpenDRIVE>')


@pytest.fixture(params=[0.05, 0.1, 0.2])
def stub_map(request, tmp_path, monkeypatch) -> RoadMap:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    path = tmp_path / f"stub_{request.param}.xodr"
    path.write_text(stub_road_xodr(request.param))
    return RoadMap.from_file(path)


def _centre_line(y: float) -> np.ndarray:
    xs = np.arange(45.0, 56.0, 0.05)
    return np.stack([xs, np.full_like(xs, y)], axis=1)


def test_the_lane_graph_runs_through_the_stub(stub_map):
    assert [lane.key[1] for lane in stub_map.lanes].count(1) == 0, "the none section is no lane"
    for start, goal in (((10.0, LANE_Y), (90.0, LANE_Y)), ((90.0, -LANE_Y), (10.0, -LANE_Y))):
        route = plan_route(stub_map, start, goal)
        assert route.length == pytest.approx(80.0, abs=1.0)
        assert np.linalg.norm(np.diff(route.points, axis=0), axis=1).max() < 1.5


@pytest.mark.parametrize("y", [LANE_Y, -LANE_Y])
def test_no_raster_hole_on_the_lane_centre(stub_map, y):
    centre = _centre_line(y)
    lanes = LaneRaster(stub_map).lanes_at(centre)
    assert (lanes >= 0).all(), f"off-road cells on the lane centre at x = {centre[lanes < 0, 0]}"
    road = RoadRaster(stub_map, 4.0).is_road(centre)
    assert road.all(), f"BEV road holes on the lane centre at x = {centre[~road, 0]}"


@pytest.mark.parametrize("y, yaw", [(LANE_Y, 0.0), (-LANE_Y, np.pi)])
def test_an_ego_on_the_lane_centre_at_the_stub_is_on_the_road(stub_map, y, yaw):
    for x in np.arange(49.0, 52.0, 0.1):
        world = EmbeddedWorld(stub_map, seed=0)
        ego = world.spawn_vehicle(Pose(float(x), y, yaw), role="ego")
        world.tick()
        assert not world.is_off_road(ego), f"ego on the lane centre at x = {x:.2f} is reported off road"
        world.close()


def test_traffic_drives_through_the_stub_on_the_road(stub_map):
    world = EmbeddedWorld(stub_map, seed=0)
    route = plan_route(stub_map, (30.0, LANE_Y), (90.0, LANE_Y))
    car = world.spawn_vehicle(Pose(30.0, LANE_Y, 0.0), route=route, speed=8.0,
                              behavior=Behavior(desired_speed=8.0, on_route_end="destroy"))
    xs = []
    for _ in range(60):
        world.tick()
        x = float(world.vehicles().xy[0, 0])
        assert not world.is_off_road(car), f"the car is off road at x = {x:.2f}"
        xs.append(x)
    assert max(xs) > 60.0, "the car drove past the stub"
    world.close()


def test_town04_lanes_are_on_the_road_one_cell_in_from_their_edges(town04):
    """Off-road agrees with lane geometry up to one raster cell, on a real town's 463 lanes."""
    raster = LaneRaster(town04)
    rng = np.random.default_rng(0)
    for lane in town04.lanes:
        s = rng.uniform(0.0, lane.length, 100)
        points = lane.position(s, rng.uniform(-1.0, 1.0, 100) * (lane.width_at(s) / 2 - RESOLUTION))
        off = raster.lanes_at(points) < 0
        assert not off.any(), f"lane {lane.key}: points {points[off]} inside it are off road"
