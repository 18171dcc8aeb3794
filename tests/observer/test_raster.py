
import numpy as np
import pytest
from scenes import load_town

from cardreamer.roadmap.raster import BROKEN, JUNCTION, ROAD, SOLID, RoadRaster


@pytest.fixture(scope="module")
def town04():
    return load_town("Town04")


def test_town04_raster_is_built_once_per_resolution(town04):
    """Build time is a benchmark figure (bench/bench_render.py), not asserted here."""
    raster = RoadRaster(town04, 4.0)
    assert raster.labels.shape == (raster.height, raster.width)
    assert RoadRaster.for_map(town04, 4.0) is RoadRaster.for_map(town04, 4.0)
    assert RoadRaster.for_map(town04, 2.0) is not RoadRaster.for_map(town04, 4.0)
    assert RoadRaster.for_map(town04, 2.0).width == pytest.approx(raster.width / 2, abs=2)


def test_world_pixel_transforms_are_inverse(town04):
    raster = RoadRaster.for_map(town04, 4.0)
    xy = np.array([[5.8, 100.0], [-300.0, 20.0]])
    px = raster.to_pixel(xy)
    assert np.allclose(px @ raster.pixel_to_world[:, :2].T + raster.pixel_to_world[:, 2], xy)
    assert np.allclose(xy @ raster.world_to_pixel[:, :2].T + raster.world_to_pixel[:, 2], px)
    # x right, y down: a point 10 m further along +y is 40 px lower in the raster
    assert np.allclose(raster.to_pixel([5.8, 110.0]) - raster.to_pixel([5.8, 100.0]), [0.0, 40.0])


def test_lanes_are_road_and_the_outside_is_not(town04):
    raster = RoadRaster.for_map(town04, 4.0)
    centres = np.concatenate([lane.points[::5] for lane in town04.lanes])
    assert raster.is_road(centres).mean() > 0.995
    lo, _ = town04.bounds
    assert not raster.is_road(np.array([lo - 15.0])).any()
    assert not raster.is_road(np.array([[1e5, 1e5]])).any()


def _edge_samples(lane, s_from, s_to, side):
    s = np.arange(s_from, s_to, 0.25)
    half = lane.width_at(s) / 2
    return lane.position(s, half if side == "right" else -half)


def _labels_at(raster, xy):
    px = np.rint(raster.to_pixel(xy)).astype(int)
    return raster.labels[px[:, 1], px[:, 0]]


def test_markings_follow_lane_types(town04):
    raster = RoadRaster.for_map(town04, 4.0)
    lane_index, s, _ = town04.locate(np.array([5.8, 100.0]))
    lane = town04.lanes[lane_index]
    assert set(lane.left_marking[int(s) - 10:int(s) + 10]) == {"Solid"}
    assert set(lane.right_marking[int(s) - 10:int(s) + 10]) == {"Broken"}
    left = _labels_at(raster, _edge_samples(lane, s - 10, s + 10, "left"))
    assert np.mean(left & SOLID > 0) > 0.9 and not np.any(left & BROKEN)
    right = _labels_at(raster, _edge_samples(lane, s - 10, s + 10, "right"))
    painted = np.mean(right & BROKEN > 0)
    assert 0.3 < painted < 0.7, painted  # 3 m dashes, 3 m gaps
    assert not np.any(right & SOLID)
    centre = _labels_at(raster, lane.position(np.arange(s - 10, s + 10, 0.25)))
    assert np.all(centre & ROAD) and not np.any(centre & (SOLID | BROKEN))


def test_junction_layer_covers_junction_lanes_only(town04):
    raster = RoadRaster.for_map(town04, 4.0)
    junction_lanes = [lane for lane in town04.lanes if lane.is_junction and lane.length > 10]
    inside = np.concatenate([lane.position(np.linspace(2, lane.length - 2, 5)) for lane in junction_lanes])
    assert np.mean(_labels_at(raster, inside) & JUNCTION > 0) > 0.99
    plain = [lane for lane in town04.lanes if not lane.is_junction and lane.length > 40]
    middles = np.array([lane.position(lane.length / 2) for lane in plain])
    assert np.mean(_labels_at(raster, middles) & JUNCTION > 0) < 0.05
    assert raster.layer("junction").sum() < raster.layer("road").sum()


def test_bad_arguments_are_named(town04):
    raster = RoadRaster.for_map(town04, 4.0)
    with pytest.raises(KeyError, match="valid: road, solid, broken, junction"):
        raster.layer("curb")
    with pytest.raises(ValueError, match="pixels_per_meter"):
        RoadRaster(town04, 0.0)


def test_colored_raster_is_the_palette_applied_once(town04):
    raster = RoadRaster.for_map(town04, 4.0)
    palette = np.zeros((16, 3), dtype=np.uint8)
    palette[ROAD] = (1, 2, 3)
    palette[ROAD | SOLID] = (9, 9, 9)
    colored = raster.colored(palette)
    assert colored is raster.colored(palette.copy())
    window = (slice(2000, 2100), slice(2100, 2200))
    assert np.array_equal(colored[window], palette[raster.labels[window]])
