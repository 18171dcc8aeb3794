"""Background traffic through CARLA's Traffic Manager: its port, seed, and per-vehicle behaviours.

Each world gets a Traffic Manager on its own port (``tm_port: 0`` picks a free one), so parallel
envs and servers never share one. The TM runs in synchronous mode and is seeded on every reset.
What the TM offers per vehicle is mapped from ``Behavior``; IDM/MOBIL parameters it has no
equivalent for (time headway, accelerations, politeness) are not used by this backend.
"""
from __future__ import annotations

import itertools
from typing import Any

import carla
import numpy as np

from cardreamer.config import CarlaServer
from cardreamer.roadmap import RoadMap, Route
from cardreamer.roadmap.route import route_through_lanes
from cardreamer.world.api import Behavior, WorldError
from cardreamer.world.carla_backend.connection import free_port, port_is_free
from cardreamer.world.carla_backend.heights import LaneHeights

PATH_SPACING = 10.0  # m between the locations handed to the TM's set_path
JUNCTION_MARGIN = 5.0  # m a path point keeps from a junction: the TM's waypoints are 5 m apart (Constants.h MAP_RESOLUTION)
INTENTION_STEP = 1.0  # m between the points of a route read from the TM's actions (none shorter)
LINK_DEPTH = 6  # lanes searched between two of the TM's actions


def check_tm_port(config: CarlaServer) -> None:
    """Refuse a configured Traffic Manager port that is the server's or already in use on this machine."""
    port = config.tm_port
    if not port:
        return
    if port in server_ports(config):
        raise WorldError(f"env.world.carla.tm_port {port} is one of the CARLA server's ports "
                         f"{config.port}-{config.port + 2}; use tm_port: 0 (a free port) or another port")
    if not port_is_free(port):
        raise WorldError(f"env.world.carla.tm_port {port} is in use on this machine (another env's Traffic "
                         f"Manager?); envs sharing one Traffic Manager override each other's vehicles and can hang "
                         f"ticks; use tm_port: 0 (a free port per world) or another port")


def server_ports(config: CarlaServer) -> set[int]:
    """The ports a server on ``config.port`` uses: RPC, streaming, secondary."""
    return {config.port, config.port + 1, config.port + 2}


def choose_tm_port(config: CarlaServer) -> int:
    """The configured Traffic Manager port, or a free one when it is 0 (never the server's ports)."""
    if config.tm_port:
        return config.tm_port
    return free_port(avoid=server_ports(config))


def start_traffic_manager(client: Any, port: int, seed: int) -> Any:
    """This world's own Traffic Manager on ``port``, synchronous and seeded.

    Always asked for by port: libcarla makes a TM on any port it is asked about (``get_trafficmanager``, and
    ``apply_batch_sync`` for vehicles it sets on autopilot, default port 8000), asynchronous, and keeps it in the
    process. A TM whose port is taken does not fail: its RPC server silently binds the next free port, so a taken
    port is refused here.
    """
    if not port_is_free(port):
        raise WorldError(f"Traffic Manager port {port} is in use on this machine (another env's Traffic Manager?); "
                         f"set env.world.carla.tm_port: 0 (a free port per world) or a free port")
    try:
        tm = client.get_trafficmanager(port)
    except RuntimeError as exc:
        raise WorldError(f"could not start a Traffic Manager on port {port}: {exc}; set env.world.carla.tm_port: 0 "
                         f"or another free port") from exc
    tm.set_synchronous_mode(True)
    tm.set_random_device_seed(seed)
    return tm


