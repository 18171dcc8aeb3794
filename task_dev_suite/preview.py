"""``cardreamer task preview``: the whole scene of a task from above, as a labelled PNG.

The picture shows the map's lanes (with arrows for the direction of travel), traffic lights and
stop signs, the ego's spawn box and planned route with numbered waypoints and its goal, and every
flow's spawn box and route. Random spawns and routes are drawn as one example (seed 0) and
labelled so. Problems found by validation are listed in red at the bottom, and legs that cannot
be planned are drawn as dashed red lines, so the preview also helps while a spec is still broken.

``serve_preview`` shows the picture in the browser and re-renders it whenever the task file (or
its map) changes.
"""
from __future__ import annotations

import itertools
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cardreamer.atomic import write_atomic
from cardreamer.roadmap import MapError, RoadMap, plan_route, random_route
from cardreamer.roadmap.raster import BROKEN, JUNCTION, ROAD, SOLID, RoadRaster, with_world_axes
from task_dev_suite.task_validation import (
    POINT,
    POSE,
    VEHICLE_LENGTH,
    VEHICLE_WIDTH,
    ValidationReport,
    lane_under,
    parse_or_none,
    validate_task,
)

# BGR colours
BACKGROUND, ROAD_GREY, JUNCTION_GREY = (32, 32, 32), (78, 78, 78), (98, 98, 98)
BROKEN_GREY, SOLID_WHITE, ARROW_GREY = (160, 160, 160), (225, 225, 225), (125, 125, 125)
EGO = (0, 220, 255)            # yellow
EGO_ROUTE = (255, 170, 0)      # blue
FLOW_COLOURS = [(60, 220, 60), (255, 80, 200), (0, 140, 255), (230, 230, 60), (180, 120, 255), (80, 200, 200)]
LIGHT = (60, 60, 230)
STOP = (40, 40, 200)
ERROR = (60, 60, 255)
TEXT = (240, 240, 240)
FONT = cv2.FONT_HERSHEY_SIMPLEX

MAX_SIZE = 1400
"""Longest side of the map part of the picture, in pixels."""
ARROW_SPACING = 30.0
"""Metres between direction arrows along a lane."""


