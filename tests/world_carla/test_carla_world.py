"""CarlaWorld against the stand-in server: maps, settings, spawning, controls, snapshots, lights, events."""
from __future__ import annotations

import socket

import carla
import numpy as np
import pytest
from carla_standin import Response, StandInServer, StandInTrafficManager

from cardreamer.config import CarlaServer
from cardreamer.roadmap import MapError, RoadMap, plan_route
from cardreamer.world.api import Behavior, Pose, SpawnError, TrafficLightStates, WorldError
from cardreamer.world.carla_backend import CarlaConnectionError, CarlaServerLost
from cardreamer.world.carla_backend.snapshot import ShapeCache, vehicle_arrays
from cardreamer.world.carla_backend.world import CarlaWorld, clipped_control

FOUR_LANE_XS = (5.8, 9.0, 12.2, 15.6)  # CarDreamer's four_lane task on Town04, driving -y from y=100


def lane_pose(world, x: float, y: float) -> Pose:
    lane, s, _ = world.road_map.locate(np.array([x, y]))
    return Pose(x, y, float(world.road_map.lanes[lane].heading_at(s)))


# ----------------------------------------------------------------------------- maps and settings
def test_connect_sets_synchronous_mode_and_close_restores_settings(make_world, server):
    world = make_world(dt=0.05, seed=3)
    assert server.world.settings == {"synchronous_mode": True, "fixed_delta_seconds": 0.05, "no_rendering_mode": False,
                                     "substepping": True, "max_substep_delta_time": 0.01, "max_substeps": 10}
    tm = server.traffic_managers[world.tm_port]
    assert tm.synchronous and tm.seed == 3
    assert world.road_map.name == "Town04" and world.dt == 0.05
    assert tm.running
    world.close()
    assert server.world.settings["synchronous_mode"] is False
    assert tm.synchronous is False
    assert not tm.running  # shut down: a later world in this process may take the same tm_port


def test_a_server_left_synchronous_by_a_dead_client_is_left_asynchronous_on_close(make_world, server):
    server.world.settings.update(synchronous_mode=True, fixed_delta_seconds=0.05)  # a killed client's leftover
    world = make_world(dt=0.1)
    world.close()
    assert server.world.settings["synchronous_mode"] is False  # nobody would tick it otherwise
    assert server.world.settings["fixed_delta_seconds"] == 0.05


def test_unknown_blueprint_is_a_clear_error_and_leaves_the_server_asynchronous(make_world, server):
    with pytest.raises(WorldError, match="no vehicle blueprint 'vehicle.flying.car'"):
        make_world(vehicle_blueprint="vehicle.flying.car")
    assert server.world.settings["synchronous_mode"] is False


def test_a_failure_after_entering_synchronous_mode_restores_the_settings(make_world, server, monkeypatch):
    monkeypatch.setattr(server.world, "get_snapshot", lambda: (_ for _ in ()).throw(RuntimeError("rpc::rpc_error")))
    with pytest.raises(RuntimeError, match="rpc_error"):
        make_world()
    assert server.world.settings["synchronous_mode"] is False


def test_town_by_name_or_by_its_xodr_loads_the_server_town(make_world, server, carla_maps_dir):
    world = make_world("Town01")
    assert world.road_map.name == "Town01" and server.world.carla_map.name == "Carla/Maps/Town01"
    world.close()
    world = make_world(str(carla_maps_dir / "Town04.xodr"))
    assert world.road_map.name == "Town04"


def test_a_task_xodr_is_generated_on_the_server(make_world, server, carla_maps_dir, tmp_path):
    custom = tmp_path / "my_task_map.xodr"
    custom.write_text((carla_maps_dir / "Town01.xodr").read_text())
    world = make_world(str(custom))
    assert server.generated_xodr == custom.read_text()
    assert len(world.road_map.lanes) > 10
    world.close()
    again = make_world(str(custom))  # the server has that map already: not generated again
    again.reconnect(relaunch=False)
    again.tick()
    assert server.generations == 1


def test_unknown_town_lists_the_server_maps(make_world):
    with pytest.raises(MapError, match=r"no map 'Town99'; it has Town01, Town04"):
        make_world("Town99")


def test_a_given_road_map_is_used_as_is(make_world, town04):
    world = make_world(road_map=town04)
    assert world.road_map is town04


