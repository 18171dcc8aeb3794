"""Road network from OpenDRIVE: lanes, lane graph, routes, signals, spawn points, BEV raster."""
from cardreamer.roadmap.lane import Lane, LaneKey
from cardreamer.roadmap.road_map import MapError, RoadMap, Signal, SpawnPoints, builtin_map_names, map_sha256
from cardreamer.roadmap.route import Route, plan_route, plan_route_via, random_route

__all__ = [
           "Lane",
           "LaneKey",
           "MapError",
           "RoadMap",
           "Route",
           "Signal",
           "SpawnPoints",
           "builtin_map_names",
           "map_sha256",
           "plan_route",
           "plan_route_via",
           "random_route",
]
