"""The shared geometry module: box corners, the ego frame and bounding radii against hand-computed
values, and oriented-box overlap (SAT) against OpenCV's exact convex-polygon intersection."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from cardreamer.geometry import (
    bounding_radius,
    box_corners,
    box_corners_complex,
    boxes_overlap,
    complex_to_xy,
    corner_segment_distance,
    from_ego_frame,
    overlapping_pairs,
    point_box_distance,
    to_ego_frame,
)
from cardreamer.world.api import VehicleArrays


def corners(xy, yaw, ext) -> np.ndarray:
    v = VehicleArrays(ids=np.zeros(1), xy=np.array([xy], float), yaw=np.array([yaw], float), speed=np.zeros(1),
                      velocity=np.zeros((1, 2)), acceleration=np.zeros((1, 2)), extent=np.array([ext], float),
                      is_ego=np.zeros(1, bool))
    return v.corners()[0].astype(np.float32)


def intersection_area(a, b) -> float:
    area, _ = cv2.intersectConvexConvex(corners(*a), corners(*b))
    return float(area)


def reference_overlap(a, b) -> bool:
    return intersection_area(a, b) > 1e-4


CAR = (2.4, 1.05)


@pytest.mark.parametrize("a, b, expected", [
    (((0, 0), 0.0, CAR), ((4.7, 0), 0.0, CAR), True),                 # nose to tail, 10 cm overlap
    (((0, 0), 0.0, CAR), ((4.9, 0), 0.0, CAR), False),                # nose to tail, 10 cm apart
    (((0, 0), 0.0, CAR), ((0, 2.0), 0.0, CAR), True),                 # side by side, rubbing
    (((0, 0), 0.0, CAR), ((0, 2.2), 0.0, CAR), False),                # side by side, 10 cm apart
    (((0, 0), 0.0, CAR), ((3.4, 0.0), np.pi / 2, CAR), True),         # T-bone into the front
    (((0, 0), 0.0, CAR), ((3.6, 0.0), np.pi / 2, CAR), False),        # T-bone just short
    (((0, 0), 0.3, CAR), ((3.5, 2.6), -0.9, CAR), False),             # corners close, diagonal gap
    (((0, 0), np.pi / 4, CAR), ((3.0, 3.0), np.pi / 4, CAR), True),   # rotated, in line, overlapping
    (((0, 0), np.pi / 4, CAR), ((2.2, -2.2), np.pi / 4, CAR), False), # rotated, side by side, 0.9 m apart
    (((0, 0), 0.0, CAR), ((3.6, 3.5), np.pi / 4, CAR), False),        # corner near corner, near miss
])
def test_overlap_cases_agree_with_exact_intersection(a, b, expected):
    assert reference_overlap(a, b) == expected  # the case is what it says
    got = boxes_overlap(np.array([a[0]], float), np.array([a[1]]), np.array([a[2]], float),
                        np.array([b[0]], float), np.array([b[1]]), np.array([b[2]], float))
    assert bool(got[0]) == expected


def test_random_boxes_agree_with_exact_intersection():
    rng = np.random.default_rng(3)
    k = 2000
    xy_a, xy_b = rng.uniform(-4, 4, (k, 2)), rng.uniform(-4, 4, (k, 2))
    yaw_a, yaw_b = rng.uniform(-np.pi, np.pi, k), rng.uniform(-np.pi, np.pi, k)
    ext_a, ext_b = rng.uniform(0.5, 3, (k, 2)), rng.uniform(0.5, 3, (k, 2))
    got = boxes_overlap(xy_a, yaw_a, ext_a, xy_b, yaw_b, ext_b)
    area = np.array([intersection_area((xy_a[i], yaw_a[i], ext_a[i]), (xy_b[i], yaw_b[i], ext_b[i]))
                     for i in range(k)])
    clear = (area == 0) | (area > 1e-3)  # leave out boxes that barely touch (float32 reference)
    assert clear.mean() > 0.99
    want = area > 1e-3
    assert 0.2 < want.mean() < 0.8  # both outcomes well represented
    assert np.array_equal(got[clear], want[clear])


def test_overlapping_pairs_finds_exactly_the_overlaps():
    xy = np.array([[0, 0], [4.7, 0], [30, 30], [30, 32.0], [60, 0]], float)
    yaw = np.zeros(5)
    ext = np.tile(CAR, (5, 1))
    i, j = overlapping_pairs(xy, yaw, ext)
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 1), (2, 3)]


def test_overlapping_pairs_with_a_margin_keeps_corner_to_corner_overlaps():
    """Two boxes whose inflated corners just meet diagonally: the bounding-circle broad phase must
    use the inflated boxes' radii or it drops the pair."""
    margin = 0.5
    ext = np.tile(CAR, (2, 1))
    corner = ext[0] + margin  # inflated half length and half width
    xy = np.array([[0.0, 0.0], 2 * corner - 0.01])  # inflated corners overlap by 1 cm on both axes
    yaw = np.zeros(2)
    assert boxes_overlap(xy[:1], yaw[:1], ext[:1], xy[1:], yaw[1:], ext[1:], margin)[0]
    i, j = overlapping_pairs(xy, yaw, ext, margin)
    assert list(zip(i.tolist(), j.tolist())) == [(0, 1)]