# ----------------------------------------------------------------------------- spawning
def test_spawned_ego_is_in_the_snapshot_before_and_after_a_tick(make_world):
    world = make_world()
    pose = lane_pose(world, 5.8, 100.0)
    ego = world.spawn_vehicle(pose, role="ego")
    for _ in range(2):  # pending (spawned since the last tick), then from the server's snapshot
        v = world.vehicles()
        i = v.row(ego)
        assert v.is_ego[i] and v.xy[i] == pytest.approx([5.8, 100.0], abs=1e-3)
        assert v.yaw[i] == pytest.approx(pose.yaw, abs=1e-4)
        assert v.extent[i] == pytest.approx([2.4, 1.05])
        world.tick()


def test_spawn_off_the_road_or_on_another_vehicle_fails(make_world):
    world = make_world()
    with pytest.raises(SpawnError, match=r"off every driving lane"):
        world.spawn_vehicle(Pose(5000.0, 5000.0, 0.0))
    first = world.spawn_vehicle(lane_pose(world, 9.0, 80.0))
    with pytest.raises(SpawnError, match="collision at spawn position"):
        world.spawn_vehicle(lane_pose(world, 9.0, 81.0))
    assert world.try_spawn_vehicle(lane_pose(world, 9.0, 81.0)) is None
    assert world.vehicles().ids.tolist() == [first]


def test_background_vehicles_get_autopilot_behaviour_and_route(make_world, server):
    world = make_world()
    route = plan_route(world.road_map, (12.2, 100.0), (12.2, -58.0))
    behavior = Behavior(desired_speed=7.0, ignore_lights=True, auto_lane_change=False, min_gap=4.0)
    actor_id = world.spawn_vehicle(lane_pose(world, 12.2, 100.0), route=route, behavior=behavior, speed=5.0)
    vehicle = server.actors[actor_id]
    assert vehicle.autopilot_port == world.tm_port
    assert vehicle.attributes["role_name"] == "autopilot"
    assert vehicle.desired_speed_kmh == pytest.approx(7.0 * 3.6)
    assert vehicle.tm_settings == {"ignore_lights_percentage": 100.0, "ignore_signs_percentage": 0.0,
                                   "ignore_vehicles_percentage": 0.0, "auto_lane_change": False,
                                   "distance_to_leading_vehicle": 4.0}
    path = np.array(vehicle.path)
    s, lateral = route.project(path[:-1])
    assert np.abs(lateral).max() < 0.05
    # none inside Town04's junction stretches (y > 65, and y < -48 where the route ends) or within 5 m of one: one 5 m
    # past the first one's exit, then every 10 m, and the last 5 m onto the lane the route's last junction lane leads to
    road_map = world.road_map
    past_junction = route.s[np.flatnonzero([not road_map.lanes[lane].is_junction for lane in route.lanes])[0]]
    assert past_junction > 20.0
    assert s[0] == pytest.approx(past_junction + 5.0, abs=0.01)
    assert np.diff(s[1:]) == pytest.approx(10.0, abs=0.01) and s[1] == pytest.approx(10.0 * round(s[1] / 10.0), abs=1e-3)
    assert 1.0 < s[1] - s[0] <= 11.0  # a grid point within 1 m of the exit's is left out
    assert road_map.lanes[int(route.lanes[-1])].is_junction and route.length - s[-1] > 5.0
    exit_lane = road_map.lanes[road_map.lanes[int(route.lanes[-1])].successors[0]]
    assert path[-1] == pytest.approx(exit_lane.position(5.0), abs=1e-3)
    assert vehicle.velocity == pytest.approx([5.0 * np.cos(route.headings[0]), 5.0 * np.sin(route.headings[0])],
                                             abs=1e-3)
    intended = world.intended_route(actor_id)
    assert world.route_of(actor_id) is route and intended[0] is route and intended[1] == 0.0  # nothing buffered
    for _ in range(30):
        world.tick()
    assert world.route_progress(actor_id) == pytest.approx(7.0 * 3.0, abs=1.0)
    assert world.intended_route(actor_id)[1] == 0.0  # its intention now comes from the TM and starts where it is


