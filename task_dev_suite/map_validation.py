"""The map validation gate: checks that an OpenDRIVE file is usable through `carla.Map`.

Checks (each reported separately, see NOTES.md for why each one is there):

- ``xml``: well-formed OpenDRIVE whose controllers, junctions and links name things the file
  declares, with roads of positive length (checked before CARLA reads the file: such references
  crash CARLA's reader or make it raise bare C++ errors);
- ``loader``: the road-map loader that tasks use reads it (the same check, in a child process
  and cached by file content, that ``RoadMap.load`` makes; e.g. it needs driving lanes connected
  into a topology), so a map that passes the gate is one the environment accepts;
- ``parse``: ``carla.Map`` reads it (in a child process, so a crash becomes a failed check);
- ``waypoints``: ``generate_waypoints(2.0)`` gives waypoints, none with NaN positions;
- ``topology``: no lane ends without a successor except at map edges (a road end without links),
  no lane starts without a predecessor except at map edges, and the lane graph (successors, lane
  changes, and a virtual "outside" node joining map-edge exits to map-edge entries) is one strongly
  connected component;
- ``grid``: every point of a grid (1 m by default) within 5 m of a lane queried with
  ``get_waypoint(loc, project_to_road=False)`` gives no NaN and no exception (the points are
  proportional to the road area, not to the bounding box);
- ``next_walk``: ``next(2.0)`` followed from every lane start over the lane and a little beyond:
  no 2 m step moves more than 3.5 m or turns more than 60 degrees;
- ``random_walks``: random 500 m drives by ``next(2.0)`` end only at map edges, with no bad steps;
- ``landmarks``: ``get_all_landmarks()`` finds every signal the file declares, with its type.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cardreamer.roadmap.preflight import check_with_carla
from cardreamer.roadmap.xodr_file import MapFileError, XodrInfo, read_xodr

MAX_STEP = 3.5  # metres per 2 m step
MAX_TURN = 60.0  # degrees per 2 m step
WALK_LENGTH = 500.0
MAX_DETAILS = 8  # failure examples kept per check
GRID_REACH = 5.0  # metres beyond a lane's edge that the grid check samples
WORKER_CHECKS = ["parse", "waypoints", "topology", "grid", "next_walk", "random_walks", "landmarks"]


@dataclass
class CheckResult:
    name: str
    passed: bool
    summary: str
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class ValidationReport:
    """Outcome of `validate_map`: one `CheckResult` per check, in gate order."""

    path: str
    checks: list[CheckResult]

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def check(self, name: str) -> CheckResult:
        return next(c for c in self.checks if c.name == name)

    def __str__(self) -> str:
        lines = [f"{self.path}: {'PASSED' if self.ok else 'FAILED'}"]
        for c in self.checks:
            lines.append(f"  [{'ok' if c.passed else 'FAIL'}] {c.name:<13} {c.summary} ({c.seconds:.2f} s)")
            lines += [f"         - {d}" for d in c.details]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ the gate


def validate_map(
    path: str | Path,
    grid_step: float = 1.0,
    walks: int = 20,
    seed: int = 0,
    timeout: float = 600.0,
    progress: bool | None = False,
) -> ValidationReport:
    """Run the whole gate on an OpenDRIVE file; CARLA reads it in child processes.

    ``grid_step`` is the spacing (m) of the get_waypoint grid; ``walks`` the number of random
    500 m drives, seeded by ``seed``; ``progress`` shows a progress bar on stderr (None: when
    stderr is a terminal).  Never raises for a bad map: failures are in the report.
    """
    path = Path(path)
    start = time.perf_counter()
    try:
        text, _ = read_xodr(path)
    except MapFileError as err:
        return ValidationReport(
            str(path), [CheckResult("xml", False, str(err), seconds=time.perf_counter() - start)]
        )
    xml_check = CheckResult(
        "xml", True, "well-formed, references resolve, roads have length", seconds=time.perf_counter() - start
    )
    start = time.perf_counter()
    try:
        check_with_carla(path, text, timeout)
    except MapFileError as err:  # the other checks still run (in their own child): they say more
        loader = CheckResult("loader", False, str(err), seconds=time.perf_counter() - start)
    else:
        loader = CheckResult("loader", True, "the road-map loader reads it", seconds=time.perf_counter() - start)
    command = [
        sys.executable,
        "-m",
        "task_dev_suite.map_validation",
        "--worker",
        str(path),
        "--grid-step",
        str(grid_step),
        "--walks",
        str(walks),
        "--seed",
        str(seed),
    ]
    checks, running, stderr, returncode, timed_out = _run_worker(command, timeout, path.name, progress)
    if timed_out:
        checks.append(CheckResult(running, False, f"{path}: gate timed out after {timeout:.0f} s during this check"))
    elif returncode != 0:
        if returncode < 0:
            reason = f"crashed with {signal.Signals(-returncode).name}"
        else:
            reason = f"failed (exit {returncode}): {stderr.strip()[-500:]}"
        checks.append(CheckResult(running, False, f"{path}: carla.Map {reason} during this check"))
    return ValidationReport(str(path), [xml_check, loader, *checks])


def _run_worker(
    command: list[str], timeout: float, label: str, progress: bool | None
) -> tuple[list[CheckResult], str, str, int, bool]:
    """Run the gate's worker, following its JSON lines with a progress bar on stderr.

    Returns the finished checks, the check running last, the worker's stderr, its exit status
    and whether it was stopped for running past ``timeout``.
    """
    from tqdm import tqdm

    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    stderr_lines: list[str] = []
    reader = threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True)
    reader.start()
    checks: list[CheckResult] = []
    running = "parse"
    bar = tqdm(total=len(WORKER_CHECKS), desc=f"validating {label}", unit="check", file=sys.stderr,
               disable=None if progress is None else not progress, leave=False)
    try:
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            if "running" in event:
                running = event["running"]
                bar.set_postfix_str(running)
            elif "progress" in event:
                bar.set_postfix_str(f"{running} {event['progress']:.0%}")
            else:
                checks.append(CheckResult(**event["result"]))
                bar.update()
        returncode = proc.wait()
    finally:
        timer.cancel()
        bar.close()
        reader.join(timeout=5)
    return checks, running, "".join(stderr_lines), returncode, killed.is_set()


def run_checks(
    path: str | Path, grid_step: float = 1.0, walks: int = 20, seed: int = 0, on_event=None
) -> list[CheckResult]:
    """The CARLA checks, in this process (a malformed file may crash it: use `validate_map`).
    ``on_event(name)`` is called before each check, ``on_event(result)`` after it, and
    ``on_event(fraction)`` as a long check progresses."""
    import carla

    text, info = read_xodr(path)
    results = []
    report = on_event or (lambda _: None)

    def timed(name, fn, *args):
        report(name)
        t0 = time.perf_counter()
        try:
            passed, summary, details = fn(*args)
        except RuntimeError as err:
            passed, summary, details = False, f"raised RuntimeError: {err}", []
        results.append(CheckResult(name, passed, summary, details[:MAX_DETAILS], time.perf_counter() - t0))
        report(results[-1])
        return passed

    holder = {}

    def parse():
        holder["map"] = carla.Map(Path(path).stem, text)
        return True, "carla.Map read it", []

    if not timed("parse", parse):
        return results
    cmap = holder["map"]
    waypoints = cmap.generate_waypoints(2.0)
    timed("waypoints", _check_waypoints, waypoints)
    timed("topology", _check_topology, cmap, waypoints, info)
    timed("grid", _check_grid, cmap, waypoints, grid_step, report)
    timed("next_walk", _check_next_walk, waypoints)
    timed("random_walks", _check_random_walks, waypoints, info, walks, seed)
    timed("landmarks", _check_landmarks, cmap, info)
    return results


def _xy(wp) -> tuple[float, float]:
    loc = wp.transform.location
    return loc.x, loc.y


def _finite(wp) -> bool:
    loc, rot = wp.transform.location, wp.transform.rotation
    return all(math.isfinite(v) for v in (loc.x, loc.y, loc.z, rot.yaw))


def _check_waypoints(waypoints):
    bad = [w for w in waypoints if not _finite(w)]
    if not waypoints:
        return False, "generate_waypoints(2.0) gave no waypoints", []
    details = [f"road {w.road_id} lane {w.lane_id} s={w.s:.1f}" for w in bad]
    return not bad, f"{len(waypoints)} waypoints, {len(bad)} with NaN", details


def _key(wp) -> tuple[int, int, int]:
    return wp.road_id, wp.section_id, wp.lane_id


def _at_map_edge(key, info: XodrInfo, exit_: bool) -> bool:
    """Whether a lane's exit (or entry) is an unlinked road end."""
    road, section, lane = key
    forward = lane < 0
    at_end = forward == exit_
    if at_end and section != info.section_counts.get(road, 1) - 1:
        return False
    if not at_end and section != 0:
        return False
    return (road, "end" if at_end else "start") in info.open_ends