def _text(img: np.ndarray, text: str, org, colour=TEXT, scale: float = 0.5, thickness: int = 1) -> None:
    """Text with a dark outline, readable on any background."""
    x, y = int(org[0]), int(org[1])
    for dx, dy in ((-1, -1), (1, -1), (-1, 1), (1, 1), (0, 2), (2, 0)):  # same thickness keeps glyphs aligned
        cv2.putText(img, text, (x + dx, y + dy), FONT, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    cv2.putText(img, text, (x, y), FONT, scale, colour, thickness, cv2.LINE_AA)


class _Canvas:
    """The map raster in colour plus world -> pixel drawing helpers."""

    def __init__(self, road_map: RoadMap):
        lo, hi = road_map.bounds
        ppm = float(np.clip(MAX_SIZE / max(float(np.max(hi - lo)) + 40.0, 1.0), 0.5, 8.0))
        self.raster = RoadRaster.for_map(road_map, ppm)
        labels = self.raster.labels
        img = np.empty((*labels.shape, 3), np.uint8)
        img[:] = BACKGROUND
        for bit, colour in ((ROAD, ROAD_GREY), (JUNCTION, JUNCTION_GREY), (BROKEN, BROKEN_GREY), (SOLID, SOLID_WHITE)):
            img[(labels & bit) > 0] = colour
        self.img = img
        self.ppm = ppm
        self.overlay: list = []  # boxes and labels, drawn last so that routes and signs never hide them

    def later(self, draw, *args) -> None:
        self.overlay.append((draw, args))

    def label(self, text: str, org, colour, scale: float = 0.5) -> None:
        self.later(_text, self.img, text, org, colour, scale)

    def finish(self) -> np.ndarray:
        """The drawing, framed by world-coordinate ticks and a scale bar."""
        for draw, args in self.overlay:
            draw(*args)
        self.overlay.clear()
        return with_world_axes(self.img, self.raster.origin, self.ppm, TEXT, BACKGROUND)

    def px(self, xy) -> np.ndarray:
        return np.rint(self.raster.to_pixel(np.asarray(xy, float))).astype(np.int32)

    def polyline(self, points: np.ndarray, colour, thickness: int = 2, dashed: bool = False) -> None:
        pts = self.px(points)
        if not dashed:
            cv2.polylines(self.img, [pts], False, colour, thickness, cv2.LINE_AA)
            return
        for a, b in itertools.pairwise(pts):
            n = max(int(np.linalg.norm(b - a) / 10), 1)
            for k in range(0, n, 2):
                p, q = a + (b - a) * k / n, a + (b - a) * min(k + 1, n) / n
                cv2.line(self.img, tuple(int(v) for v in p), tuple(int(v) for v in q), colour, thickness, cv2.LINE_AA)

    def arrow_along(self, points: np.ndarray, s: np.ndarray, colour, spacing: float, size: float = 3.0) -> None:
        for at in np.arange(spacing / 2, s[-1], spacing):
            i = min(int(np.searchsorted(s, at)), len(points) - 1)
            j = max(i - 1, 0)
            d = points[i] - points[j] if i != j else np.array([1.0, 0.0])
            d = d / max(np.linalg.norm(d), 1e-9)
            tail, tip = self.px(points[i] - d * size / 2), self.px(points[i] + d * size / 2)
            cv2.arrowedLine(self.img, tuple(map(int, tail)), tuple(map(int, tip)), colour, 1, cv2.LINE_AA,
                            tipLength=0.5)

    def box(self, xy, yaw: float, colour, label: str) -> None:
        self.later(self._box, xy, yaw, colour, label)

    def _box(self, xy, yaw: float, colour, label: str) -> None:
        c, s = np.cos(yaw), np.sin(yaw)
        fwd, right = np.array([c, s]) * VEHICLE_LENGTH / 2, np.array([-s, c]) * VEHICLE_WIDTH / 2
        xy = np.asarray(xy, float)
        corners = self.px(xy + np.array([fwd + right, fwd - right, -fwd - right, -fwd + right]))
        cv2.fillPoly(self.img, [corners], colour, cv2.LINE_AA)
        nose = self.px(xy + fwd)
        cv2.line(self.img, tuple(map(int, self.px(xy))), tuple(map(int, nose)), (0, 0, 0), 1, cv2.LINE_AA)
        p = self.px(xy)
        _text(self.img, label, (p[0] + 8, p[1] - 8), colour)

    def cross(self, xy, label: str) -> None:
        self.later(self._cross, xy, label)

    def _cross(self, xy, label: str) -> None:
        p = self.px(xy)
        for d in ((-7, -7, 7, 7), (-7, 7, 7, -7)):
            cv2.line(self.img, (int(p[0] + d[0]), int(p[1] + d[1])), (int(p[0] + d[2]), int(p[1] + d[3])), ERROR, 3)
        _text(self.img, label, (p[0] + 9, p[1] + 4), ERROR)


def _heading(road_map: RoadMap, xy: np.ndarray) -> float | None:
    found = lane_under(road_map, xy)
    return None if found is None else float(road_map.lanes[found[0]].heading_at(found[1]))


def _draw_route(canvas: _Canvas, road_map: RoadMap, start: np.ndarray, raw_route: Any, colour, label: str,
                length: float) -> None:
    """Draw a planned route (legs that cannot be planned as dashed red lines) and its waypoints."""
    if raw_route == "random":
        found = lane_under(road_map, start)
        if found is None:
            return
        lane, s = found
        route = random_route(road_map, np.random.default_rng(0), lane, s, length)
        canvas.polyline(route.points, colour, 2, dashed=True)
        canvas.arrow_along(route.points, route.s, colour, 25.0, 4.0)
        end = canvas.px(route.points[-1])
        canvas.label(f"{label}: route end (random, example)", (end[0] + 6, end[1] + 14), colour, 0.45)
        return
    if not isinstance(raw_route, list):
        return
    points = [parse_or_none(POINT, p) for p in raw_route]
    previous = start
    for j, xy in enumerate(points):
        if xy is None:
            continue
        xy = np.asarray(xy, float)
        last = j == len(points) - 1
        try:
            route = plan_route(road_map, previous, xy)
            canvas.polyline(route.points, colour, 3)
            canvas.arrow_along(route.points, route.s, colour, 25.0, 4.0)
        except MapError:
            canvas.polyline(np.array([previous, xy]), ERROR, 2, dashed=True)
        p = canvas.px(xy)
        canvas.later(cv2.circle, canvas.img, tuple(map(int, p)), 7 if last else 5, colour, -1, cv2.LINE_AA)
        canvas.label(f"{label} goal" if last else f"{label} wp{j}", (p[0] + 9, p[1] + 5), colour, 0.45)
        previous = xy


def _draw_signals(canvas: _Canvas, road_map: RoadMap, task: dict) -> None:
    seen: set[str] = set()
    for signal in road_map.signals:
        lane = road_map.lanes[signal.lane]
        stop = lane.position(signal.stop_s)
        h = float(lane.heading_at(signal.stop_s))
        half = np.array([-np.sin(h), np.cos(h)]) * lane.width_at(signal.stop_s) / 2
        colour = LIGHT if signal.kind == "traffic_light" else STOP
        a, b = canvas.px(stop - half), canvas.px(stop + half)
        cv2.line(canvas.img, tuple(map(int, a)), tuple(map(int, b)), colour, 3, cv2.LINE_AA)
        if signal.id in seen:
            continue
        seen.add(signal.id)
        p = canvas.px(signal.location)
        if signal.kind == "traffic_light":
            cv2.circle(canvas.img, tuple(map(int, p)), 6, colour, -1, cv2.LINE_AA)
            _text(canvas.img, f"TL {signal.id}", (p[0] + 7, p[1] - 6), colour, 0.4)
        else:
            _stop_sign(canvas, signal.location, "STOP")
    signs = task.get("stop_signs") or []
    for i, raw in enumerate(signs if isinstance(signs, list) else []):
        xy = parse_or_none(POINT, raw)
        if xy is None:
            continue
        if _heading(road_map, np.asarray(xy, float)) is None:
            canvas.cross(xy, f"stop_signs[{i}] off road")
        else:
            _stop_sign(canvas, xy, f"STOP (task #{i})")


def _stop_sign(canvas: _Canvas, xy, label: str) -> None:
    p = canvas.px(xy)
    angles = np.radians(22.5 + 45 * np.arange(8))
    octagon = np.stack([p[0] + 8 * np.cos(angles), p[1] + 8 * np.sin(angles)], -1).astype(np.int32)
    cv2.fillPoly(canvas.img, [octagon], STOP, cv2.LINE_AA)
    cv2.polylines(canvas.img, [octagon], True, (255, 255, 255), 1, cv2.LINE_AA)
    _text(canvas.img, label, (p[0] + 10, p[1] + 4), (90, 90, 255), 0.4)


def _draw_vehicle(canvas: _Canvas, road_map: RoadMap, raw_pose: Any, raw_route: Any, colour, route_colour,
                  label: str, length: float, route_label: str | None = None) -> None:
    pose = parse_or_none(POSE, raw_pose)
    if pose is None:
        return
    xy = np.array([pose.x, pose.y])
    heading = _heading(road_map, xy)
    if heading is None:
        canvas.cross(xy, f"{label} spawn off road")
        return
    yaw = np.radians(pose.yaw) if pose.yaw is not None else heading
    _draw_route(canvas, road_map, xy, raw_route, route_colour, route_label or label, length)
    canvas.box(xy, yaw, colour, label)


def render_preview(report: ValidationReport) -> np.ndarray:
    """The scene of a validated (or partly invalid) task as a BGR image."""
    data = report.sourced.data if report.sourced else {}
    task = data.get("task") if isinstance(data.get("task"), dict) else {}
    road_map = report.road_map
    if road_map is None:
        body = np.full((240, 900, 3), BACKGROUND, np.uint8)
        _text(body, "no map to draw (see the problems below)", (20, 120), ERROR, 0.7, 2)
    else:
        canvas = _Canvas(road_map)
        for lane in road_map.lanes:
            if not lane.is_junction and lane.length > ARROW_SPACING / 2:
                canvas.arrow_along(lane.points, lane.s, ARROW_GREY, ARROW_SPACING, 3.0)
        _draw_ego(canvas, road_map, task)
        traffic = task.get("traffic") if isinstance(task.get("traffic"), dict) else {}
        flows = traffic.get("flows") or []
        for i, flow in enumerate(flows if isinstance(flows, list) else []):
            if isinstance(flow, dict):
                colour = FLOW_COLOURS[i % len(FLOW_COLOURS)]
                _draw_vehicle(canvas, road_map, flow.get("spawn"), flow.get("route", "random"), colour, colour,
                              f"flow {i}", 150.0)
        _draw_signals(canvas, road_map, task)
        body = canvas.finish()
    return np.concatenate([_header(report, task, body.shape[1]), body, _footer(report, body.shape[1])])


def _draw_ego(canvas: _Canvas, road_map: RoadMap, task: dict) -> None:
    ego = task.get("ego") if isinstance(task.get("ego"), dict) else {}
    spawn, route = ego.get("spawn", "random"), ego.get("route", "random")
    length = ego.get("route_length", 300.0)
    length = float(length) if isinstance(length, (int, float)) else 300.0
    if spawn == "random":
        points = road_map.spawn_points()
        i = int(np.random.default_rng(0).integers(len(points.xy)))
        spawn = {"x": float(points.xy[i, 0]), "y": float(points.xy[i, 1])}
        label = "ego (random spawn, example)"
    else:
        label = "ego"
    spawns = spawn if isinstance(spawn, list) else [spawn]
    for k, pose in enumerate(spawns):
        name = label if len(spawns) == 1 else f"ego #{k}"
        _draw_vehicle(canvas, road_map, pose, route, EGO, EGO_ROUTE, name, length, route_label=label)


def _header(report: ValidationReport, task: dict, width: int) -> np.ndarray:
    lines = [(f"{task.get('name', '?')}   map: {task.get('map', '?')}", TEXT, 0.7, 2)]
    description = str(task.get("description", ""))
    if description:
        lines.append((description[:160], TEXT, 0.45, 1))
    traffic = task.get("traffic") if isinstance(task.get("traffic"), dict) else {}
    lights = task.get("lights") if isinstance(task.get("lights"), dict) else {}
    flows = traffic.get("flows") if isinstance(traffic.get("flows"), list) else []
    lights_text = ", ".join(f"{k} {'auto' if v is None else v}" for k, v in lights.items()) or "defaults"
    lines.append(((f"background vehicles: {traffic.get('background', 0)}   flows: {len(flows)}   "
                  f"lights: {lights_text}"), TEXT, 0.45, 1))
    lines.append((("yellow box: ego   blue: ego route   coloured boxes: flow entries   red bars/dots: lights   "
                  "octagons: stop signs"), (180, 180, 180), 0.4, 1))
    return _panel(lines, width)


def _footer(report: ValidationReport, width: int) -> np.ndarray:
    if report.ok:
        lines = [(f"valid ({len(report.warnings)} warnings)", (90, 220, 90), 0.5, 1)]
    else:
        lines = [(f"INVALID: {len(report.errors)} problem(s)", ERROR, 0.55, 2)]
    for problem in report.sorted_problems()[:12]:
        colour = ERROR if problem.severity == "error" else (0, 200, 255)
        where = problem.where.rsplit("/", 1)[-1]
        text = f"{where} {problem.key}: {problem.message}"
        for part in textwrap.wrap(text, width=int(width / 5.8), subsequent_indent="    "):
            lines.append((part, colour, 0.42, 1))
    return _panel(lines, width)


def _panel(lines: list[tuple[str, tuple, float, int]], width: int) -> np.ndarray:
    heights = [int(32 * scale / 0.5) + 4 for _, _, scale, _ in lines]
    panel = np.full((sum(heights) + 12, width, 3), (18, 18, 18), np.uint8)
    y = 6
    for (text, colour, scale, thick), h in zip(lines, heights):
        y += h
        _text(panel, text, (12, y - 8), colour, scale, thick)
    return panel


def preview_task(path: str | Path, overrides: list[str] | None = None) -> tuple[np.ndarray, ValidationReport]:
    """Validate a task and render its preview; returns (BGR image, report)."""
    report = validate_task(path, overrides)
    return render_preview(report), report


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Encode ``image`` as PNG and write it atomically."""
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    write_atomic(path, data.tobytes())


# ----------------------------------------------------------------------------- live preview
_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title} - task preview</title>
<style>body{{background:#111;color:#ddd;font:14px sans-serif;margin:12px}} img{{max-width:100%}}</style></head>
<body><div id="status">{title}: waiting for the first render…</div><img id="scene" alt="task preview">
<script>
let version = -1;
async function poll() {{
  try {{
    const r = await fetch("version");
    const v = await r.json();
    if (v.version !== version) {{
      version = v.version;
      document.getElementById("scene").src = "preview.png?v=" + version;
      document.getElementById("status").textContent = "{title}: " + v.status + " (render " + version + ")";
    }}
  }} catch (e) {{ document.getElementById("status").textContent = "{title}: preview server unreachable"; }}
  setTimeout(poll, 500);
}}
poll();
</script></body></html>"""


class LivePreview:
    """Re-renders a task's preview whenever the task file or its map file changes."""

    def __init__(self, path: str | Path, overrides: list[str] | None = None, out: str | Path | None = None):
        self.path = Path(path)
        self.overrides = overrides
        self.out = Path(out) if out else None
        self.png = b""
        self.status = "not rendered"
        self.version = 0
        self._stamp: tuple = ()
        self._map_source: Path | None = None
        self._lock = threading.Lock()

    def _files_stamp(self) -> tuple:
        files = [self.path] + ([self._map_source] if self._map_source is not None else [])
        return tuple(f.stat().st_mtime_ns if f.exists() else 0 for f in files)

    def refresh(self) -> bool:
        """Render again if a watched file changed; returns whether it did."""
        stamp = self._files_stamp()
        if stamp == self._stamp:
            return False
        try:
            image, report = preview_task(self.path, self.overrides)
            self._map_source = report.road_map.source if report.road_map is not None else None
            status = "valid" if report.ok else f"INVALID ({len(report.errors)} problems)"
        except Exception as exc:  # noqa: BLE001  (a spec mid-edit may fail in any way: show it, keep serving)
            image = _panel([(f"cannot render: {exc}"[:200], ERROR, 0.5, 1)], 1000)
            status = "error"
        _ok, data = cv2.imencode(".png", image)
        with self._lock:
            self.png, self.status, self.version = data.tobytes(), status, self.version + 1
            self._stamp = self._files_stamp()
        if self.out is not None:
            write_png(self.out, image)
        return True

    def watch(self, stop: threading.Event, interval: float = 0.3) -> None:
        while not stop.wait(interval):
            self.refresh()

    def app(self):
        """The Flask app: ``/`` (page), ``/preview.png`` (latest render), ``/version`` (JSON)."""
        from flask import Flask, Response, jsonify

        app = Flask(__name__)
        title = self.path.name

        @app.get("/")
        def index():
            return Response(_PAGE.format(title=title), mimetype="text/html")

        @app.get("/preview.png")
        def png():
            with self._lock:
                return Response(self.png, mimetype="image/png", headers={"Cache-Control": "no-store"})

        @app.get("/version")
        def version():
            with self._lock:
                return jsonify(version=self.version, status=self.status)

        return app


class PreviewServer:
    """A LivePreview served over HTTP on ``host:port`` (0: a free port) from background threads."""

    def __init__(self, path: str | Path, overrides: list[str] | None = None, host: str = "127.0.0.1",
                 port: int = 0, out: str | Path | None = None, interval: float = 0.3):
        from werkzeug.serving import make_server

        self.live = LivePreview(path, overrides, out)
        self.live.refresh()
        self._stop = threading.Event()
        self._server = make_server(host, port, self.live.app(), threaded=True)
        self.url = f"http://{host}:{self._server.server_port}/"
        self._threads = [threading.Thread(target=self.live.watch, args=(self._stop, interval), daemon=True),
                         threading.Thread(target=self._server.serve_forever, daemon=True)]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        for thread in self._threads:
            thread.join(timeout=5)


def serve_preview(path: str | Path, overrides: list[str] | None = None, host: str = "127.0.0.1", port: int = 0,
                  out: str | Path | None = None) -> None:
    """Serve the live preview until Ctrl-C, printing its URL."""
    server = PreviewServer(path, overrides, host, port, out)
    print(f"task preview: {server.url}  (re-renders when {path} changes; Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