def test_background_intentions_are_what_the_traffic_manager_will_drive(make_world, server):
    """get_all_actions lists only the front of the TM's buffer and each change of road option
    (LocalizationStage::ComputeActionBuffer): the intention follows the lanes from there and on along the planned
    route; when the TM's buffer is on another lane, along that one."""
    world = make_world()
    route = plan_route(world.road_map, (9.0, 60.0), (9.0, -58.0))
    actor_id = world.spawn_vehicle(lane_pose(world, 9.0, 60.0), route=route, speed=5.0)
    tm = server.traffic_managers[world.tm_port]
    vehicle = server.actors[actor_id]
    for _ in range(3):
        world.tick()
    assert [option for option, _ in tm.get_all_actions(vehicle)] == ["LaneFollow"]  # one lane: the front only
    intention, progress = world.intended_route(actor_id)
    v = world.vehicles()
    assert intention is not route and progress == 0.0 and world.route_of(actor_id) is route  # the plan is kept
    assert intention.points[0] == pytest.approx(v.xy[v.row(actor_id)])  # from where the vehicle is now
    _, off = route.project(intention.points[1:])
    assert np.abs(off).max() < 0.1 and intention.length == pytest.approx(route.length - world.route_progress(actor_id),
                                                                         abs=3.0)
    assert np.diff(intention.s).max() <= 1.0 + 1e-4
    # the TM takes the vehicle one lane over (its buffer jumps to a path point on lane x = 12.2)
    tm.set_path(vehicle, [carla.Location(x=12.2, y=float(y), z=0.0) for y in (45.0, 30.0, 15.0, 0.0)])
    for _ in range(40):
        world.tick()
    intention, progress = world.intended_route(actor_id)
    v = world.vehicles()
    assert intention.points[0] == pytest.approx(v.xy[v.row(actor_id)]) and progress == 0.0
    lane_x = {lane: world.road_map.lanes[lane].position(0.0)[0] for lane in set(intention.lanes.tolist())}
    assert all(abs(x - 12.2) < 1.0 for x in lane_x.values()) and intention.length > 30.0  # the TM's lane, ahead


def test_background_vehicles_stay_on_their_route_through_junctions(make_world, server):
    """With a TM that plans as CARLA's (successors only, branches by the next point's road, points consumed within
    sqrt(30) m and snapped to its 5 m waypoints), every vehicle drives its planned route, junctions included."""
    from cardreamer.roadmap import random_route

    world = make_world("Town01")
    points = world.road_map.spawn_points()
    for seed in range(14, 22):
        rng = np.random.default_rng(seed)
        i = int(rng.integers(len(points.xy)))
        route = random_route(world.road_map, rng, int(points.lane[i]), float(points.s[i]), 200.0)
        vehicle = world.spawn_vehicle(Pose(float(points.xy[i, 0]), float(points.xy[i, 1]), float(points.yaw[i])),
                                      route=route, behavior=Behavior(desired_speed=8.0))
        for _ in range(200):
            world.tick()
            if world.route_of(vehicle) is not route:
                break  # arrived: a new route
            v = world.vehicles()
            _, off = route.project(v.xy[v.row(vehicle)][None])
            assert abs(off[0]) < 2.0, f"seed {seed}: {off[0]:.1f} m off its route at {world.route_progress(vehicle):.0f} m"
        assert world.route_of(vehicle) is not route or world.route_progress(vehicle) > 150.0
        world.destroy(vehicle)


def test_intentions_fall_back_to_the_planned_route_without_the_tms_actions(make_world, server, monkeypatch):
    monkeypatch.delattr(StandInTrafficManager, "get_all_actions")  # a TM before CARLA 0.9.13
    world = make_world()
    route = plan_route(world.road_map, (9.0, 60.0), (9.0, -58.0))
    actor_id = world.spawn_vehicle(lane_pose(world, 9.0, 60.0), route=route, speed=5.0)
    for _ in range(5):
        world.tick()
    intention, progress = world.intended_route(actor_id)
    assert intention is route and progress == world.route_progress(actor_id) > 1.0


def test_a_failed_chained_command_leaves_no_vehicle_behind(make_world, server, monkeypatch):
    world = make_world()
    execute = server.world.execute

    def refuse_velocity(command):
        if isinstance(command, carla.command.ApplyTargetVelocity):
            return Response(error="velocity refused")
        return execute(command)

    monkeypatch.setattr(server.world, "execute", refuse_velocity)  # fails after the vehicle was created
    with pytest.raises(SpawnError, match="velocity refused"):
        world.spawn_vehicle(lane_pose(world, 9.0, 80.0), speed=5.0)
    assert server.live() == [] and world.vehicles().ids.size == 0


def test_vehicles_go_on_autopilot_only_with_the_worlds_own_traffic_manager(make_world, server):
    """libcarla's apply_batch_sync registers autopilot vehicles with get_trafficmanager(port), which makes a new,
    asynchronous TM when there is none: a world whose TM was shut down (a failed reconnect) must not spawn traffic."""
    world = make_world()
    world.spawn_traffic(2)
    assert list(server.traffic_managers) == [world.tm_port] and server.traffic_managers[world.tm_port].synchronous
    server.kill()
    with pytest.raises(CarlaServerLost):
        world.tick()
    with pytest.raises(CarlaConnectionError):
        world.reconnect(relaunch=False)  # still down: the old TM is shut down, no new one
    server.restart()  # back, but this world has not reconnected
    with pytest.raises(CarlaServerLost, match="call reconnect"):
        world.spawn_traffic(2)
    with pytest.raises(CarlaServerLost, match="call reconnect"):
        world.reset(1)
    assert server.traffic_managers == {}  # none made on the old port, none on 8000
    world.reconnect(relaunch=False)
    world.reset(1)
    assert len(world.spawn_traffic(2)) == 2
    assert list(server.traffic_managers) == [world.tm_port] and server.traffic_managers[world.tm_port].synchronous


