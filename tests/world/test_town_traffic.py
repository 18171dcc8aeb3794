"""Town traffic over 300 s: it keeps moving (no gridlock) and background vehicles do not collide."""
from __future__ import annotations

import numpy as np
import pytest

from cardreamer.world.embedded import EmbeddedWorld


@pytest.mark.slow
@pytest.mark.parametrize("map_name", ["town_grid", "Town01"])
def test_fifty_vehicles_for_300_seconds(map_name, project_map, request):
    road_map = request.getfixturevalue("town01") if map_name == "Town01" else project_map(map_name)
    world = EmbeddedWorld(road_map, seed=0)
    ids = world.spawn_traffic(50)
    assert len(ids) == 50
    speeds, stopped_for = [], np.zeros(len(ids))
    for k in range(3000):
        world.tick()
        v = world.vehicles()
        speeds.append(v.speed.mean())
        stopped_for = np.where(v.speed < 0.05, stopped_for + world.dt, 0.0)
    assert len(world.vehicles().ids) == 50              # a town has no dead ends: everyone keeps driving
    assert np.mean(speeds[-1000:]) > 2.5                 # m/s, lights and queues included
    assert stopped_for.max() < 120.0                     # nobody waits two full light cycles: no gridlock
    assert world.stats["background_collisions"] == 0
