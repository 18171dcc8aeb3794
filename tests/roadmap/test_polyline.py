"""Lane and Route share one Polyline base: arc length, position and heading at s, projection."""
from __future__ import annotations

import numpy as np
import pytest

from cardreamer.roadmap import Lane, Route
from cardreamer.roadmap.polyline import Polyline
from cardreamer.roadmap.route import route_through_lanes

L_SHAPE = np.array([[0.0, 0.0], [5.0, 0.0], [10.0, 0.0], [10.0, 5.0], [10.0, 10.0]])  # east 10 m, then south 10 m
HEADINGS = np.array([0.0, 0.0, np.pi / 4, np.pi / 2, np.pi / 2])


def lane(points: np.ndarray, headings: np.ndarray) -> Lane:
    n = len(points)
    return Lane(index=0, key=(1, 0, -1), points=points, headings=headings, widths=np.full(n, 3.5),
                is_junction=False, junction_id=-1, change_left=False, change_right=False,
                left_marking=["Solid"] * n, right_marking=["Solid"] * n)


def test_the_l_shape_by_hand():
    for shape in (lane(L_SHAPE, HEADINGS), Route(L_SHAPE, HEADINGS, np.zeros(5, dtype=int))):
        assert isinstance(shape, Polyline)
        assert shape.s.tolist() == [0.0, 5.0, 10.0, 15.0, 20.0] and shape.length == 20.0
        assert shape.position(15.0).tolist() == [10.0, 5.0]
        assert shape.position(np.array([2.5, 12.5])).tolist() == [[2.5, 0.0], [10.0, 2.5]]
        assert shape.heading_at(11.0) == pytest.approx(np.pi / 4 + 0.2 * np.pi / 4)
        s, lateral = shape.project(np.array([[12.0, 5.0], [4.0, 1.0], [4.0, -1.0]]))
        # heading +y, right is -x: x = 12 lies 2 m to the left; along +x, right is +y
        assert s == pytest.approx([15.0, 4.0, 4.0]) and lateral == pytest.approx([-2.0, 1.0, -1.0])


def test_headings_interpolate_across_the_wrap():
    """From 170 to -170 degrees the heading turns 20 degrees, not 340."""
    points = np.array([[0.0, 0.0], [1.0, 0.0]])
    headings = np.radians([170.0, -170.0])
    for shape in (lane(points, headings), Route(points, headings, np.zeros(2, dtype=int))):
        assert np.degrees(shape.heading_at(0.5)) == pytest.approx(180.0)


def test_lane_offsets_sideways_and_agrees_with_the_base_on_its_centre_line():
    curved = lane(L_SHAPE, HEADINGS)
    s = np.linspace(0.0, 20.0, 41)
    assert np.array_equal(curved.position(s), Polyline.position(curved, s))
    assert curved.position(15.0, lateral=1.5) == pytest.approx([8.5, 5.0])  # right of +y is -x
    assert curved.position(2.0, lateral=-1.0) == pytest.approx([2.0, -1.0])


def test_a_route_along_one_lane_of_a_map_agrees_with_the_lane(town04):
    """A route built along a real lane: position, heading and projection match the lane's."""
    index = max(range(len(town04.lanes)), key=lambda i: town04.lanes[i].length if not town04.lanes[i].is_junction else 0)
    real = town04.lanes[index]
    route = route_through_lanes(town04, [index], 3.0, real.length - 3.0)
    s_route = np.linspace(0.0, route.length, 25)
    xy = route.position(s_route)
    s_lane, lateral = real.project(xy)
    assert lateral == pytest.approx(np.zeros(25), abs=1e-6)
    assert s_lane == pytest.approx(s_route + 3.0, abs=1e-6)
    assert real.position(s_lane) == pytest.approx(xy, abs=1e-6)
    assert np.cos(route.heading_at(s_route) - real.heading_at(s_lane)) == pytest.approx(np.ones(25), abs=1e-9)
