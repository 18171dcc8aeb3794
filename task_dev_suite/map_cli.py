"""`cardreamer map ...` commands: build a map from a spec, validate an OpenDRIVE file, draw one.

The lead's CLI calls `register(subparsers)`; each command is also a plain function.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from task_dev_suite.map_spec import MapSpecError
from task_dev_suite.map_validation import MapFileError, read_xodr, validate_map
from task_dev_suite.opendrive_writer import build_map, write_atomic

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
    report = validate_map(xodr, grid_step=grid_step)
    print(report)
    return 0 if report.ok else 1


def cmd_show(xodr: Path, out: Path, pixels_per_metre: float = 2.0, lane_ids: bool = False) -> int:
    try:
        render_map(xodr, out, pixels_per_metre, lane_ids)
    except MapFileError as err:
        print(f"error: {err}")
        return 2
    print(f"wrote {out}")
    return 0


def render_map(xodr: Path, out: Path, pixels_per_metre: float = 2.0, lane_ids: bool = False) -> Path:
    """Draw a map in CARLA coordinates (x right, y down) to a PNG: lane surfaces (junction lanes
    lighter), centre lines, a driving-direction arrow every 40 m, road ids (or road:lane ids),
    traffic lights (red) and stop signs (orange).  The file passes `read_xodr`'s safety checks
    before carla.Map reads it in this process."""
    import carla
    import cv2
    import numpy as np

    text, _ = read_xodr(xodr)
    cmap = carla.Map(Path(xodr).stem, text)
    lanes: dict[tuple, list] = {}
    for w in cmap.generate_waypoints(1.0):
        lanes.setdefault((w.road_id, w.section_id, w.lane_id), []).append(w)
    centres, borders = {}, {}
    for key, wps in lanes.items():
        wps.sort(key=lambda w: w.s if key[2] < 0 else -w.s)  # driving order
        try:
            wps += wps[-1].next_until_lane_end(1.0)[-1:]  # the lane's end point
        except RuntimeError:  # CARLA raises "distance > 0.0" when already at the end
            pass
        xy = np.array([[w.transform.location.x, w.transform.location.y] for w in wps])
        yaw = np.radians([w.transform.rotation.yaw for w in wps])
        half = np.array([w.lane_width / 2 for w in wps])[:, None]
        normal = np.stack([-np.sin(yaw), np.cos(yaw)], axis=1)
        centres[key] = xy
        borders[key] = np.concatenate([xy + half * normal, (xy - half * normal)[::-1]])
    everything = np.concatenate(list(borders.values()))
    lo = everything.min(axis=0) - 8.0
    size = np.ceil((everything.max(axis=0) + 8.0 - lo) * pixels_per_metre).astype(int)
    image = np.full((size[1], size[0], 3), 255, np.uint8)

    def px(points: np.ndarray) -> np.ndarray:
        return np.round((points - lo) * pixels_per_metre * 8).astype(np.int32)  # 3 fractional bits

    junction = {key: wps[0].is_junction for key, wps in lanes.items()}
    for key in sorted(lanes, key=lambda k: junction[k]):  # junction lanes on top
        cv2.fillPoly(
            image,
            [px(borders[key])],
            (175, 175, 175) if junction[key] else (110, 110, 110),
            cv2.LINE_AA,
            shift=3,
        )
    for key in sorted(lanes):
        colour = (230, 160, 60) if junction[key] else (235, 235, 235)
        cv2.polylines(image, [px(centres[key])], False, colour, 1, cv2.LINE_AA, shift=3)
    labelled = set()
    for key in sorted(lanes):
        xy = centres[key]
        if junction[key] or len(xy) < 6:
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
    for lm in cmap.get_all_landmarks():
        loc = lm.transform.location
        centre = tuple(int(v) for v in ((np.array([loc.x, loc.y]) - lo) * pixels_per_metre))
        cv2.circle(image, centre, radius, _SIGNAL_COLOURS.get(lm.type, (0, 160, 0)), -1, cv2.LINE_AA)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError(f"could not encode {out}")
    write_atomic(out, encoded.tobytes())
    return Path(out)