def apply_behavior(tm: Any, vehicle: Any, behavior: Behavior) -> None:
    """Hand one vehicle's behaviour to the Traffic Manager."""
    if hasattr(tm, "set_desired_speed"):  # CARLA >= 0.9.14
        tm.set_desired_speed(vehicle, behavior.desired_speed * 3.6)
    else:  # older TMs only take a percentage below the road's speed limit (km/h)
        limit = max(float(vehicle.get_speed_limit()), 1.0)
        tm.vehicle_percentage_speed_difference(vehicle, 100.0 * (1.0 - behavior.desired_speed * 3.6 / limit))
    tm.ignore_lights_percentage(vehicle, 100.0 if behavior.ignore_lights else 0.0)
    tm.ignore_signs_percentage(vehicle, 100.0 if behavior.ignore_signs else 0.0)
    tm.ignore_vehicles_percentage(vehicle, 100.0 if behavior.ignore_vehicles else 0.0)
    tm.auto_lane_change(vehicle, behavior.auto_lane_change)
    tm.distance_to_leading_vehicle(vehicle, behavior.min_gap)


def path_arc_lengths(route: Route, road_map: RoadMap, spacing: float = PATH_SPACING) -> np.ndarray:
    """Arc lengths along ``route`` of the path handed to the TM: every ``spacing`` metres (the start left out, the end
    kept) except inside junctions and within JUNCTION_MARGIN of one (the route's or the next after its end), plus one
    JUNCTION_MARGIN past every junction exit (mid-stretch where the stretch is shorter).

    How the TM uses a path (LocalizationStage.cpp, ``ImportPath``): it snaps each point to its own nearest waypoint
    (5 m apart, InMemoryMap), follows successors only, consumes a point once a waypoint it pushes is within sqrt(30) m,
    and at a fork takes the branch whose end point past the junction is on the next point's road (else the nearest).
    A point inside a junction, or near enough to snap into one, names a connector road no exit has and makes the buffer
    jump onto whichever connector it snapped to; with no point on a junction's exit road, the branch is left to the
    nearest end point (carla PR #4786).
    """
    in_junction = np.array([road_map.lanes[int(lane)].is_junction for lane in route.lanes])
    changes = np.flatnonzero(in_junction[1:] != in_junction[:-1])
    borders = [route.points[changes], route.points[changes + 1]]
    last = road_map.lanes[int(route.lanes[-1])]
    borders += [road_map.lanes[k].points[:1] for k in last.successors if road_map.lanes[k].is_junction]
    borders = np.concatenate(borders) if borders else np.zeros((0, 2))
    s = np.append(np.arange(spacing, route.length, spacing), route.length)
    point = np.clip(np.searchsorted(route.s, s, side="right") - 1, 0, len(route.s) - 1)
    clear = ~in_junction[point]
    if len(borders):
        clear &= np.min(np.linalg.norm(route.position(s)[:, None] - borders[None], axis=-1), axis=1) >= JUNCTION_MARGIN
    ends = np.append(route.s, route.length)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], (~in_junction).astype(int), [0]])))
    exits = [min(ends[a] + JUNCTION_MARGIN, (ends[a] + ends[b]) / 2) for a, b in zip(edges[::2], edges[1::2]) if a > 0]
    chosen = np.sort(np.concatenate([s[clear], exits]))
    return chosen[np.concatenate([[True], np.diff(chosen) > 1.0])] if len(chosen) else chosen


def tm_path(route: Route, road_map: RoadMap, heights: LaneHeights) -> tuple[np.ndarray, np.ndarray]:
    """The (x, y) and heights of the path the TM is sent for ``route``: ``path_arc_lengths``, and where the route ends
    inside a junction, a point JUNCTION_MARGIN onto the lane it leads to (so the TM leaves the junction the route's way
    and no point lies inside it)."""
    s = path_arc_lengths(route, road_map)
    xy, z = route.position(s).reshape(-1, 2), heights.along(route, s)
    last = road_map.lanes[int(route.lanes[-1])]
    if last.is_junction and last.successors:
        exit_lane = last.successors[0]
        s_exit = min(JUNCTION_MARGIN, road_map.lanes[exit_lane].length / 2)
        xy = np.concatenate([xy, road_map.lanes[exit_lane].position(s_exit)[None]])
        z = np.append(z, heights.at(exit_lane, s_exit))
    return xy, z


def set_path(tm: Any, vehicle: Any, xy: np.ndarray, z: np.ndarray) -> None:
    """Make the Traffic Manager drive ``vehicle`` through these locations."""
    tm.set_path(vehicle, [carla.Location(x=float(x), y=float(y), z=float(h)) for (x, y), h in zip(xy, z)])