def _lane_graph(cmap, waypoints, info: XodrInfo):
    import networkx as nx

    graph = nx.DiGraph()
    sample = {}
    for w in waypoints:
        sample.setdefault(_key(w), w)
    graph.add_nodes_from(sample)
    for a, b in cmap.get_topology():
        if _key(a) != _key(b):  # CARLA lists an unlinked lane as an edge from its start to its own end
            graph.add_edge(_key(a), _key(b))
    sinks = [n for n in graph if graph.out_degree(n) == 0]
    sources = [n for n in graph if graph.in_degree(n) == 0]
    for key, w in sample.items():  # lane changes allowed by the markings
        change = str(w.lane_change)
        for side, allowed in ((w.get_left_lane(), ("Left", "Both")), (w.get_right_lane(), ("Right", "Both"))):
            if (
                side is not None
                and change in allowed
                and str(side.lane_type) == "Driving"
                and (side.lane_id < 0) == (w.lane_id < 0)
                and _key(side) in graph
            ):
                graph.add_edge(key, _key(side))
    return graph, sinks, sources


def _check_topology(cmap, waypoints, info: XodrInfo):
    import networkx as nx

    graph, sinks, sources = _lane_graph(cmap, waypoints, info)
    dead_ends = [n for n in sinks if not _at_map_edge(n, info, exit_=True)]
    dead_starts = [n for n in sources if not _at_map_edge(n, info, exit_=False)]
    outside = ("outside",)
    for n in sinks:
        if _at_map_edge(n, info, exit_=True):
            graph.add_edge(n, outside)
    for n in sources:
        if _at_map_edge(n, info, exit_=False):
            graph.add_edge(outside, n)
    components = sorted(nx.strongly_connected_components(graph), key=len, reverse=True)
    details = [f"dead end: road {r} section {s} lane {l}" for r, s, l in dead_ends]
    details += [f"unreachable start: road {r} section {s} lane {l}" for r, s, l in dead_starts]
    details += [
        f"separate component of {len(c)} lanes, e.g. road/section/lane {min(c)}" for c in components[1:]
    ]
    passed = not dead_ends and not dead_starts and len(components) == 1
    summary = (
        f"{graph.number_of_nodes() - 1} lane segments, {len(dead_ends)} dead ends, "
        f"{len(dead_starts)} unreachable starts, {len(components)} strongly connected components"
    )
    return passed, summary, details