def test_point_box_distance():
    pts = np.array([[[0, 0], [3.4, 0], [0, 2.05], [3.4, 2.05]]], float)
    d = point_box_distance(pts, np.zeros((1, 2)), np.zeros(1), np.array([CAR]))
    assert d[0] == pytest.approx([0.0, 1.0, 1.0, np.sqrt(2.0)])


def test_box_corners_by_hand():
    """A 4 m x 2 m box at (2, 3) heading +y (CARLA's south): forward is +y, right is -x."""
    got = box_corners(np.array([[2.0, 3.0]]), np.array([np.pi / 2]), np.array([[2.0, 1.0]]))[0]
    assert got == pytest.approx(np.array([[3.0, 5.0], [1.0, 5.0], [1.0, 1.0], [3.0, 1.0]]), abs=1e-12)
    level = box_corners(np.array([[0.0, 0.0]]), np.zeros(1), np.array([[2.4, 1.05]]))[0]
    assert level.tolist() == [[2.4, -1.05], [2.4, 1.05], [-2.4, 1.05], [-2.4, -1.05]]


def test_the_renderers_complex_corners_are_the_same_boxes():
    """The complex form the views draw with: the same corners (to rounding), and mapped by a
    similarity it lands where the affine puts the real corners."""
    rng = np.random.default_rng(0)
    xy, yaw, ext = rng.uniform(-300, 300, (50, 2)), rng.uniform(-7, 7, 50), rng.uniform(0.5, 6, (50, 2))
    real = box_corners(xy, yaw, ext)
    assert np.allclose(complex_to_xy(box_corners_complex(xy, yaw, ext)), real, rtol=0, atol=1e-9)
    k, c, s = 4.0, np.cos(0.7), np.sin(0.7)
    similarity = np.array([[k * c, -k * s, 64.0], [k * s, k * c, 100.0]])
    mapped = complex_to_xy(box_corners_complex(xy, yaw, ext, similarity))
    assert np.allclose(mapped, real @ similarity[:, :2].T + similarity[:, 2], rtol=0, atol=1e-8)


def test_to_ego_frame_by_hand():
    """An ego at (10, 5) heading +y: (10, 8) is 3 m ahead; (7, 5) is 3 m to its right."""
    got = to_ego_frame(np.array([[10.0, 8.0], [7.0, 5.0], [10.0, 5.0]]), np.array([10.0, 5.0]), np.pi / 2)
    assert got == pytest.approx(np.array([[3.0, 0.0], [0.0, 3.0], [0.0, 0.0]]), abs=1e-12)


def test_from_ego_frame_by_hand_and_back():
    """3 m ahead and 1 m right of an ego at (10, 5) heading +y is (9, 8); the frames are inverses."""
    got = from_ego_frame(np.array([[3.0, 1.0]]), np.array([10.0, 5.0]), np.pi / 2)
    assert got == pytest.approx(np.array([[9.0, 8.0]]), abs=1e-12)
    rng = np.random.default_rng(1)
    points, ego, yaw = rng.uniform(-50, 50, (20, 2)), rng.uniform(-50, 50, 2), 2.1
    assert from_ego_frame(to_ego_frame(points, ego, yaw), ego, yaw) == pytest.approx(points, abs=1e-9)


def test_to_ego_frame_of_several_egos_at_once():
    """Egos (C, 1) against points (1, N): row c holds every point in ego c's frame."""
    points = np.array([[1.0, 0.0], [0.0, 1.0]])
    egos, yaws = np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([0.0, np.pi])
    got = to_ego_frame(points[None], egos[:, None], yaws[:, None])
    assert got.shape == (2, 2, 2)
    assert got[0] == pytest.approx(points)                                  # heading +x: the world frame
    assert got[1] == pytest.approx(np.array([[0.0, 1.0], [1.0, 0.0]]), abs=1e-12)  # turned around at (1, 1)
    assert np.array_equal(got[1], to_ego_frame(points, egos[1], yaws[1]))