def test_spawn_traffic_is_one_batch_away_from_the_ego(make_world, server):
    world = make_world()
    ego = world.spawn_vehicle(lane_pose(world, 5.8, 100.0), role="ego")
    batches = len(server.batches)
    ids = world.spawn_traffic(25, Behavior(desired_speed=6.0), exclude_near=np.array([5.8, 100.0]), exclude_radius=30)
    assert len(server.batches) == batches + 1 and len(server.batches[-1]) == 25
    assert len(ids) == 25 and ego not in ids
    v = world.vehicles()
    others = v.xy[~v.is_ego]
    assert np.min(np.linalg.norm(others - [5.8, 100.0], axis=1)) > 30
    assert all(world.route_of(i) is not None for i in ids)


def test_vehicles_spawn_at_their_own_lane_height_on_overpasses(make_world, server):
    world = make_world()
    ids = world.spawn_traffic(150)
    points = world._spawn_points
    heights = []
    for actor_id in ids:
        vehicle = server.actors[actor_id]
        k = int(np.argmin(np.linalg.norm(points.xy - vehicle.xy, axis=1)))
        expected = world.heights.at(int(points.lane[k]), float(points.s[k]))
        assert vehicle.z == pytest.approx(expected + 0.5, abs=1e-6)
        assert vehicle.path_xyz[0][2] == pytest.approx(expected, abs=3.0)  # ahead on the same deck (8+ m apart)
        heights.append(expected)
    assert max(heights) > 5.0 and min(heights) < 1.0  # Town04 has both levels


def test_spawn_traffic_is_seeded(make_world):
    world = make_world()
    world.reset(5)
    first = world.vehicles().xy if world.spawn_traffic(10) else None
    world.reset(5)
    world.spawn_traffic(10)
    assert np.array_equal(world.vehicles().xy, first)


def test_route_end_destroys_or_renews(make_world):
    world = make_world()
    short = plan_route(world.road_map, (15.6, 100.0), (15.6, 80.0))
    leaving = world.spawn_vehicle(lane_pose(world, 15.6, 100.0), route=short,
                                  behavior=Behavior(desired_speed=10.0, on_route_end="destroy"))
    staying = world.spawn_vehicle(lane_pose(world, 9.0, 100.0), route=plan_route(world.road_map, (9.0, 100), (9.0, 80)),
                                  behavior=Behavior(desired_speed=10.0))
    for _ in range(25):
        world.tick()
    assert leaving not in world.vehicles().ids
    assert staying in world.vehicles().ids
    assert world.route_of(staying).length > 100 and world.route_progress(staying) < 10


# ----------------------------------------------------------------------------- controls
def test_control_is_clipped_and_sent_in_a_batch_before_the_tick(make_world, server):
    world = make_world()
    ego = world.spawn_vehicle(lane_pose(world, 5.8, 100.0), role="ego")
    world.apply_control(ego, carla.VehicleControl(throttle=1.7, steer=-2.0, brake=-0.5, reverse=True, gear=-1))
    world.tick()
    (command,) = server.batches[-1]
    assert isinstance(command, carla.command.ApplyVehicleControl) and command.actor_id == ego
    sent = server.actors[ego].control
    assert (sent.throttle, sent.steer, sent.brake, sent.reverse, sent.gear) == (1.0, -1.0, 0.0, True, -1)
    batches = len(server.batches)
    world.tick()
    assert len(server.batches) == batches  # CARLA keeps the last control: nothing re-sent without a new one


def test_clipped_control_keeps_valid_values():
    control = carla.VehicleControl(throttle=0.3, steer=0.2, brake=0.0, hand_brake=True)
    out = clipped_control(control)
    assert (out.throttle, out.steer, out.brake, out.hand_brake) == pytest.approx((0.3, 0.2, 0.0, True))


def test_controls_only_for_own_ego_vehicles(make_world):
    world = make_world()
    background = world.spawn_vehicle(lane_pose(world, 9.0, 100.0))
    with pytest.raises(WorldError, match="driven by the Traffic Manager"):
        world.apply_control(background, carla.VehicleControl(throttle=1.0))
    with pytest.raises(WorldError, match="no vehicle with id 999999"):
        world.apply_control(999999, carla.VehicleControl())


