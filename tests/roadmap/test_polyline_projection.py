"""The compiled polyline projection equals the vectorized numpy form it replaced, bit for bit."""
import numpy as np
import pytest

from cardreamer.roadmap.polyline import polyline_arclength, project_onto_polyline


def numpy_projection(points, s, xy):
    """The reference: every query against every segment at once, the nearest segment by argmin."""
    xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
    a = points[:-1]
    d = points[1:] - a
    seg_len2 = np.maximum((d * d).sum(axis=1), 1e-12)
    rel = xy[:, None, :] - a
    t = np.clip((rel * d).sum(axis=2) / seg_len2, 0.0, 1.0)
    off = rel - t[..., None] * d
    best = np.argmin((off * off).sum(axis=2), axis=1)
    rows = np.arange(len(xy))
    seg_len = np.sqrt(seg_len2[best])
    dvec = d[best] / seg_len[:, None]
    offset = off[rows, best]
    lateral = dvec[:, 0] * offset[:, 1] - dvec[:, 1] * offset[:, 0]
    return s[best] + t[rows, best] * seg_len, lateral


@pytest.mark.parametrize("seed", range(5))
def test_compiled_projection_equals_numpy_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(200, 2)) * rng.uniform(0.01, 5.0)
    points = np.cumsum(steps, axis=0)
    points[50] = points[49]  # a zero-length segment
    s = polyline_arclength(points)
    xy = points[rng.integers(len(points), size=300)] + rng.normal(size=(300, 2)) * 3.0
    xy[:5] = points[:5]  # queries on the vertices: equally near segments
    for window in (slice(None), slice(20, 22), slice(100, 160)):
        got = project_onto_polyline(points[window], s[window], xy)
        want = numpy_projection(points[window], s[window], xy)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    one = project_onto_polyline(points, s, xy[7])
    assert one[0].shape == (1,) and one[0][0] == numpy_projection(points, s, xy[7])[0][0]


def test_a_single_point_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^projecting onto a polyline needs at least 2 points, got 1$"):
        project_onto_polyline(np.zeros((1, 2)), np.zeros(1), np.zeros(2))