def test_bounding_radius_by_hand():
    assert bounding_radius(np.array([[3.0, 4.0], [0.5, 1.2]])) == pytest.approx([5.0, 1.3])
    assert bounding_radius(np.array([2.0, 3.0]), margin=1.0) == pytest.approx(5.0)


def test_corner_segment_distance():
    """A box corner between two path points is as near as the segment, not as the points."""
    corners = box_corners(np.array([[2.0, 3.0]]), np.array([np.pi / 4]), np.array([[1.0, 0.5]]))
    start, end = np.array([[[0.0, 0.0], [4.0, 0.0]]]), np.array([[[4.0, 0.0], [8.0, 0.0]]])
    d = corner_segment_distance(corners, start, end)
    assert d[0, 0] == pytest.approx(corners[0, :, 1].min())  # straight below the lowest corner
    assert d[0, 1] == pytest.approx(np.min(np.hypot(corners[0, :, 0] - 4.0, corners[0, :, 1])))  # the segment's start
    points = point_box_distance(np.array([[[0.0, 0.0], [4.0, 0.0]]]), np.array([[2.0, 3.0]]),
                                np.array([np.pi / 4]), np.array([[1.0, 0.5]]))
    assert d[0, 0] < points.min()


def test_compiled_box_tests_match_the_vectorized_ones_bit_for_bit():
    """The compiled tick's scalar geometry gives exactly the numpy functions' results (same seed, same episode)."""
    from cardreamer.world.embedded import compiled_geometry as cg

    rng = np.random.default_rng(3)
    n = 400
    xy_a, xy_b = rng.uniform(-6, 6, (n, 2)), rng.uniform(-6, 6, (n, 2))
    yaw_a, yaw_b = rng.uniform(-np.pi, np.pi, n), rng.uniform(-np.pi, np.pi, n)
    ext_a, ext_b = rng.uniform(0.5, 3.0, (n, 2)), rng.uniform(0.5, 3.0, (n, 2))
    points = rng.uniform(-8, 8, (n, 3, 2))
    overlap = boxes_overlap(xy_a, yaw_a, ext_a, xy_b, yaw_b, ext_b, 0.3)
    distance = point_box_distance(points, xy_b, yaw_b, ext_b)
    box = box_corners(xy_b, yaw_b, ext_b)
    between = corner_segment_distance(box, points[:, :-1], points[:, 1:])
    assert 0 < overlap.sum() < n
    out = np.empty((4, 2))
    for k in range(n):
        c, s = np.cos(yaw_b[k]), np.sin(yaw_b[k])
        assert cg.boxes_overlap(*xy_a[k], yaw_a[k], *(ext_a[k] + 0.3), *xy_b[k], yaw_b[k], *(ext_b[k] + 0.3)) == overlap[k]
        assert [cg.point_box_distance(*p, *xy_b[k], c, s, *ext_b[k]) for p in points[k]] == distance[k].tolist()
        cg.box_corners(out, *xy_b[k], c, s, *ext_b[k])
        assert out.tolist() == box[k].tolist()
        assert [cg.corner_segment_distance(out, *points[k, i], *points[k, i + 1]) for i in range(2)] == between[k].tolist()


def test_lanes_under_boxes_match_corners_and_lanes_at(project_map):
    """The compiled lane lookup of the egos' boxes gives ``box_corners`` and ``LaneRaster.lanes_at`` exactly."""
    from cardreamer.world.embedded.lane_raster import LaneRaster

    road_map = project_map("town_grid")
    raster = LaneRaster(road_map)
    rng = np.random.default_rng(5)
    lo, hi = road_map.bounds
    xy = rng.uniform(np.asarray(lo) - 20.0, np.asarray(hi) + 20.0, (2000, 2))  # some off the grid
    yaw, ext = rng.uniform(-4, 4, 2000), rng.uniform(0.5, 3.0, (2000, 2))
    corners, lanes, centre = raster.lanes_under_boxes(xy, yaw, ext)
    expected = box_corners(xy, yaw, ext)
    assert np.array_equal(corners, expected)
    assert np.array_equal(lanes, raster.lanes_at(expected))
    assert np.array_equal(centre, raster.lanes_at(xy))
    assert 0 < np.mean(centre >= 0) < 1