def test_ego_drives_forward_on_throttle(make_world):
    world = make_world()
    route = plan_route(world.road_map, (5.8, 100.0), (5.8, -58.0))
    ego = world.spawn_vehicle(lane_pose(world, 5.8, 100.0), role="ego", route=route)
    for _ in range(20):
        world.apply_control(ego, carla.VehicleControl(throttle=0.6))
        world.tick()
    v = world.vehicles()
    assert v.speed[v.row(ego)] > 3.0
    assert world.route_progress(ego) > 5.0 and not world.is_off_road(ego)


# ----------------------------------------------------------------------------- snapshots
class _Snap:
    def __init__(self, actor_id, xyz_yaw, velocity, accel=(0.0, 0.0)):
        self.id = actor_id
        x, y, yaw = xyz_yaw
        self._t = carla.Transform(carla.Location(x=x, y=y), carla.Rotation(yaw=yaw))
        self._v = carla.Vector3D(*velocity, 0.0)
        self._a = carla.Vector3D(*accel, 0.0)

    def get_transform(self):
        return self._t

    def get_velocity(self):
        return self._v

    def get_acceleration(self):
        return self._a


class _Actor:
    def __init__(self, actor_id, type_id, extent=(2.0, 1.0), offset=(0.0, 0.0)):
        self.id, self.type_id = actor_id, type_id
        self.bounding_box = carla.BoundingBox(carla.Location(x=offset[0], y=offset[1]), carla.Vector3D(*extent, 0.7))

    def get_physics_control(self) -> carla.VehiclePhysicsControl:
        return carla.VehiclePhysicsControl(mass=1500.0)


def test_snapshot_conversion_degrees_offsets_and_reverse_speed():
    shapes = ShapeCache()
    shapes.remember([_Actor(1, "vehicle.audi.tt", (2.0, 0.9), (0.5, 0.0)), _Actor(2, "vehicle.tesla.model3"),
                     _Actor(3, "sensor.camera.rgb")])
    snapshot = [_Snap(1, (10.0, 20.0, 270.0), (0.0, -3.0), (0.0, 1.0)), _Snap(2, (0.0, 0.0, 180.0), (2.0, 0.0)),
                _Snap(3, (0.0, 0.0, 0.0), (0.0, 0.0))]
    v = vehicle_arrays(snapshot, shapes, egos={2}, hidden=set(), pending={})
    assert v.ids.tolist() == [1, 2]
    assert v.yaw == pytest.approx([-np.pi / 2, np.pi])
    assert v.xy[0] == pytest.approx([10.0, 19.5])        # box centre 0.5 m ahead of the origin, heading -y
    assert v.speed == pytest.approx([3.0, -2.0])          # vehicle 2 faces -x and moves +x: reversing
    assert v.acceleration[0] == pytest.approx([0.0, 1.0])
    assert v.extent[0] == pytest.approx([2.0, 0.9]) and v.is_ego.tolist() == [False, True]
    assert vehicle_arrays(snapshot, shapes, egos=set(), hidden={1}, pending={}).ids.tolist() == [2]


def test_one_snapshot_per_tick_and_actor_queries_only_for_new_ids(make_world, server, monkeypatch):
    world = make_world()
    world.spawn_traffic(15)
    world.tick()
    calls = {"get_snapshot": 0, "get_actors": 0}
    for name in calls:
        original = getattr(server.world, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)
        monkeypatch.setattr(server.world, name, counted)
    for _ in range(10):
        world.tick()
        world.vehicles()
        world.vehicles()
    assert calls == {"get_snapshot": 10, "get_actors": 0}


def test_destroyed_vehicle_leaves_the_snapshot_at_once(make_world, server):
    world = make_world()
    ids = world.spawn_traffic(5)
    world.tick()
    world.destroy(ids[0])
    assert ids[0] not in world.vehicles().ids and ids[0] not in server.actors
    with pytest.raises(WorldError):
        world.destroy(ids[0])


# ----------------------------------------------------------------------------- traffic lights
def test_lights_map_to_road_map_signals_by_opendrive_id(make_world, server):
    world = make_world()
    lights = world.traffic_lights()
    signals = world.road_map.signals
    expected = [i for i, s in enumerate(signals) if s.kind == "traffic_light"]
    assert lights.signals.tolist() == expected
    by_id = {a.opendrive_id: a for a in server.live("traffic.")}
    by_id[signals[expected[0]].id].state = carla.TrafficLightState.Green
    by_id[signals[expected[0]].id].elapsed = 1.5
    lights = world.traffic_lights()
    assert lights.states[0] == TrafficLightStates.GREEN and lights.elapsed[0] == 1.5
    assert set(lights.states.tolist()) <= {TrafficLightStates.RED, TrafficLightStates.YELLOW, TrafficLightStates.GREEN}


