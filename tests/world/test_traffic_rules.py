"""Background traffic obeys lights, stop signs and junction priority, keeps and changes lanes."""
from __future__ import annotations

import numpy as np
import pytest
from world_helpers import lane_at, pose_on_lane

from cardreamer.geometry import box_corners
from cardreamer.roadmap.route import route_through_lanes
from cardreamer.world.api import Behavior, Pose, TrafficLightStates
from cardreamer.world.embedded import EmbeddedWorld

STAY = Behavior(desired_speed=8.0, auto_lane_change=False, on_route_end="destroy")


def spawn_on_route(world, lanes, s, behavior=STAY, speed=8.0):
    road_map = world.road_map
    route = route_through_lanes(road_map, lanes, s, road_map.lanes[lanes[-1]].length - 1.0)
    return world.spawn_vehicle(pose_on_lane(road_map, lanes[0], s), route=route, behavior=behavior, speed=speed)


def front_s(world, actor_id) -> float:
    v = world.vehicles()
    return world.route_progress(actor_id) + v.extent[v.row(actor_id), 0]


def test_vehicle_keeps_its_straight_lane(project_map):
    road_map = project_map("two_lane")
    world = EmbeddedWorld(road_map, seed=0)
    lane = road_map.lanes[0]
    car = spawn_on_route(world, [0], 5.0, Behavior(desired_speed=13.0, on_route_end="destroy"), speed=0.0)
    worst = 0.0
    for _ in range(300):
        world.tick()
        v = world.vehicles()
        _, lateral = lane.project(v.xy[v.row(car)][None])
        worst = max(worst, abs(lateral[0]))
    assert worst < 0.05
    assert world.vehicles().speed[0] == pytest.approx(13.0, abs=0.5)
    assert world.route_progress(car) > 300.0


def test_vehicle_follows_turning_routes(project_map):
    road_map = project_map("town_grid")
    world = EmbeddedWorld(road_map, seed=1)
    ids = world.spawn_traffic(20)
    worst = 0.0
    for _ in range(600):
        world.tick()
        v = world.vehicles()
        for actor in v.ids[::4].tolist():  # a sample: projection is the slow part of this test
            _, lateral = world.route_of(actor).project(v.xy[v.row(actor)][None])
            worst = max(worst, abs(lateral[0]))
    assert worst < 0.6  # pure pursuit cuts tight junction turns a little
    assert set(world.vehicles().ids.tolist()) <= set(ids)


def test_stops_at_red_and_goes_on_green(project_map):
    road_map = project_map("intersection")
    world = EmbeddedWorld(road_map, seed=0)
    approach = lane_at(road_map, (115, -5.2), (15, -5.2))
    straight = lane_at(road_map, (15, -5.2), (-15, -5.2))
    signal = next(i for i, s in enumerate(road_map.signals) if s.lane == approach)
    stop_line = road_map.signals[signal].stop_s - 60.0  # on the route, which starts at s = 60
    car = spawn_on_route(world, [approach, straight, road_map.lanes[straight].successors[0]], 60.0)
    world.lights.schedule_green(signal, 15.0)
    states = TrafficLightStates
    rows = world.traffic_lights().signals.tolist()
    waited = False
    for _ in range(150):
        world.tick()
        state = world.traffic_lights().states[rows.index(signal)]
        if state != states.GREEN:
            assert front_s(world, car) < stop_line  # never past the line on red
            v = world.vehicles()
            if v.speed[0] < 0.05:
                waited = True
                assert stop_line - front_s(world, car) < 3.0  # stopped at the line, not far before it
    assert waited
    for _ in range(100):
        world.tick()
    assert front_s(world, car) > stop_line + 35.0  # through the junction once green


def test_stop_sign_full_stop_then_go(project_map):
    road_map = project_map("stop_sign")
    world = EmbeddedWorld(road_map, seed=0)
    approach = lane_at(road_map, (90, -1.8), (10, -1.8))
    through = next(i for i in road_map.lanes[approach].successors
                   if np.allclose(road_map.lanes[i].points[-1], (-10, -1.8), atol=0.5))
    sign = next(s for s in road_map.signals if s.lane == approach)
    line = sign.stop_s - 40.0
    car = spawn_on_route(world, [approach, through, road_map.lanes[through].successors[0]], 40.0)
    stopped_ticks, crossed_at = 0, None
    for k in range(200):
        world.tick()
        front = front_s(world, car)
        if world.vehicles().speed[0] < 0.05 and line - front < 3.5:
            stopped_ticks += 1
        if crossed_at is None and front > line:
            crossed_at = k
            assert stopped_ticks * world.dt >= 1.0 - 1e-9  # a full stop of a second before crossing
    assert crossed_at is not None and front_s(world, car) > line + 25.0


