"""Reading an OpenDRIVE file safely: the XML checks that must pass before CARLA's reader sees it.

CARLA's reader crashes (segfault) or raises a bare C++ error on references it cannot resolve: a
``<controller>`` naming a signal no road declares, a lane link naming a lane the linked road lacks,
a junction connection naming a missing road (``_Map_base::at``), a road of zero length
(``s <= road->GetLength()``). Every loader — the road map and the map validation gate alike —
reads files through ``read_xodr``, which names the road or junction at fault instead.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from cardreamer.roadmap.errors import MapError


class MapFileError(MapError):
    """An OpenDRIVE file that cannot be read; the message names the file."""


@dataclass
class XodrInfo:
    """What the gate needs from the XML itself: open road ends, lane sections, declared signals."""

    open_ends: set[tuple[int, str]]  # (road id, "start"/"end") with no link
    section_counts: dict[int, int]
    signals: dict[str, str]  # signal id -> type (of its last declaration)
    signal_declarations: int  # <signal> elements, counting each repeat of a duplicated id
    signal_problems: list[str]  # duplicate ids (once each), positions off their road, missing types


def read_xodr(path: str | Path) -> tuple[str, XodrInfo]:
    """Read an OpenDRIVE file and check what CARLA's reader cannot survive; raises MapFileError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise MapFileError(f"{path}: cannot read OpenDRIVE file ({err})") from err
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise MapFileError(f"{path}: not well-formed XML ({err})") from None
    if root.tag != "OpenDRIVE":
        raise MapFileError(f"{path}: root element is <{root.tag}>, expected <OpenDRIVE>")
    roads = root.findall("road")
    if not roads:
        raise MapFileError(f"{path}: no <road> elements")
    by_id: dict[str, ET.Element] = {}
    for road in roads:
        try:
            int(road.get("id", ""))
        except ValueError:
            raise MapFileError(f"{path}: road id {road.get('id')!r} is not an integer") from None
        by_id[road.get("id")] = road
    problem = _reference_problem(root, by_id)
    if problem:
        raise MapFileError(f"{path}: {problem}")
    open_ends, sections, signals, problems = set(), {}, {}, []
    declared_on: dict[str, list[int]] = {}  # signal id -> road of each declaration
    for road in roads:
        road_id = int(road.get("id"))
        link = road.find("link")
        for tag, end in (("predecessor", "start"), ("successor", "end")):
            if link is None or link.find(tag) is None:
                open_ends.add((road_id, end))
        sections[road_id] = len(road.findall("lanes/laneSection"))
        length = float(road.get("length", "nan"))
        for sig in road.iterfind("signals/signal"):
            sid, s = sig.get("id", ""), float(sig.get("s", "nan"))
            declared_on.setdefault(sid, []).append(road_id)
            if not 0.0 <= s <= length:
                problems.append(f"signal {sid} at s={s:g} lies off road {road_id} (length {length:g})")
            if not sig.get("type"):
                problems.append(f"signal {sid} has no type")
            signals[sid] = sig.get("type", "")
    problems[:0] = [_duplicate_message(sid, on) for sid, on in declared_on.items() if len(on) > 1]
    for controller in root.iterfind("controller"):
        missing = [
            c.get("signalId") for c in controller.iterfind("control") if c.get("signalId") not in signals
        ]
        if missing:
            raise MapFileError(
                f"{path}: controller {controller.get('id')} names signals {missing} that no road declares "
                "(CARLA's reader would crash)"
            )
    return text, XodrInfo(
        open_ends=open_ends, section_counts=sections, signals=signals,
        signal_declarations=sum(map(len, declared_on.values())), signal_problems=problems,
    )


def _duplicate_message(sid: str, roads: list[int]) -> str:
    """'signal id 0 is declared 8 times (roads 3, 7, 12)': one line per duplicated id."""
    distinct = list(dict.fromkeys(roads))
    where = f"road {distinct[0]}" if len(distinct) == 1 else f"roads {', '.join(map(str, distinct))}"
    return f"signal id {sid} is declared {len(roads)} times ({where})"