def test_lights_whose_opendrive_ids_are_not_their_signals_are_found_where_they_stand(make_world, server):
    """Lights placed in the editor may carry ids that are not the OpenDRIVE signals'; CARLA's
    get_traffic_lights_from_waypoint looks lights up by those ids too, so only where a light
    stands tells which signal it is."""
    server.foreign_light_ids = True
    server.restart()
    world = make_world()
    signals = world.road_map.signals
    expected = [i for i, s in enumerate(signals) if s.kind == "traffic_light"]
    assert world.traffic_lights().signals.tolist() == expected
    first = signals[expected[0]]
    light = min(server.live("traffic."), key=lambda a: a.get_transform().location.distance(
        carla.Location(x=float(first.location[0]), y=float(first.location[1]))))
    for state, expect in ((carla.TrafficLightState.Green, TrafficLightStates.GREEN),
                          (carla.TrafficLightState.Red, TrafficLightStates.RED)):
        light.state = state
        assert world.traffic_lights().states[0] == expect


def test_light_timing_per_junction_and_cycle(make_world, server):
    world = make_world()
    lanes = world.road_map.lanes
    lights = [s for s in world.road_map.signals if s.kind == "traffic_light"]
    junction = lanes[lights[0].lane].junction_id  # Town04 puts its lights on junction lanes
    world.set_traffic_light_timing(green=0.5, yellow=0.3, red=0.4, junction_id=junction)
    ids = {s.id for s in lights if lanes[s.lane].junction_id == junction}
    assert 0 < len(ids) < len({s.id for s in lights})
    for light in server.live("traffic."):
        green = light.times[carla.TrafficLightState.Green]
        assert green == (0.5 if light.opendrive_id in ids else 10.0)
    with pytest.raises(WorldError, match="no traffic light controls junction -12345"):
        world.set_traffic_light_timing(1.0, 1.0, junction_id=-12345)
    with pytest.raises(WorldError, match="green time must be > 0"):
        world.set_traffic_light_timing(0.0, 1.0)
    world.set_traffic_light_timing(green=0.5, yellow=0.5)
    seen = set()
    for _ in range(40):
        world.tick()
        seen.add(int(world.traffic_lights().states[0]))
    assert seen == {0, 1, 2}


# ----------------------------------------------------------------------------- collision and lane events
def test_collision_event_names_the_other_vehicle_and_the_frame(make_world):
    world = make_world()
    ego = world.spawn_vehicle(lane_pose(world, 5.8, 100.0), role="ego")
    parked = world.spawn_vehicle(lane_pose(world, 5.8, 85.0), role="ego")
    hits, speed = [], 0.0
    for _ in range(60):
        world.apply_control(ego, carla.VehicleControl(throttle=1.0))
        speed = float(world.vehicles().speed[world.vehicles().row(ego)])  # before the tick
        world.tick()
        hits = world.collisions(ego)
        if hits:
            break
    assert len(hits) == 1  # in the tick it happened, although the stand-in delivers it after tick() returned
    assert (hits[0].frame, hits[0].actor_id, hits[0].other_id) == (world.frame, ego, parked)
    assert world.vehicles().speed[world.vehicles().row(ego)] == 0.0  # the contact stopped both vehicles
    assert speed > 3.0 and hits[0].relative_speed == pytest.approx(speed, rel=1e-6)  # from normal_impulse
    assert world.collisions(parked)[0].other_id == ego
    world.tick()
    assert world.collisions(ego) == []  # events belong to the tick they happened in


def test_lane_invasion_reports_the_crossed_marking(make_world):
    world = make_world()
    ego = world.spawn_vehicle(lane_pose(world, 9.0, 100.0), role="ego", speed=6.0)
    events = []
    for _ in range(40):
        world.apply_control(ego, carla.VehicleControl(throttle=0.3, steer=-0.15))
        world.tick()
        now = world.lane_invasions(ego)
        assert all(event.frame == world.frame for event in now)  # computed client-side after the tick returned
        events += now
    assert events and events[0].actor_id == ego
    assert events[0].markings and all(m in ("Broken", "Solid", "SolidSolid", "BrokenBroken", "NONE", "Other")
                                      for m in events[0].markings)


