"""Reading an OpenDRIVE file safely: the XML checks that must pass before CARLA's reader sees it.

A ``<controller>`` naming a signal that no road declares crashes ``carla.Map`` (segfault), so every
loader — the road map and the map validation gate alike — reads files through ``read_xodr``.
"""
from __future__ import annotations

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
    signals: dict[str, str]  # signal id -> type
    signal_problems: list[str]  # duplicate ids, positions off their road


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
    open_ends, sections, signals, problems = set(), {}, {}, []
    for road in roads:
        try:
            road_id = int(road.get("id", ""))
        except ValueError:
            raise MapFileError(f"{path}: road id {road.get('id')!r} is not an integer") from None
        link = road.find("link")
        for tag, end in (("predecessor", "start"), ("successor", "end")):
            if link is None or link.find(tag) is None:
                open_ends.add((road_id, end))
        sections[road_id] = len(road.findall("lanes/laneSection"))
        length = float(road.get("length", "nan"))
        for sig in road.iterfind("signals/signal"):
            sid, s = sig.get("id", ""), float(sig.get("s", "nan"))
            if sid in signals:
                problems.append(f"signal id {sid} is declared twice")
            if not 0.0 <= s <= length:
                problems.append(f"signal {sid} at s={s:g} lies off road {road_id} (length {length:g})")
            if not sig.get("type"):
                problems.append(f"signal {sid} has no type")
            signals[sid] = sig.get("type", "")
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
        open_ends=open_ends, section_counts=sections, signals=signals, signal_problems=problems
    )
