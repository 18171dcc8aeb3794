"""The OpenDRIVE writer, checked by reading its output back through carla.Map."""

import math
import xml.etree.ElementTree as ET

import carla
import numpy as np
import pytest

from task_dev_suite.builtin_maps import BUILTIN_MAPS, MAPS_DIR, regenerate_builtin_maps
from task_dev_suite.map_spec import parse_spec
from task_dev_suite.opendrive_writer import build_map, spec_to_xodr


def carla_map(spec: dict) -> tuple[carla.Map, str]:
    text = spec_to_xodr(parse_spec(spec))
    return carla.Map(spec["name"], text), text


def lane_point(cmap, x, y):
    """A waypoint at OpenDRIVE point (x, y): CARLA's y is OpenDRIVE's y negated."""
    return cmap.get_waypoint(carla.Location(x, -y, 0.0), project_to_road=False)


def test_line_arc_and_cubic_round_trip():
    k = 1 / 40
    spec = {
        "name": "curves",
        "roads": [
            {
                "id": 1,
                "start": {"x": 10, "y": 5, "heading": 0},
                "segments": [
                    {"type": "line", "length": 30},
                    {"type": "arc", "length": math.pi / 2 / k, "curvature": k},
                    {"type": "cubic", "end": {"x": 0, "y": 140, "heading": 180}},
                ],
                "lanes": {"right": 2, "left": 1, "width": 3.25},
            }
        ],
    }
    cmap, text = carla_map(spec)
    assert "<arc" in text and "<paramPoly3" in text and 'pRange="normalized"' in text
    # End of the quarter circle: (40 + 40, 5 + 40) heading 90 degrees.
    wp = lane_point(cmap, 80 + 3.25 / 2, 45)  # right lane -1, right of the northbound reference line
    assert wp is not None and wp.lane_id == -1 and wp.lane_width == pytest.approx(3.25)
    assert wp.transform.rotation.yaw == pytest.approx(-90, abs=1.0)  # north in OpenDRIVE = -y in CARLA
    # The cubic ends exactly at (0, 140) heading west; lane -1 there lies north of the line.
    end = lane_point(cmap, 1.0, 140 + 3.25 / 2)
    assert end is not None and end.lane_id == -1
    assert abs((end.transform.rotation.yaw - 180 + 180) % 360 - 180) < 2.0
    lanes = {w.lane_id for w in cmap.generate_waypoints(2.0)}
    assert lanes == {-2, -1, 1}


def test_tiny_curvature_is_written_as_line():
    spec = {
        "name": "flat",
        "roads": [
            {
                "id": 1,
                "start": {"x": 0, "y": 0},
                "segments": [{"type": "arc", "length": 100, "curvature": 1e-7}],
            }
        ],
    }
    cmap, text = carla_map(spec)
    assert "<arc" not in text and "<line" in text and "<spiral" not in text
    assert lane_point(cmap, 100 - 0.5, -1.75).lane_id == -1


def test_builtin_intersection_movements_and_lights():
    cmap = carla.Map("intersection", (MAPS_DIR / "intersection.xodr").read_text())
    # East arm: incoming lanes 1 (inner) and 2 (outer) drive west, at CARLA y = -1.75 and -5.25.
    inner, outer = (cmap.get_waypoint(carla.Location(60, y, 0)) for y in (-1.75, -5.25))
    assert (inner.lane_id, outer.lane_id) == (1, 2)

    # After the junction: the inner lane turns left (south in CARLA, +y), the outer goes straight or right.
    def exits(wp):
        ends = []
        for branch in wp.next(50.0):
            after = branch.next(20.0)[0] if branch.is_junction else branch
            ends.append(after.transform.rotation.yaw % 360)
        return sorted(round(y / 90) * 90 % 360 for y in ends)

    assert exits(inner) == [90]  # left turn from westbound: CARLA yaw 90 (+y, OpenDRIVE south)
    assert exits(outer) == [180, 270]  # straight (west) and right (north, CARLA -y)
    lights = inner.get_landmarks_of_type(60.0, "1000001")
    assert [lm.id for lm in lights] == [lights[0].id] and lights[0].get_lane_validities() == [(1, 2)]
    root = ET.fromstring((MAPS_DIR / "intersection.xodr").read_text())
    controllers = root.findall("controller")
    assert len(controllers) == 4 and len(root.find("junction").findall("controller")) == 4
    assert root.find("header/geoReference").text.startswith("+proj=tmerc")


def test_stop_signs_on_every_approach():
    cmap = carla.Map("stop_sign", (MAPS_DIR / "stop_sign.xodr").read_text())
    stops = cmap.get_all_landmarks_of_type("206")
    assert len(stops) == 4 and {lm.road_id for lm in stops} == {1, 2, 3, 4}


def test_highway_ramp_merges_into_rightmost_lane():
    cmap = carla.Map("highway", (MAPS_DIR / "highway.xodr").read_text())
    at_start = sorted(w.lane_id for w in cmap.generate_waypoints(2.0) if w.road_id == 1 and w.s < 1)
    assert at_start == [-4, -3, -2, -1, 1, 2, 3, 4]  # east-bound -1..-4 at CARLA y > 0, west-bound 1..4
    wp = cmap.get_waypoint(carla.Location(300, 4.5 * 3.5, 0))  # the acceleration lane
    assert wp.lane_id == -5
    trail = [wp]
    while trail[-1].road_id != 3:
        trail.append(trail[-1].next(2.0)[0])
    assert trail[-1].lane_id == -4 and abs(trail[-1].transform.location.y - 3.5 * 3.5) < 0.1


@pytest.mark.parametrize("arms", [3, 4, 5])
def test_random_star_junctions_parse_with_connected_lanes(arms):
    rng = np.random.default_rng(arms)
    headings = np.sort(rng.uniform(0, 360, arms))
    while np.min(np.diff(np.append(headings, headings[0] + 360))) < 50:
        headings = np.sort(rng.uniform(0, 360, arms))
    spec = {
        "name": f"star{arms}",
        "intersections": [
            {
                "center": {"x": 3, "y": -7},
                "radius": 16,
                "control": "traffic_light",
                "arms": [
                    {
                        "heading": float(h),
                        "length": 40,
                        "lanes_in": int(rng.integers(1, 3)),
                        "lanes_out": int(rng.integers(1, 3)),
                    }
                    for h in headings
                ],
            }
        ],
    }
    cmap, _ = carla_map(spec)
    assert len(cmap.get_all_landmarks()) == arms
    positions = np.array(
        [[w.transform.location.x, w.transform.location.y] for w in cmap.generate_waypoints(1.0)]
    )
    assert np.isfinite(positions).all()
    incoming_roads = {a.road_id for a, b in cmap.get_topology() if not a.is_junction}
    assert len(incoming_roads) == arms


def test_regeneration_is_byte_identical(tmp_path):
    written = regenerate_builtin_maps(tmp_path)
    assert [p.stem for p in written] == list(BUILTIN_MAPS)
    for path in written:
        assert path.read_bytes() == (MAPS_DIR / path.name).read_bytes(), (
            f"{path.name} differs from the committed file"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{n}.xodr" for n in BUILTIN_MAPS
    )  # no temp files


def test_build_map_replaces_atomically(tmp_path):
    out = tmp_path / "m.xodr"
    out.write_text("old")
    build_map(MAPS_DIR / "two_lane.yaml", out)
    assert out.read_text().startswith("<?xml") and list(tmp_path.iterdir()) == [out]
