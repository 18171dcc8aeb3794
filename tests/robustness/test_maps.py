"""OpenDRIVE files that CARLA's reader mishandles: each class ends as one line naming the file and
the fault, exit status 2 and nothing written — never a traceback, a segfault or a hang.

Every map here is a small file the test writes; the classes were found on public OpenDRIVE files.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cardreamer.roadmap import MapError, RoadMap
from cardreamer.roadmap.preflight import CACHE_DIR_ENV
from cardreamer.roadmap.raster import RoadRaster, with_world_axes
from task_dev_suite.map_validation import validate_map

REPO = Path(__file__).resolve().parents[2]


def lane(lane_id: int, mark: bool = True, link: str = "") -> str:
    road_mark = '<roadMark sOffset="0" type="solid" weight="standard" color="white" width="0.15"/>' if mark else ""
    return (f'<lane id="{lane_id}" type="driving" level="false"><link>{link}</link>'
            f'<width sOffset="0" a="3.5" b="0" c="0" d="0"/>{road_mark}</lane>')


def road(road_id: int, length: float, *, hdg: float = 0.0, left: bool = True, right: bool = True,
         marks: bool = True, geometry: bool = True, link: str = "") -> str:
    """A straight road from (0, 0) with one lane each way (or only one side)."""
    plan = (f'<geometry s="0" x="0" y="0" hdg="{hdg}" length="{length}"><line/></geometry>' if geometry else "")
    centre_mark = '<roadMark sOffset="0" type="broken" color="white" width="0.15"/>' if marks else ""
    sides = (f"<left>{lane(1, marks)}</left>" if left else "") + (
        f'<center><lane id="0" type="none" level="false">{centre_mark}</lane></center>'
    ) + (f"<right>{lane(-1, marks)}</right>" if right else "")
    return (f'<road name="r{road_id}" length="{length}" id="{road_id}" junction="-1"><link>{link}</link>'
            f"<planView>{plan}</planView><lanes><laneSection s=\"0\">{sides}</laneSection></lanes></road>")


def opendrive(*parts: str) -> str:
    return f'<?xml version="1.0"?><OpenDRIVE><header revMajor="1" revMinor="4" name="t"/>{"".join(parts)}</OpenDRIVE>'


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch) -> Path:
    """Each test gets its own verdict cache, so every file really goes through the child process."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv(CACHE_DIR_ENV, str(path))
    return path


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "cardreamer.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def assert_one_line_refusal(done: subprocess.CompletedProcess, path: Path, *fragments: str) -> None:
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 2, output
    assert "Traceback" not in output and len(output.splitlines()) == 1, output
    assert str(path) in output and all(f in output for f in fragments), output


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.xodr"
    path.write_text(text)
    return path


