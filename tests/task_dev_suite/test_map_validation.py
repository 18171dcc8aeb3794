"""The validation gate: built-in maps pass it, broken maps fail the right check."""

import re
from pathlib import Path

import pytest

from cardreamer.roadmap.preflight import check_with_carla
from task_dev_suite.builtin_maps import BUILTIN_MAPS, MAPS_DIR
from task_dev_suite.map_validation import MapFileError, read_xodr, validate_map

CHECKS = ["xml", "loader", "parse", "waypoints", "topology", "grid", "next_walk", "random_walks", "landmarks"]


@pytest.mark.parametrize("name", BUILTIN_MAPS)
def test_builtin_map_passes_the_gate(name):
    # The full 1 m grid on the largest map (town_grid) takes ~2 s; the others well under 1 s.
    report = validate_map(MAPS_DIR / f"{name}.xodr", grid_step=1.0 if name != "town_grid" else 2.0)
    assert report.ok, str(report)
    assert [c.name for c in report.checks] == CHECKS


def broken(tmp_path, name, source, edit) -> Path:
    text = (MAPS_DIR / f"{source}.xodr").read_text()
    changed = edit(text)
    assert changed != text, "the edit must change the file"
    path = tmp_path / f"{name}.xodr"
    path.write_text(changed)
    return path


def failed(report) -> dict[str, str]:
    return {c.name: c.summary + " " + " ".join(c.details) for c in report.failures}


def test_spiral_with_equal_curvatures_gives_nan(tmp_path):
    path = broken(
        tmp_path,
        "spiral",
        "roundabout",
        lambda t: re.sub(
            r'<arc curvature="([^"]+)" />', r'<spiral curvStart="\1" curvEnd="\1" />', t, count=1
        ),
    )
    fails = failed(validate_map(path, grid_step=2.0))
    assert "waypoints" in fails and "with NaN" in fails["waypoints"]


def test_connector_without_lane_link_is_unreachable(tmp_path):
    path = broken(tmp_path, "nolink", "intersection", lambda t: t.replace('<predecessor id="2" />', "", 1))
    fails = failed(validate_map(path, grid_step=2.0))
    assert set(fails) == {"topology"} and "unreachable start" in fails["topology"]


def test_tapered_lane_without_successor_is_a_dead_end(tmp_path):
    path = broken(
        tmp_path,
        "taper",
        "highway",
        lambda t: re.sub(
            r'<successor id="-4" />(\s*</link>\s*<width sOffset="0" a="3.5" b="0" c="-)', r"\1", t
        ),
    )
    fails = failed(validate_map(path, grid_step=2.0))
    assert "dead end: road 2 section 1 lane -5" in fails["topology"]


def test_junction_id_equal_to_road_id_breaks_connectivity(tmp_path):
    path = broken(tmp_path, "clash", "intersection", lambda t: t.replace('"1000"', '"3"'))
    assert "topology" in failed(validate_map(path, grid_step=2.0))


@pytest.mark.parametrize(
    "edit, problem",
    [
        (
            lambda t: t.replace('id="2" name="StopSign_2"', 'id="1" name="StopSign_2"'),
            "signal id 1 is declared 2 times (roads 1, 2)",
        ),
        (lambda t: re.sub(r'(<signal s=")[^"]+', r"\g<1>500", t, count=1), "at s=500 lies off road"),
        (lambda t: t.replace(' type="206"', "", 1), "signal 1 has no type"),
    ],
)
def test_signal_defects_fail_the_landmark_check(tmp_path, edit, problem):
    report = validate_map(broken(tmp_path, "signal", "stop_sign", edit), grid_step=2.0)
    assert [c.name for c in report.failures] == ["landmarks"] and problem in failed(report)["landmarks"]


def test_controller_naming_missing_signal_is_caught_before_carla(tmp_path):
    # carla.Map segfaults on such a file (measured); the XML check stops it first.
    path = broken(
        tmp_path,
        "ctrl",
        "intersection",
        lambda t: t.replace('<control signalId="1"', '<control signalId="99"'),
    )
    report = validate_map(path)
    assert [c.name for c in report.checks] == ["xml"] and not report.ok
    assert str(path) in report.checks[0].summary and "'99'" in report.checks[0].summary


def test_malformed_xodr_names_the_file(tmp_path):
    path = broken(tmp_path, "truncated", "intersection", lambda t: t[: len(t) // 2])
    report = validate_map(path)
    assert not report.ok and str(path) in report.checks[0].summary and "not well-formed XML" in str(report)
    with pytest.raises(MapFileError, match=re.escape(str(path))):
        read_xodr(path)
    other = tmp_path / "other.xodr"
    other.write_text("<OpenSCENARIO/>")
    with pytest.raises(MapFileError, match="expected <OpenDRIVE>"):
        read_xodr(other)
    with pytest.raises(MapFileError, match="cannot read"):
        read_xodr(tmp_path / "absent.xodr")


def test_town04_passes_parse_and_nan_checks(carla_maps_dir):
    report = validate_map(carla_maps_dir / "Town04.xodr", grid_step=5.0, walks=5)  # the full 1 m grid passes too (~20 s)
    for name in ("xml", "parse", "waypoints", "grid", "next_walk"):
        assert report.check(name).passed, str(report)
    assert "16919 waypoints, 0 with NaN" in report.check("waypoints").summary


def test_worker_crash_names_the_running_check(tmp_path, monkeypatch):
    path = MAPS_DIR / "two_lane.xodr"
    monkeypatch.setenv("CARDREAMER_CACHE_DIR", str(tmp_path / "cache"))
    check_with_carla(path, path.read_text())  # the loader's verdict, cached before python is replaced
    # Stand-in interpreter: reports finished checks, then dies by SIGSEGV as carla.Map can.
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/sh\n"
        'echo \'{"result": {"name": "parse", "passed": true, "summary": "read", "details": [], "seconds": 0}}\'\n'
        'echo \'{"running": "grid"}\'\n'
        "kill -SEGV $$\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr("task_dev_suite.map_validation.sys.executable", str(fake))
    report = validate_map(path)
    assert [(c.name, c.passed) for c in report.checks] == [
        ("xml", True), ("loader", True), ("parse", True), ("grid", False)
    ]
    assert report.checks[-1].summary == f"{path}: carla.Map crashed with SIGSEGV during this check"