@pytest.mark.parametrize("head_start", [0.0, 3.0, -3.0])
def test_crossing_vehicles_take_turns_at_a_junction(project_map, head_start):
    road_map = project_map("stop_sign")
    world = EmbeddedWorld(road_map, seed=0)
    no_signs = Behavior(desired_speed=8.0, ignore_signs=True, auto_lane_change=False, on_route_end="destroy")
    east = lane_at(road_map, (90, -1.8), (10, -1.8))
    south = lane_at(road_map, (-1.8, -90), (-1.8, -10))

    def straight_on(lane):
        nxt = max(road_map.lanes[lane].successors, key=lambda i: road_map.lanes[i].length)
        return [lane, nxt, road_map.lanes[nxt].successors[0]]

    a = spawn_on_route(world, straight_on(east), 50.0 + head_start, no_signs)
    b = spawn_on_route(world, straight_on(south), 50.0, no_signs)
    min_speed = {a: 9.0, b: 9.0}
    progress = {a: 0.0, b: 0.0}
    for _ in range(200):
        world.tick()
        v = world.vehicles()
        for actor in (a, b):
            if actor in v.ids:  # each leaves the world at its route's end
                assert not world.collisions(actor)
                min_speed[actor] = min(min_speed[actor], v.speed[v.row(actor)])
                progress[actor] = world.route_progress(actor)
    assert min(min_speed.values()) < 4.0          # one of them gave way
    assert max(min_speed.values()) > 6.0          # the other one did not have to
    if head_start:
        later = b if head_start > 0 else a
        assert min_speed[later] < 4.0             # the one arriving later is the one that yields
    assert all(p > 90.0 for p in progress.values())  # both went through


@pytest.mark.parametrize("ego_to, car_to, inside, yields", [
    ((-10.0, -1.8), (-10.0, -1.7), True, True),    # ego straight on inside, car turning into its exit
    ((-10.0, -1.8), (-10.0, -1.7), False, False),  # the same, ego still before the entry
    ((-1.8, 10.0), (-1.8, 10.0), True, False),     # ego turning inside, car straight on into its exit
])
def test_traffic_yields_to_an_ego_inside_the_junction_on_the_main_path(project_map, ego_to, car_to, inside,
                                                                       yields):
    """An ego standing with its front in the junction, short of a car's path, holds that car
    at the entry when the ego's path is the main one (gentler bend), as a background vehicle inside
    would; an ego turning off the main path, or still before the entry, gets no priority and the
    car drives on (the ego's box is never on the car's path)."""
    road_map = project_map("stop_sign")
    world = EmbeddedWorld(road_map, seed=0)
    no_signs = Behavior(desired_speed=8.0, ignore_signs=True, auto_lane_change=False, on_route_end="destroy")
    east = lane_at(road_map, (90, -1.8), (10, -1.8))
    south = lane_at(road_map, (-1.8, -90), (-1.8, -10))

    def through(lane, end_xy):
        nxt = next(i for i in road_map.lanes[lane].successors
                   if np.allclose(road_map.lanes[i].points[-1], end_xy, atol=0.5))
        return [lane, nxt, road_map.lanes[nxt].successors[0]]

    ego_lanes = through(east, ego_to)
    ego_route = route_through_lanes(road_map, ego_lanes, 60.0, 10.0)
    ego_pose = pose_on_lane(road_map, ego_lanes[1], 1.0) if inside else pose_on_lane(road_map, east, 70.0)
    world.spawn_vehicle(ego_pose, role="ego", route=ego_route)
    car = spawn_on_route(world, through(south, car_to), 50.0, no_signs)
    entry = road_map.lanes[south].length - 50.0  # route s of the junction entry
    furthest = 0.0
    for _ in range(80):
        world.tick()
        assert not world.collisions(car)
        if car in world.vehicles().ids:
            furthest = max(furthest, front_s(world, car))
    assert (furthest < entry) == yields


def test_fast_vehicle_changes_lane_to_overtake(project_map):
    road_map = project_map("highway")
    world = EmbeddedWorld(road_map, seed=0)
    middle = lane_at(road_map, (0, 5.2), (250, 5.2))
    slow = spawn_on_route(world, [middle], 60.0, Behavior(desired_speed=4.0, auto_lane_change=False,
                                                            on_route_end="destroy"), speed=4.0)
    fast = spawn_on_route(world, [middle], 20.0, Behavior(desired_speed=15.0, auto_lane_change=True,
                                                            on_route_end="destroy"), speed=10.0)
    for _ in range(120):
        world.tick()
        assert not world.collisions(fast)
    v = world.vehicles()
    assert v.xy[v.row(fast), 0] > v.xy[v.row(slow), 0] + 5.0   # overtook
    lanes = set(world.route_of(fast).lanes.tolist())
    assert len(lanes) > 1 and middle in lanes                    # by leaving the slow vehicle's lane


@pytest.mark.parametrize("corner_x", np.arange(26.4, 30.4, 0.5).round(1).tolist())  # every phase of the 4 m sampling
def test_vehicle_brakes_for_a_corner_poking_in_between_its_path_points(project_map, corner_x):
    """A box standing at an angle in the next lane with one corner 0.6 m into the vehicle's lane,
    4-8 m ahead: wherever the corner falls between the path points the autopilot samples every
    4 m, it brakes at once (before, a corner between two points went unseen)."""
    road_map = project_map("two_lane")
    world = EmbeddedWorld(road_map, seed=0)
    car = spawn_on_route(world, [0], 20.0, speed=5.0)            # front bumper at x = 22.4, y = 5.25
    yaw = np.radians(60.0)
    corner = np.array([corner_x, 4.65])
    centre = corner - box_corners(np.zeros((1, 2)), np.array([yaw]), np.array([[2.4, 1.05]]))[0, 1]
    world.spawn_vehicle(Pose(float(centre[0]), float(centre[1]), float(yaw)), role="ego")
    world.tick()
    assert world.vehicles().speed[world.vehicles().row(car)] < 5.0
