"""Background traffic through CARLA's Traffic Manager: its port, seed, and per-vehicle behaviours.

Each world gets a Traffic Manager on its own port (``tm_port: 0`` picks a free one), so parallel
envs and servers never share one. The TM runs in synchronous mode and is seeded on every reset.
What the TM offers per vehicle is mapped from ``Behavior``; IDM/MOBIL parameters it has no
equivalent for (time headway, accelerations, politeness) are not used by this backend.
"""
from __future__ import annotations

from typing import Any

import carla
import numpy as np

from cardreamer.config import CarlaServer
from cardreamer.roadmap import RoadMap, Route
from cardreamer.world.api import Behavior, WorldError
from cardreamer.world.carla_backend.connection import free_port, port_is_free

PATH_SPACING = 10.0  # m between the locations handed to the TM's set_path
INTENTION_STEP = 1.0  # m between the points of a route read from the TM's actions


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
    """Arc lengths of the path handed to the TM: every ``spacing`` metres outside junctions (the start left out), at
    least one on every stretch between two junctions, and the route's end (wherever it is).

    The TM re-plans a path on its own waypoint graph (``LocalizationStage::ImportPath``): it follows successors,
    consumes a point once one of its waypoints comes within about 5.5 m, and at a junction takes the branch whose
    exit road is the next point's road. A point inside a junction names a connector road no exit has, and a
    stretch with no point leaves the next junction's branch to the nearest exit (carla PR #4786).
    """
    in_junction = np.array([road_map.lanes[int(lane)].is_junction for lane in route.lanes])
    s = np.arange(spacing, route.length, spacing)
    kept = np.append(s[~in_junction[np.clip(np.searchsorted(route.s, s, side="right") - 1, 0, len(route.s) - 1)]],
                     route.length)
    # stretches outside junctions: [start, end) of each run of points on non-junction lanes
    edges = np.flatnonzero(np.diff(np.concatenate([[0], (~in_junction).astype(int), [0]])))
    ends = np.append(route.s, route.length)
    extra = [(ends[a] + ends[b]) / 2 for a, b in zip(edges[::2], edges[1::2])
             if not np.any((kept >= ends[a]) & (kept <= ends[b])) and ends[b] > spacing / 2]
    return np.unique(np.concatenate([kept, extra]))


def set_path(tm: Any, vehicle: Any, xy: np.ndarray, z: np.ndarray) -> None:
    """Make the Traffic Manager drive ``vehicle`` through these locations."""
    tm.set_path(vehicle, [carla.Location(x=float(x), y=float(y), z=float(h)) for (x, y), h in zip(xy, z)])


def tm_intention(tm: Any, vehicle: Any, start: np.ndarray, road_map: RoadMap) -> Route | None:
    """The route the Traffic Manager will drive ``vehicle`` along: from its box centre ``start`` through the waypoints
    of the TM's action buffer, every INTENTION_STEP metres; None when the TM cannot tell (no ``get_all_actions``
    before CARLA 0.9.13, a vehicle not in its buffer yet).

    ``get_all_actions(actor)`` returns ``[road option, carla.Waypoint]`` pairs (``TrafficManager::GetActionBuffer``,
    a ``std::pair<RoadOption, WaypointPtr>`` per buffered waypoint): where the TM's localization stage has planned
    the vehicle's next stretch, after its own lane changes and junction choices, not the path it was sent.
    """
    if not hasattr(tm, "get_all_actions"):
        return None
    waypoints = [action[1] for action in tm.get_all_actions(vehicle) if len(action) > 1 and action[1] is not None]
    xy, lanes = [np.asarray(start, float)], []
    for waypoint in waypoints:
        lane = road_map.index_of((waypoint.road_id, waypoint.section_id, waypoint.lane_id))
        lane = lane if lane is not None else (lanes[-1] if lanes else None)
        if lane is None:
            continue  # not a driving lane of this map (yet): the next one says where it goes
        location = waypoint.transform.location
        xy.append(np.array([location.x, location.y]))
        lanes.append(lane)
    if not lanes:
        return None
    points = np.array(xy)
    keep = np.concatenate([[True], np.linalg.norm(np.diff(points, axis=0), axis=1) > 1e-3])
    points, lanes = points[keep], np.array([lanes[0], *lanes])[keep]
    if len(points) < 2:
        return None
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    samples = np.append(np.arange(0.0, s[-1], INTENTION_STEP), s[-1])
    resampled = np.stack([np.interp(samples, s, points[:, 0]), np.interp(samples, s, points[:, 1])], axis=-1)
    segment = np.clip(np.searchsorted(s, samples, side="right"), 1, len(s) - 1)  # the waypoint each sample heads to
    direction = points[segment] - points[segment - 1]
    return Route(resampled, np.arctan2(direction[:, 1], direction[:, 0]), lanes[segment])
