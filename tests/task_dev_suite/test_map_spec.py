"""Map spec loading: clear errors for bad specs, id rules, refused connectors."""

from pathlib import Path

import pytest
import yaml

from task_dev_suite.builtin_maps import BUILTIN_MAPS, spec_path
from task_dev_suite.map_spec import MapSpecError, expand, load_spec
from task_dev_suite.opendrive_writer import build_map, spec_to_xodr


def write(tmp_path: Path, data, name="spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def road(road_id=1, **extra):
    return {
        "id": road_id,
        "start": {"x": 0, "y": 0, "heading": 0},
        "segments": [{"type": "line", "length": 50}],
        **extra,
    }


@pytest.mark.parametrize("name", BUILTIN_MAPS)
def test_builtin_specs_load(name):
    assert load_spec(spec_path(name)).name == name


def test_unknown_key_names_key_file_and_valid_keys(tmp_path):
    path = write(tmp_path, {"name": "m", "roads": [road(lanez={"right": 1})]})
    with pytest.raises(MapSpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert str(path) in message
    assert "roads.0.lanez: unknown key" in message
    assert "did you mean 'lanes'" in message


def test_unknown_key_inside_segment_union(tmp_path):
    spec = road()
    spec["segments"] = [{"type": "line", "length": 10, "curvature": 0.1}]
    with pytest.raises(
        MapSpecError,
        match=r"roads\.0\.segments\.0\.curvature: unknown key \(.*valid keys here: length, type\)",
    ):
        load_spec(write(tmp_path, {"name": "m", "roads": [spec]}))


def test_wrong_type_names_key_and_value(tmp_path):
    path = write(tmp_path, {"name": "m", "roads": [road(lanes={"right": "two"})]})
    with pytest.raises(MapSpecError) as err:
        load_spec(path)
    assert str(path) in str(err.value)
    assert "roads.0.lanes.right" in str(err.value) and "'two'" in str(err.value)


def test_not_a_mapping_and_bad_yaml(tmp_path):
    with pytest.raises(MapSpecError, match="must be a mapping"):
        load_spec(write(tmp_path, "- just\n- a list\n"))
    with pytest.raises(MapSpecError, match="not valid YAML"):
        load_spec(write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(MapSpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")


def test_dangling_references(tmp_path):
    spec = {"name": "m", "roads": [road(1, successor={"road": 7, "contact": "start"})]}
    with pytest.raises(MapSpecError, match="missing road 7"):
        load_spec(write(tmp_path, spec))
    spec = {
        "name": "m",
        "roads": [road(1), road(2), road(3)],
        "junctions": [
            {
                "id": 10,
                "arms": [
                    {"road": 1, "contact": "end"},
                    {"road": 2, "contact": "start"},
                    {"road": 9, "contact": "start"},
                ],
            }
        ],
    }
    with pytest.raises(MapSpecError, match="junction 10 names road 9"):
        load_spec(write(tmp_path, spec))


def test_junction_id_must_differ_from_road_ids(tmp_path):
    spec = {
        "name": "m",
        "roads": [road(1), road(2), road(3)],
        "junctions": [
            {
                "id": 2,
                "arms": [
                    {"road": 1, "contact": "end"},
                    {"road": 2, "contact": "start"},
                    {"road": 3, "contact": "start"},
                ],
            }
        ],
    }
    with pytest.raises(MapSpecError, match=r"junction ids \[2\] equal road ids"):
        load_spec(write(tmp_path, spec))


def test_generated_ids_keep_junctions_apart_from_roads():
    net = expand(load_spec(spec_path("town_grid")))
    road_ids = {r.id for r in net.roads}
    junction_ids = {j.id for j in net.junctions}
    assert len(junction_ids) == 9 + 12 and not road_ids & junction_ids
    assert min(junction_ids) > max(road_ids)


def test_too_sharp_connector_is_refused(tmp_path):
    arms = [{"heading": h, "length": 30, "lanes_in": 2, "lanes_out": 2} for h in (0, 90, 180, 270)]
    path = write(
        tmp_path,
        {"name": "tight", "intersections": [{"center": {"x": 0, "y": 0}, "radius": 7, "arms": arms}]},
    )
    with pytest.raises(MapSpecError) as err:
        build_map(path, tmp_path / "tight.xodr")
    assert str(path) in str(err.value) and "bends too sharply" in str(err.value) and ">= 1" in str(err.value)
    assert not (tmp_path / "tight.xodr").exists()


def test_taper_needs_successor(tmp_path):
    spec = {"name": "m", "roads": [road(1, lanes={"right": 2, "left": 0}, taper={"length": 20})]}
    with pytest.raises(MapSpecError, match="taper needs a successor"):
        load_spec(write(tmp_path, spec))


def test_junction_arm_counts(tmp_path):
    arms = [{"heading": 0, "length": 30}, {"heading": 180, "length": 30}]
    with pytest.raises(MapSpecError, match="at least 3 items"):
        load_spec(
            write(tmp_path, {"name": "m", "intersections": [{"center": {"x": 0, "y": 0}, "arms": arms}]})
        )
    six = [{"heading": 60 * k, "length": 30} for k in range(6)]
    with pytest.raises(MapSpecError, match="at most 5 items"):
        load_spec(
            write(tmp_path, {"name": "m", "intersections": [{"center": {"x": 0, "y": 0}, "arms": six}]})
        )


def test_spec_to_xodr_is_deterministic():
    spec = load_spec(spec_path("intersection"))
    assert spec_to_xodr(spec) == spec_to_xodr(load_spec(spec_path("intersection")))


def test_road_links_must_agree(tmp_path):
    spec = {
        "name": "m",
        "roads": [
            road(1, successor={"road": 2, "contact": "start"}),
            road(2, predecessor={"road": 3, "contact": "end"}),
            road(3, successor={"road": 2, "contact": "start"}),
        ],
    }
    with pytest.raises(
        MapSpecError, match="road 1 links its end to the start of road 2, but that end links to road 3's end"
    ):
        load_spec(write(tmp_path, spec))
    spec["roads"][1] = road(2)  # now roads 1 and 3 both claim road 2's start
    with pytest.raises(
        MapSpecError, match="the start of road 2 is used by both road 1 end link and road 3 end link"
    ):
        load_spec(write(tmp_path, spec))


def test_one_sided_link_is_completed_by_the_writer(tmp_path):
    second = road(2)
    second["start"] = {"x": 50, "y": 0, "heading": 0}
    spec = {"name": "m", "roads": [road(1, successor={"road": 2, "contact": "start"}), second]}
    text = spec_to_xodr(load_spec(write(tmp_path, spec)))
    assert '<predecessor elementType="road" elementId="1" contactPoint="end" />' in text


def test_movement_lanes_must_drive_through(tmp_path):
    arms = [{"road": 1, "contact": "end"}, {"road": 2, "contact": "start"}, {"road": 3, "contact": "start"}]
    roads = [road(1), road(2), road(3)]
    roads[1]["start"] = {"x": 70, "y": 0, "heading": 0}
    roads[2]["start"] = {"x": 60, "y": -10, "heading": -90}
    spec = {
        "name": "m",
        "roads": roads,
        "junctions": [
            {
                "id": 10,
                "arms": arms,
                "movements": [{"from": {"road": 1, "lane": 1}, "to": {"road": 2, "lane": -1}}],
            }
        ],
    }
    with pytest.raises(
        MapSpecError, match=r"movement from road 1 lane 1 .* driving into the junction \(\[-1\]\)"
    ):
        spec_to_xodr(load_spec(write(tmp_path, spec)))
