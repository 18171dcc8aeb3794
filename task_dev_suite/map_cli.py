"""`cardreamer map ...` commands: build a map from a spec, validate an OpenDRIVE file, draw one.

The lead's CLI calls `register(subparsers)`; each command is also a plain function.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from cardreamer.atomic import write_atomic
from cardreamer.roadmap import MapError, RoadMap
from cardreamer.roadmap.raster import with_world_axes
from task_dev_suite.map_spec import MapSpecError
from task_dev_suite.map_validation import validate_map
from task_dev_suite.opendrive_writer import build_map

UNREADABLE_CHECKS = ("xml", "loader")
"""Gate checks whose failure means the file cannot be used at all (reported as one line, exit 2)."""
_SIGNAL_COLOURS = {"1000001": (40, 40, 230), "206": (40, 160, 230)}  # BGR: traffic light red, stop orange


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``map build``, ``map validate`` and ``map show`` to a CLI's subparsers."""
    parser = subparsers.add_parser("map", help="build, validate and draw OpenDRIVE maps")
    commands = parser.add_subparsers(dest="map_command", required=True)
    build = commands.add_parser("build", help="write the .xodr for a map spec, then validate it")
    build.add_argument("spec", type=Path, help="map spec YAML")
    build.add_argument("-o", "--out", type=Path, required=True, help="output .xodr")
    build.add_argument("--grid-step", type=float, default=1.0, help="spacing of the get_waypoint grid (m)")
    build.set_defaults(func=lambda a: cmd_build(a.spec, a.out, a.grid_step))
    validate = commands.add_parser("validate", help="run the validation gate on an .xodr")
    validate.add_argument("xodr", type=Path)
    validate.add_argument("--grid-step", type=float, default=1.0)
    validate.set_defaults(func=lambda a: cmd_validate(a.xodr, a.grid_step))
    show = commands.add_parser("show", help="draw lane centres, directions and signals to a PNG")
    show.add_argument("xodr", type=Path)
    show.add_argument("-o", "--out", type=Path, required=True, help="output .png")
    show.add_argument("--pixels-per-metre", type=float, default=2.0)
    show.add_argument(
        "--lane-ids", action="store_true", help="label each lane road:lane instead of each road"
    )
    show.set_defaults(func=lambda a: cmd_show(a.xodr, a.out, a.pixels_per_metre, a.lane_ids))


def cmd_build(spec: Path, out: Path, grid_step: float = 1.0) -> int:
    """Build ``spec`` into ``out``, print the validation report; exit status 0 when it passes."""
    try:
        build_map(spec, out)
    except MapSpecError as err:
        print(f"error: {err}")
        return 2
    print(f"wrote {out}")
    return cmd_validate(out, grid_step)


def cmd_validate(xodr: Path, grid_step: float = 1.0) -> int:
    """Print the gate's report (exit status 0 when it passes, 1 when a check fails); a file the
    road-map loader cannot read is one line on stderr and exit status 2."""
    report = validate_map(xodr, grid_step=grid_step, progress=None)
    unreadable = [c for c in report.failures if c.name in UNREADABLE_CHECKS]
    if unreadable:
        print(f"error: {unreadable[0].summary}", file=sys.stderr)
        return 2
    print(report)
    return 0 if report.ok else 1


def cmd_show(xodr: Path, out: Path, pixels_per_metre: float = 2.0, lane_ids: bool = False) -> int:
    try:
        render_map(xodr, out, pixels_per_metre, lane_ids)
    except MapError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def render_map(xodr: Path, out: Path, pixels_per_metre: float = 2.0, lane_ids: bool = False) -> Path:
    """Draw a map in CARLA coordinates (x right, y down) to a PNG: lane surfaces (junction lanes
    lighter), centre lines, a driving-direction arrow every 40 m, road ids (or road:lane ids),
    traffic lights (red) and stop signs (orange), world-coordinate ticks and a scale bar.  The
    file is read by the road-map loader, which checks it (XML, then CARLA in a child process)
    before CARLA reads it in this process; raises MapError for a file it refuses."""
    import cv2
    import numpy as np

    road_map = RoadMap.from_file(Path(xodr))
    lanes = {lane.key: lane for lane in road_map.lanes}
    borders = {}
    for key, lane in lanes.items():
        half = (lane.widths / 2)[:, None]
        normal = np.stack([-np.sin(lane.headings), np.cos(lane.headings)], axis=1)
        borders[key] = np.concatenate([lane.points + half * normal, (lane.points - half * normal)[::-1]])
    everything = np.concatenate(list(borders.values()))
    lo = everything.min(axis=0) - 8.0
    size = np.ceil((everything.max(axis=0) + 8.0 - lo) * pixels_per_metre).astype(int)
    image = np.full((size[1], size[0], 3), 255, np.uint8)

    def px(points: np.ndarray) -> np.ndarray:
        return np.round((points - lo) * pixels_per_metre * 8).astype(np.int32)  # 3 fractional bits

    for key in sorted(lanes, key=lambda k: lanes[k].is_junction):  # junction lanes on top
        cv2.fillPoly(
            image,
            [px(borders[key])],
            (175, 175, 175) if lanes[key].is_junction else (110, 110, 110),
            cv2.LINE_AA,
            shift=3,
        )
    for key in sorted(lanes):
        colour = (230, 160, 60) if lanes[key].is_junction else (235, 235, 235)
        cv2.polylines(image, [px(lanes[key].points)], False, colour, 1, cv2.LINE_AA, shift=3)
    labelled = set()
    for key in sorted(lanes):
        xy = lanes[key].points  # one point a metre
        if lanes[key].is_junction or len(xy) < 6:
            continue
        for i in range(len(xy) // 2 % 40, len(xy) - 5, 40):
            a, b = (tuple(map(int, p)) for p in px(xy[[i, i + 5]]))
            cv2.arrowedLine(image, a, b, (0, 200, 255), 1, cv2.LINE_AA, shift=3, tipLength=0.5)
        label = f"{key[0]}:{key[2]}" if lane_ids else str(key[0])
        if label not in labelled:
            labelled.add(label)
            x, y = ((xy[len(xy) // 2] - lo) * pixels_per_metre).astype(int)
            cv2.putText(
                image,
                label,
                (int(x) + 3, int(y) - 3),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.35,
                (0, 0, 0),
                1,
                cv2.LINE_AA,
            )
    radius = max(2, math.ceil(1.2 * pixels_per_metre))
    for lm in road_map.carla_map.get_all_landmarks():
        loc = lm.transform.location
        centre = tuple(int(v) for v in ((np.array([loc.x, loc.y]) - lo) * pixels_per_metre))
        cv2.circle(image, centre, radius, _SIGNAL_COLOURS.get(lm.type, (0, 160, 0)), -1, cv2.LINE_AA)
    image = with_world_axes(image, lo, pixels_per_metre)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError(f"could not encode {out}")
    write_atomic(out, encoded.tobytes())
    return Path(out)