def _lane_ids(section: ET.Element) -> set[int]:
    ids = set()
    for lane in section.iterfind("*/lane"):
        try:
            ids.add(int(lane.get("id", "")))
        except ValueError:
            pass
    return ids


def _reference_problem(root: ET.Element, roads: dict[str, ET.Element]) -> str | None:
    """The first road length, road link, lane link or junction reference CARLA cannot resolve."""
    junctions = {j.get("id") for j in root.iterfind("junction")}
    for road_id, road in roads.items():
        try:
            length = float(road.get("length", ""))
        except ValueError:
            length = math.nan
        if not length > 0 or not math.isfinite(length):
            return f"road {road_id} has length {road.get('length')!r}; a road needs a finite length > 0"
        sections = road.findall("lanes/laneSection")
        for section in sections:
            s = float(section.get("s", "0"))
            if not 0.0 <= s <= length:
                return f"road {road_id} has a lane section at s={s:g}, off the road (length {length:g})"
            if section.find("center/lane") is None:
                return f"road {road_id} has a lane section at s={s:g} without a center lane"
        for tag, end in (("predecessor", 0), ("successor", -1)):
            link = road.find(f"link/{tag}")
            target = None
            if link is not None:
                kind, other = link.get("elementType", "road"), link.get("elementId")
                if kind == "junction" and other not in junctions:
                    return f"road {road_id} has {tag} junction {other}, which the file does not declare"
                if kind == "road":
                    if other not in roads:
                        return f"road {road_id} has {tag} road {other}, which the file does not declare"
                    other_sections = roads[other].findall("lanes/laneSection")
                    if other_sections:
                        at_end = link.get("contactPoint", "start" if tag == "successor" else "end") == "end"
                        target = (f"road {other}", _lane_ids(other_sections[-1 if at_end else 0]))
            for k, section in enumerate(sections):
                inner = 0 <= k + (1 if end == -1 else -1) < len(sections)
                if inner:
                    where = "next" if end == -1 else "previous"
                    linked = (f"its {where} lane section", _lane_ids(sections[k + (1 if end == -1 else -1)]))
                elif k == (len(sections) - 1 if end == -1 else 0) and target is not None:
                    linked = target
                else:
                    continue
                for lane in section.iterfind("*/lane"):
                    ref = lane.find(f"link/{tag}")
                    if ref is None:
                        continue
                    try:
                        lane_ref = int(ref.get("id", ""))
                    except ValueError:
                        return f"road {road_id} lane {lane.get('id')} has {tag} lane id {ref.get('id')!r}"
                    if lane_ref not in linked[1]:
                        return (
                            f"road {road_id} lane {lane.get('id')} has {tag} lane {lane_ref}, "
                            f"which {linked[0]} does not have"
                        )
    for junction in root.iterfind("junction"):
        for connection in junction.iterfind("connection"):
            for role in ("incomingRoad", "connectingRoad"):
                other = connection.get(role)
                if other not in roads:
                    return (
                        f"junction {junction.get('id')} connection {connection.get('id')} names "
                        f"{role} {other}, which the file does not declare"
                    )
            incoming = _all_lane_ids(roads[connection.get("incomingRoad")])
            connecting = _all_lane_ids(roads[connection.get("connectingRoad")])
            for lane_link in connection.iterfind("laneLink"):
                for attr, road_id, ids in (
                    ("from", connection.get("incomingRoad"), incoming),
                    ("to", connection.get("connectingRoad"), connecting),
                ):
                    try:
                        lane = int(lane_link.get(attr, ""))
                    except ValueError:
                        lane = None
                    if lane not in ids:
                        return (
                            f"junction {junction.get('id')} connection {connection.get('id')} links "
                            f"lane {lane_link.get(attr)!r} of road {road_id}, which that road does not have"
                        )
    return None


def _all_lane_ids(road: ET.Element) -> set[int]:
    return set().union(*(_lane_ids(s) for s in road.iterfind("lanes/laneSection")))