def test_road_map_of_the_world_matches_an_offline_parse(make_world, carla_maps_dir):
    world = make_world()
    offline = RoadMap.load(str(carla_maps_dir / "Town04.xodr"))
    assert len(world.road_map.lanes) == len(offline.lanes)
    assert [s.id for s in world.road_map.signals] == [s.id for s in offline.signals]


def test_world_refuses_an_unknown_role(make_world):
    world = make_world()
    with pytest.raises(WorldError, match="role 'pedestrian'"):
        world.spawn_vehicle(lane_pose(world, 5.8, 100.0), role="pedestrian")


def test_config_timeout_is_used_for_calls(make_world, server):
    world = make_world(config=CarlaServer(timeout=3.5))
    assert world.client.timeout == 3.5


def test_a_second_world_on_one_server_is_refused_and_each_server_gets_its_own(make_world, server, carla_maps_dir):
    first = make_world()
    with pytest.raises(WorldError, match=r"a CARLA world on 127.0.0.1:2000 is already open in this process; .*"
                                         r"Give each env its own server \(env.world.carla.port\)"):
        make_world()
    other = StandInServer({"Town04": carla_maps_dir / "Town04.xodr"}, port=2010)
    second = CarlaWorld(CarlaServer(port=2010, timeout=1.0), "Town04", client_factory=other.client)
    try:
        assert first.tm_port != second.tm_port
        a = first.spawn_vehicle(lane_pose(first, 9.0, 80.0))
        b = second.spawn_vehicle(lane_pose(second, 12.2, 60.0))
        assert server.actors[a].autopilot_port == first.tm_port and other.actors[b].autopilot_port == second.tm_port
    finally:
        second.close()
    first.close()
    make_world().close()  # closing frees the server for the next world


def test_a_configured_tm_port_in_use_or_of_the_server_is_refused_before_any_server_call(make_world, server):
    with socket.socket() as busy:  # what another env's Traffic Manager looks like
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(WorldError, match=rf"tm_port {port} is in use on this machine \(another env's Traffic "
                                             r"Manager\?\).*use tm_port: 0"):
            make_world(config=CarlaServer(timeout=1.0, tm_port=port))
    with pytest.raises(WorldError, match=r"tm_port 2001 is one of the CARLA server's ports 2000-2002"):
        make_world(config=CarlaServer(timeout=1.0, port=2000, tm_port=2001))
    assert server.world.settings["synchronous_mode"] is False and server.traffic_managers == {}
    assert make_world(config=CarlaServer(timeout=1.0, tm_port=port)).tm_port == port  # free again: taken


def test_vectorized_progress_matches_projection_and_never_decreases(town04):
    from cardreamer.roadmap import random_route
    from cardreamer.world.carla_backend.progress import advance_progress

    rng = np.random.default_rng(0)
    points = town04.spawn_points()
    routes, last, xy, expected = [], [], [], []
    for _ in range(40):
        i = int(rng.integers(len(points.xy)))
        route = random_route(town04, rng, int(points.lane[i]), float(points.s[i]), 200.0)
        s_true = float(rng.uniform(0, route.length))
        heading = route.heading_at(s_true)
        offset = rng.uniform(-1.0, 1.0) * np.array([-np.sin(heading), np.cos(heading)])
        routes.append(route)
        last.append(max(s_true - rng.uniform(0, 30), 0.0))
        xy.append(route.position(s_true) + offset)
        expected.append(float(route.project((route.position(s_true) + offset)[None])[0][0]))
    got = advance_progress(routes, np.array(last), np.array(xy))
    assert got == pytest.approx(expected, abs=1e-6)
    assert np.all(advance_progress(routes, got + 5.0, np.array(xy)) == got + 5.0)  # never backwards


def test_map_queries_are_made_at_the_vehicles_height_on_an_overpass(make_world):
    """Town04's road 39 crosses the four-lane road 47 11 m above it: at z = 0 the map picks the lower deck
    (x = 16.3) or finds no lane at all (x = 20..28) under a vehicle driving on the upper one."""
    world = make_world()
    lower, _, _ = world.road_map.locate(np.array([16.3, 13.2]))
    upper, _, _ = world.road_map.locate(np.array([16.3, 13.2]), z=11.0)
    assert (world.road_map.lanes[lower].key[0], world.road_map.lanes[upper].key[0]) == (47, 39)
    ego = world.spawn_vehicle(Pose(32.0, 13.21, np.pi), role="ego")  # on the overpass, driving towards -x
    world.apply_control(ego, carla.VehicleControl(throttle=1.0))
    passed = []
    for _ in range(200):
        world.tick()
        x = float(world.vehicles().xy[0, 0])
        passed.append(x)
        assert not world.is_off_road(ego), f"off road at x = {x:.1f} on the overpass"
        if x < 17.0:
            break
    assert min(passed) < 20.0 < max(passed)  # it crossed the stretch where z = 0 finds no lane