def tm_intention(tm: Any, vehicle: Any, start: np.ndarray, road_map: RoadMap, planned: Route,
                 progress: float) -> Route | None:
    """The route the Traffic Manager will drive ``vehicle`` along, from its box centre ``start``; None when the TM
    cannot tell (no ``get_all_actions`` before CARLA 0.9.13, a vehicle it has not planned yet, no lane of this map).

    ``get_all_actions(actor)`` is sparse: ``[road option, carla.Waypoint]`` for the front of the TM's waypoint buffer
    and for each waypoint where the road option changes (LocalizationStage.cpp ``ComputeActionBuffer``: Left, Right,
    Straight on junction connectors, ChangeLaneLeft/Right, LaneFollow), as far as the TM has planned (15 m or more).
    So the route follows lane successors from the front's lane through each action's lane (a neighbour lane: a lane
    change), and on along the planned route where the last of them is on it ahead (the TM follows the path it was sent
    there), else to the end of that lane.
    """
    if not hasattr(tm, "get_all_actions"):
        return None
    keyed = [(road_map.index_of((w.road_id, w.section_id, w.lane_id)), w) for _, w in
             (a for a in tm.get_all_actions(vehicle) if len(a) > 1 and a[1] is not None)]
    keyed = [(lane, w) for lane, w in keyed if lane is not None]
    if not keyed:
        return None
    sequence = [keyed[0][0]]
    for lane, _ in keyed[1:]:
        link = _lane_link(road_map, sequence[-1], lane)
        if link is None:
            break  # not reachable from the lanes before it: the TM's buffer jumped (a path point on another lane)
        sequence += link
    ahead = [int(k) for k, _ in itertools.groupby(planned.lanes[np.searchsorted(planned.s, progress, side="right") - 1:])]
    first = road_map.lanes[sequence[0]]
    location = keyed[0][1].transform.location
    s_start = float(first.project(np.array([[location.x, location.y]]))[0][0])
    if sequence[-1] in ahead:
        sequence += ahead[ahead.index(sequence[-1]) + 1:]
        s_goal = float(road_map.lanes[sequence[-1]].project(planned.points[-1:])[0][0])
    else:
        s_goal = road_map.lanes[sequence[-1]].length
    if len(sequence) == 1 and s_goal - s_start < INTENTION_STEP:
        return None
    lanes_route = route_through_lanes(road_map, sequence, s_start, s_goal)
    start = np.asarray(start, float)
    steps = int(np.ceil(np.linalg.norm(lanes_route.points[0] - start) / INTENTION_STEP))  # to the buffer's front
    chord = start + np.linspace(0.0, 1.0, steps, endpoint=False)[:, None] * (lanes_route.points[0] - start)
    points = np.concatenate([chord.reshape(-1, 2), lanes_route.points])
    keep = np.concatenate([[True], np.linalg.norm(np.diff(points, axis=0), axis=1) > 1e-3])
    points, lanes = points[keep], np.concatenate([np.full(steps, lanes_route.lanes[0]), lanes_route.lanes])[keep]
    if len(points) < 2:
        return None
    direction = np.diff(points, axis=0)
    headings = np.arctan2(direction[:, 1], direction[:, 0])
    return Route(points, np.append(headings, lanes_route.headings[-1]), lanes)


def _lane_link(road_map: RoadMap, source: int, target: int, depth: int = LINK_DEPTH) -> list[int] | None:
    """The lanes after ``source`` up to ``target`` along successors (breadth first, at most ``depth`` lanes), or
    ``[target]`` for a neighbour lane; [] when they are the same lane; None when ``target`` is not reachable."""
    if source == target:
        return []
    lane = road_map.lanes[source]
    if target in (lane.left, lane.right) and target not in lane.successors:
        return [target]
    paths = [[source]]
    for _ in range(depth):
        paths = [p + [n] for p in paths for n in road_map.lanes[p[-1]].successors if n not in p]
        for p in paths:
            if p[-1] == target:
                return p[1:]
    return None