BROKEN = {
    # class 2: no geometry in the plan view: carla.Map segfaults while parsing it
    "no_geometry": (opendrive(road(1, 100.0, geometry=False)), ("carla crashed (signal 11, SIGSEGV)", "parsing")),
    # class 3: raw "RuntimeError: s <= road->GetLength()" from carla
    "zero_length": (opendrive(road(1, 0.0)), ("road 1 has length '0.0'", "finite length > 0")),
    # class 3: raw "IndexError: _Map_base::at" from carla
    "junction_missing_road": (
        opendrive(road(1, 50.0), '<junction id="7"><connection id="0" incomingRoad="1" connectingRoad="42" '
                  'contactPoint="start"><laneLink from="-1" to="-1"/></connection></junction>'),
        ("junction 7 connection 0", "connectingRoad 42"),
    ),
    # carla segfaults on a lane link to a lane the next road lacks; the XML check names it
    "lane_link_missing_lane": (
        opendrive(road(1, 50.0, link='<successor elementType="road" elementId="2" contactPoint="start"/>')
                  .replace('<lane id="-1" type="driving" level="false"><link>',
                           '<lane id="-1" type="driving" level="false"><link><successor id="-5"/>'),
                  road(2, 50.0, link='<predecessor elementType="road" elementId="1" contactPoint="end"/>')),
        ("road 1 lane -1 has successor lane -5", "road 2"),
    ),
    # class 4: carla reads it, but its offline topology is empty: the loader refuses it
    "right_lanes_only": (opendrive(road(1, 100.0, left=False)), ("no driving lanes connected into a topology",)),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_map_validate_and_show_refuse_in_one_line(tmp_path, name):
    text, fragments = BROKEN[name]
    path = write(tmp_path, name, text)
    before = sorted(tmp_path.iterdir())
    assert_one_line_refusal(cli("map", "validate", str(path), "--grid-step", "2", cwd=tmp_path), path, *fragments)
    out = tmp_path / "map.png"
    assert_one_line_refusal(cli("map", "show", str(path), "-o", str(out), cwd=tmp_path), path, *fragments)
    assert sorted(tmp_path.iterdir()) == before  # no PNG, no half-written file


@pytest.mark.parametrize("name", ["no_geometry", "zero_length"])
def test_run_and_task_preview_refuse_the_map(tmp_path, name):
    text, fragments = BROKEN[name]
    path = write(tmp_path, name, text)
    task = tmp_path / "task.yaml"
    task.write_text((REPO / "cardreamer" / "tasks" / "four_lane.yaml").read_text().replace("map: highway", f"map: {path}"))
    assert_one_line_refusal(cli("run", "--task", str(task), "--episodes", "1", cwd=tmp_path), path, *fragments)
    done = cli("task", "preview", str(task), "-o", str(tmp_path / "preview.png"), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    assert str(path) in done.stdout and all(f in done.stdout for f in fragments)


def test_loader_and_gate_agree_on_an_empty_topology(tmp_path):
    path = write(tmp_path, "right_only", BROKEN["right_lanes_only"][0])
    with pytest.raises(MapError, match="no driving lanes connected into a topology"):
        RoadMap.load(str(path))
    report = validate_map(path, grid_step=2.0)
    assert not report.ok and not report.check("loader").passed


def test_crash_verdict_is_cached_by_content(tmp_path, cache):
    path = write(tmp_path, "crash", BROKEN["no_geometry"][0])
    for _ in range(2):
        with pytest.raises(MapError, match=r"crash\.xodr: carla crashed \(signal 11, SIGSEGV\) while parsing"):
            RoadMap.load(str(path))
    assert len(list((cache / "map_checks").glob("*.json"))) == 1
    moved = write(tmp_path, "same_content_elsewhere", path.read_text())
    with pytest.raises(MapError, match=r"same_content_elsewhere\.xodr: carla crashed"):
        RoadMap.load(str(moved))
    assert len(list((cache / "map_checks").glob("*.json"))) == 1


def test_lanes_without_road_marks_have_no_marking(tmp_path):
    """carla gives None for the marking of a lane without <roadMark> (class 1)."""
    path = write(tmp_path, "unmarked", opendrive(road(1, 120.0, marks=False)))
    road_map = RoadMap.load(str(path))
    assert len(road_map.lanes) == 2
    assert all(m == "NONE" for lane in road_map.lanes for m in lane.left_marking + lane.right_marking)
    raster = RoadRaster(road_map, 2.0)
    assert raster.layer("road").any() and not raster.layer("solid").any() and not raster.layer("broken").any()
    done = cli("map", "show", str(path), "-o", str(tmp_path / "unmarked.png"), cwd=tmp_path)
    assert done.returncode == 0 and (tmp_path / "unmarked.png").is_file(), done.stderr


def test_validate_samples_the_road_not_the_bounding_box(tmp_path, capsys):
    """A 3 km diagonal road spans a 2.1 km square; the grid check samples only near its lanes."""
    path = write(tmp_path, "diagonal", opendrive(road(1, 3000.0, hdg=np.pi / 4)))
    report = validate_map(path, grid_step=2.0, walks=2, progress=True)
    assert report.ok, str(report)
    sampled = int(report.check("grid").summary.split()[0])
    band = 3000.0 * (2 * 3.5 + 2 * 5.0 + 2 * 2.0) / 2.0**2  # road length x (width + reach) per point
    assert 0.7 * band < sampled < 1.5 * band  # the bounding box would be 1.1 million points
    assert "validating diagonal.xodr" in capsys.readouterr().err


def test_world_axes_ticks_and_scale_bar():
    image = np.zeros((300, 400, 3), np.uint8)
    image[:] = (0, 255, 0)
    out = with_world_axes(image, origin=(-13.0, 7.0), pixels_per_meter=2.0)
    rows, cols = np.nonzero((out == (0, 255, 0)).all(axis=2))
    top, left = rows.min(), cols.min()
    ink = (out == 0).all(axis=2)
    for x in (0, 50, 100, 150):  # ticks every 50 m (90 px at 2 px/m rounds up to 50 m)
        assert ink[top - 3, left + (x + 13) * 2], x
    assert not ink[top - 3, left + (25 + 13) * 2]
    for y in (50, 100, 150):
        assert ink[top + (y - 7) * 2, left - 3], y
    bar_row = ink[top + 300 - 14, left:left + 200]
    assert 38 <= bar_row.sum() <= 43  # a 20 m scale bar: 40 px


def test_map_show_png_has_axes(tmp_path):
    path = write(tmp_path, "plain", opendrive(road(1, 200.0)))
    out = tmp_path / "plain.png"
    assert cli("map", "show", str(path), "-o", str(out), cwd=tmp_path).returncode == 0
    image = cv2.imread(str(out))
    lanes_only = 2.0 * (200.0 + 16.0)
    assert image.shape[1] > lanes_only + 30  # a margin for the y labels
    assert (image[:12] < 128).any()  # tick labels along the top