@pytest.mark.parametrize("dt", [0.05, 0.1, 0.2, 0.5])
def test_physics_substeps_cover_the_step(make_world, server, dt):
    """CARLA needs fixed_delta_seconds <= max_substep_delta_time * max_substeps (defaults 0.01 s x 10 = 0.1 s)."""
    make_world(dt=dt)
    settings = server.world.get_settings()
    assert settings.substepping and settings.fixed_delta_seconds == pytest.approx(dt)
    assert settings.max_substep_delta_time * settings.max_substeps >= dt - 1e-9 and settings.max_substeps <= 16
    assert server.physics_warnings == []
    if dt <= 0.1:
        assert (settings.max_substep_delta_time, settings.max_substeps) == (pytest.approx(0.01), 10)


def test_a_vehicle_whose_box_is_off_its_origin_does_not_jump_on_its_first_tick(make_world):
    """Positions are box centres; a blueprint's box can sit ahead of the actor origin (the stand-in's offset_box
    blueprint: 0.8 m ahead, 0.1 m right), so the spawn transform must put the origin behind the requested pose."""
    world = make_world(vehicle_blueprint="vehicle.standin.offset_box")
    for k in range(2):  # the first vehicle of the blueprint (offset learnt after it spawned) and a later one
        pose = lane_pose(world, 5.8, 100.0 - 30.0 * k)
        ego = world.spawn_vehicle(pose, role="ego")
        before = world.vehicles()
        assert before.xy[before.row(ego)] == pytest.approx([pose.x, pose.y])
        world.tick()
        after = world.vehicles()
        assert after.xy[after.row(ego)] == pytest.approx([pose.x, pose.y], abs=1e-3)


def test_traffic_manager_paths_have_no_point_in_a_junction_and_one_between_any_two(make_world, server):
    """The TM re-plans a path on its own graph and picks a junction branch by the next point's road: a point inside
    a junction names a connector road no branch exits on, and a stretch without a point leaves the next branch to
    chance (LocalizationStage::ImportPath, carla PR #4786)."""
    from cardreamer.roadmap import random_route

    world = make_world("Town01")
    road_map, carla_map = world.road_map, server.world.carla_map
    points = road_map.spawn_points()
    crossings = ends_in_junction = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        i = int(rng.integers(len(points.xy)))
        route = random_route(road_map, rng, int(points.lane[i]), float(points.s[i]), 300.0)
        vehicle = world.spawn_vehicle(Pose(float(points.xy[i, 0]), float(points.xy[i, 1]), float(points.yaw[i])),
                                      route=route)
        path = server.actors[vehicle].path_xyz
        in_junction = np.array([road_map.lanes[int(lane)].is_junction for lane in route.lanes])
        border = np.flatnonzero(in_junction[1:] != in_junction[:-1])
        borders = np.concatenate([route.points[border], route.points[border + 1]])
        for x, y, z in path:
            waypoint = carla_map.get_waypoint(carla.Location(x=x, y=y, z=z))
            assert not waypoint.is_junction, f"path point ({x:.1f}, {y:.1f}) is inside junction {waypoint.junction_id}"
            assert not len(borders) or np.linalg.norm(borders - [x, y], axis=1).min() > 4.9, \
                f"path point ({x:.1f}, {y:.1f}) within 5 m of a junction: the TM's 5 m waypoints may snap it into one"
        if road_map.lanes[int(route.lanes[-1])].is_junction:  # the route ends in a junction: the path leaves it
            exit_lane = road_map.lanes[road_map.lanes[int(route.lanes[-1])].successors[0]]
            assert exit_lane.project(np.array(path[-1][:2])[None])[1][0] == pytest.approx(0.0, abs=0.05)
            ends_in_junction += 1
        runs = np.flatnonzero(np.diff(np.concatenate([[0], (~in_junction).astype(int), [0]])))
        for a, b in zip(runs[::2], runs[1::2]):
            if a == 0 or b == len(route.lanes):
                continue  # the stretch it starts on, the one it ends on
            crossings += 1
            stretch = route.points[a:b]
            near = [np.min(np.linalg.norm(stretch - np.array([x, y]), axis=1)) for x, y, _ in path]
            assert min(near) < 1.0, f"no path point between two junctions on route points {a}..{b}"
        world.destroy(vehicle)
    assert crossings >= 3 and ends_in_junction >= 1