def _grid_points(waypoints, step: float):
    """Points of a ``step`` m grid within ``GRID_REACH`` m of a lane's edge around the waypoints:
    as many as the road area needs, however large the map's bounding box."""
    import numpy as np

    good = [w for w in waypoints if _finite(w)]
    xy = np.array([_xy(w) for w in good])
    reach = max(w.lane_width for w in good) / 2 + GRID_REACH
    r = math.ceil(reach / step)
    offsets = np.stack(np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1)), -1).reshape(-1, 2)
    offsets = offsets[np.hypot(*offsets.T) * step <= reach + step]
    cells = set()
    centres = np.rint(xy / step).astype(np.int64)
    for chunk in range(0, len(centres), 2048):
        near = (centres[chunk : chunk + 2048, None, :] + offsets[None]).reshape(-1, 2)
        cells.update(map(tuple, np.unique(near, axis=0).tolist()))
    return np.array(sorted(cells), dtype=float) * step


def _check_grid(cmap, waypoints, step: float, progress=lambda fraction: None):
    import carla

    if not any(_finite(w) for w in waypoints):
        return False, "no waypoint with a finite position to sample around", []
    points = _grid_points(waypoints, step)
    on_road, bad = 0, []
    every = max(len(points) // 50, 1)
    for i, (x, y) in enumerate(points):
        if i % every == 0:
            progress(i / len(points))
        loc = carla.Location(float(x), float(y), 0.0)
        try:
            wp = cmap.get_waypoint(loc, project_to_road=False)
        except RuntimeError as err:
            bad.append(f"({x:.1f}, {y:.1f}): RuntimeError {err}")
            continue
        if wp is None:
            continue
        on_road += 1
        if not _finite(wp):
            bad.append(f"({x:.1f}, {y:.1f}): NaN waypoint on road {wp.road_id} lane {wp.lane_id}")
    summary = f"{len(points)} points every {step:g} m near lanes, {on_road} on a lane, {len(bad)} bad"
    return not bad, summary, bad


def _step_problem(a, b) -> str | None:
    if not _finite(b):
        return "NaN position"
    (ax, ay), (bx, by) = _xy(a), _xy(b)
    dist = math.hypot(bx - ax, by - ay)
    turn = abs((b.transform.rotation.yaw - a.transform.rotation.yaw + 180.0) % 360.0 - 180.0)
    if dist > MAX_STEP:
        return f"2 m step moved {dist:.2f} m"
    if turn > MAX_TURN:
        return f"2 m step turned {turn:.0f} deg"
    return None


def _describe_step(a, b, problem: str) -> str:
    return (
        f"road {a.road_id} lane {a.lane_id} s={a.s:.1f} -> road {b.road_id} lane {b.lane_id} "
        f"s={b.s:.1f}: {problem}"
    )


def _check_next_walk(waypoints):
    starts = {}  # lane -> its first waypoint in driving direction (previous_until_lane_start can segfault)
    for w in waypoints:
        first = starts.setdefault(_key(w), w)
        if (w.s < first.s) == (w.lane_id < 0):
            starts[_key(w)] = w
    seen, bad, steps = set(), [], 0
    for start in starts.values():
        frontier = [(start, 0.0)]  # (waypoint, metres driven past the end of the start lane)
        while frontier:
            wp, beyond = frontier.pop()
            for nxt in wp.next(2.0):
                steps += 1
                problem = _step_problem(wp, nxt)
                if problem:
                    bad.append(_describe_step(wp, nxt, problem))
                    continue
                past = beyond + 2.0 if beyond or _key(nxt) != _key(start) else 0.0
                key = _key(nxt) + (round(nxt.s, 1),)
                if past <= 20.0 and key not in seen:
                    seen.add(key)
                    frontier.append((nxt, past))
    return not bad, f"{len(starts)} lane starts, {steps} steps, {len(bad)} bad", bad


def _check_random_walks(waypoints, info: XodrInfo, walks: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    bad, total = [], 0.0
    for k in range(walks):
        wp = waypoints[int(rng.integers(len(waypoints)))]
        travelled = 0.0
        while travelled < WALK_LENGTH:
            options = wp.next(2.0)
            if not options:
                if not _at_map_edge(_key(wp), info, exit_=True):
                    bad.append(
                        f"walk {k}: dead end after {travelled:.0f} m on road {wp.road_id} lane {wp.lane_id}"
                    )
                break
            nxt = options[int(rng.integers(len(options)))]
            problem = _step_problem(wp, nxt)
            if problem:
                bad.append(f"walk {k}: " + _describe_step(wp, nxt, problem))
                break
            wp, travelled = nxt, travelled + 2.0
        total += travelled
    return not bad, f"{walks} walks, {total:.0f} m driven, {len(bad)} failed", bad


def _check_landmarks(cmap, info: XodrInfo):
    found = {lm.id: lm.type for lm in cmap.get_all_landmarks()}
    missing = [
        f"signal {sid} (type {typ}) not found"
        for sid, typ in sorted(info.signals.items())
        if sid not in found
    ]
    wrong = [
        f"signal {sid}: type {found[sid]} instead of {typ}"
        for sid, typ in sorted(info.signals.items())
        if sid in found and found[sid] != typ
    ]
    kinds = {}
    for typ in found.values():
        kinds[typ] = kinds.get(typ, 0) + 1
    declared = f"{len(info.signals)} signal id{'' if len(info.signals) == 1 else 's'} declared"
    if info.signal_declarations != len(info.signals):
        declared += f" ({info.signal_declarations} declarations)"
    summary = f"{declared}, {len(found)} landmarks found {dict(sorted(kinds.items()))}"
    return not (missing or wrong or info.signal_problems), summary, info.signal_problems + missing + wrong


def _worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", required=True)
    parser.add_argument("--grid-step", type=float, default=1.0)
    parser.add_argument("--walks", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    def emit(event) -> None:  # one JSON line per event, flushed, so a crash still names its check
        if isinstance(event, str):
            line = {"running": event}
        elif isinstance(event, float):
            line = {"progress": event}
        else:
            line = {"result": asdict(event)}
        print(json.dumps(line), flush=True)

    run_checks(args.worker, args.grid_step, args.walks, args.seed, on_event=emit)


if __name__ == "__main__":
    _worker(sys.argv[1:])
