"""``cardreamer task new NAME --from TASK``: write a commented task spec to start from.

The new file is self-contained: it holds every setting in which the source task differs from the
shared defaults (so it does not depend on how the source file was written), each section preceded
by comments that explain it and list the keys left at their defaults, the registered task parts,
reward terms, terminal settings, maps and observations. The file is validated before it is written.
"""
from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel

from cardreamer.atomic import write_atomic
from cardreamer.config import DEFAULTS_FILE, TaskSpec, build_config
from cardreamer.config_loading import ConfigError, SourcedConfig
from cardreamer.observer import DEFAULT_OBSERVATIONS
from cardreamer.roadmap import RoadMap, builtin_map_names, random_route

ALWAYS_SHOWN = {"name", "description", "map", "ego", "traffic", "lights", "desired_speed", "rewards", "terminal"}
"""Task keys written even when they equal their defaults: the ones a new author edits first."""

SECTION_ORDER = ("name", "description", "map", "ego", "traffic", "lights", "stop_signs", "parts",
                 "desired_speed", "rewards", "terminal")

SECTION_DOCS: dict[str, str] = {
    "name": "Task name: used in logs, the dataset index and the Gymnasium id you register.",
    "description": "One line shown by `cardreamer tasks` and in previews.",
    "parts": "Parts beyond the core ones (route, traffic, lights), each with its params; a part provides "
             "facts that reward terms and terminal settings need. Registered parts (add your own with "
             "@TASK_PARTS.register):\n{parts}",
    "map": "A built-in map ({maps}), a CARLA town name (with env.world.map_dir set), or a path to any "
           ".xodr file. `cardreamer map show MAP.xodr -o map.png` draws it with lane ids to pick coordinates.",
    "ego": "The ego vehicle. spawn: 'random' (any spawn point), {{x, y, yaw}} (CARLA metres, yaw in degrees; "
           "leave yaw out to face along the lane), or a list of such poses (one drawn per episode). route: "
           "'random' (a random drive of route_length m) or a list of [x, y] waypoints, each leg planned on "
           "the lane graph; the last waypoint is the goal.",
    "traffic": "Background traffic (count, behaviour) and flows: vehicles entering at a spawn pose whenever "
               "the gap behind the previous one (metres, drawn from [min, max]) is free, driving their route "
               "(or a random one) and leaving the world at its end.",
    "lights": "Traffic-light timings in seconds; a [min, max] pair is drawn per episode. red: null makes "
              "red last as long as the other approaches need.",
    "stop_signs": "Extra stop signs as [x, y] points on a lane (the stop line), for maps whose OpenDRIVE "
                  "has none there.",
    "desired_speed": "Speed (m/s) the speed reward aims for.",
    "rewards": "Reward terms and their scales (or {{scale: ..., <setting>: ...}} for a term with settings); "
               "the step reward is the sum, each term is reported as info['r_<term>']. Registered terms "
               "(add your own with @reward_term), with the facts they need beyond the route's:\n{terms}",
    "terminal": "When an episode ends (settings not given keep these defaults):\n{terminal}",
    "env": "Environment settings. observation.enabled lists what the agent sees; every entry can be tuned "
           "here (shape, obs_range, ...). Available: {observations}.",
}


class _SpecDumper(yaml.SafeDumper):
    """Flow style for lists of scalars (or of scalar lists, like points) and for small mappings of
    scalars (poses, light timings); block style for everything else."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    def flat(item: Any) -> bool:
        return not isinstance(item, (dict, list)) or (isinstance(item, list) and all(map(flat, item)))

    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=all(map(flat, data)))


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    small = len(data) <= 4 and not any(isinstance(v, (dict, list)) for v in data.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=small)


_SpecDumper.add_representer(list, _represent_list)
_SpecDumper.add_representer(dict, _represent_dict)


def _comment(text: str, indent: str = "") -> list[str]:
    lines = []
    for line in text.splitlines():
        lead = " " * (len(line) - len(line.lstrip()))
        wrapped = textwrap.wrap(line.strip(), width=100 - len(indent), subsequent_indent=lead + "  ") or [""]
        lines += [f"{indent}# {lead}{w}".rstrip() for w in wrapped]
    return lines


def _dump(key: str, value: Any, indent: str) -> list[str]:
    if isinstance(value, (dict, list)):
        text = yaml.dump({key: value}, Dumper=_SpecDumper, sort_keys=False, width=100)
    else:
        text = yaml.safe_dump({key: value}, default_flow_style=False, sort_keys=False, width=100)
    return [indent + line for line in text.rstrip("\n").splitlines()]


def _section(full: Any, changed: Any) -> Any:
    """A task section to write: its plain settings (empty lists left out), and nested sections only
    with the settings that differ from their defaults."""
    if not isinstance(full, dict):
        return changed if changed is not None else full
    changed = changed or {}
    return {k: changed[k] if isinstance(v, dict) else changed.get(k, v)
            for k, v in full.items() if (k in changed if isinstance(v, dict) else v != [])}


def _defaults_note(model: type[BaseModel], shown: dict, indent: str) -> list[str]:
    """A comment listing the fields of ``model`` not written out, with their defaults."""
    rest = [(name, f.default) for name, f in model.model_fields.items() if name not in shown]
    if not rest:
        return []
    parts = [f"{name}: {_short(default)}" for name, default in rest]
    return _comment("also available (defaults): " + ", ".join(parts), indent)


def _short(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "{...}"
    if isinstance(value, tuple):
        value = list(value)
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def _docs_context() -> dict[str, str]:
    from cardreamer.rewards import REWARD_TERMS, ROUTE_FACTS, terminal_defaults
    from cardreamer.task_runtime import TASK_PARTS

    def needs(facts: frozenset[str]) -> str:
        extra = sorted(facts - ROUTE_FACTS)
        return f" [needs {', '.join(extra)}]" if extra else ""

    terms = "\n".join(f"  {name}: {term.doc}{needs(term.needs)}" for name, term in REWARD_TERMS.items())
    parts = "\n".join(f"  {name}: {(cls.__doc__ or '').strip().splitlines()[0]} [provides "
                      f"{', '.join(sorted(cls.provides)) or 'no facts'}]" for name, cls in TASK_PARTS.items())
    terminal = "\n".join(f"  {k}: {_short(v)}" for k, v in terminal_defaults().items())
    return {"maps": ", ".join(builtin_map_names()), "terms": terms, "parts": parts, "terminal": terminal,
            "observations": ", ".join(DEFAULT_OBSERVATIONS)}


def _example_flow(road_map: RoadMap) -> list[str]:
    """A commented-out flow on this map (a real spawn point and a reachable goal), to copy from."""
    points = road_map.spawn_points()
    i = len(points.xy) // 3
    route = random_route(road_map, np.random.default_rng(0), int(points.lane[i]), float(points.s[i]), 80.0)
    (x, y), (gx, gy) = points.xy[i], route.points[-1]
    return _comment("flows:\n"
                    f"  - spawn: {{x: {x:.1f}, y: {y:.1f}}}\n"
                    f"    route: [[{gx:.1f}, {gy:.1f}]]\n"
                    "    gap: [10, 25]      # metres to the previous vehicle, drawn per vehicle\n"
                    "    speed: 6.0         # entry speed, m/s\n"
                    "    behavior: {desired_speed: [5, 8], ignore_lights: false}", "    ")


def _env_diff(data: dict, base: dict) -> dict:
    """The entries of ``data`` that differ from ``base`` (recursively)."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            sub = _env_diff(value, base[key])
            if sub:
                out[key] = sub
        elif key not in base or base[key] != value:
            out[key] = value
    return out


def render_spec(name: str, source: str | Path) -> str:
    """The commented YAML text of a new task ``name`` derived from task ``source``."""
    config, sourced = build_config(source)
    base = SourcedConfig()
    base.merge({"env": {"observation": DEFAULT_OBSERVATIONS}}, "built-in observation defaults")
    base.merge_file(DEFAULTS_FILE)
    spec = config.task
    full = spec.model_dump(mode="json")
    changed = spec.model_dump(mode="json", exclude_defaults=True)
    task = {key: _section(full[key], changed.get(key)) for key in full if key in changed or key in ALWAYS_SHOWN}
    task["name"] = name
    task["description"] = f"{spec.description} (started from {spec.name})".strip() if spec.description \
        else f"Started from {spec.name}."
    docs = _docs_context()
    road_map = RoadMap.load(spec.map, config.env.world.map_dir)

    lines = [f"# Task {name!r}, started from {spec.name!r} with `cardreamer task new`.",
             ("# Check it with `cardreamer task validate FILE`, look at it with `cardreamer task preview FILE -o "
             "scene.png`,"),
             ("# run it with `cardreamer run --task FILE --policy expert`. Positions are CARLA metres: x right, "
             "y down seen from above."),
             *(_dump("plugins", [module for module, _ in sourced.plugins], "") if sourced.plugins else []),
             "task:"]
    ordered = [k for k in SECTION_ORDER if k in task] + [k for k in task if k not in SECTION_ORDER]
    for key in ordered:
        doc = SECTION_DOCS.get(key)
        if doc:
            lines += _comment(doc.format(**docs), "  ")
        lines += _dump(key, task[key], "  ")
        field = TaskSpec.model_fields[key]
        model = field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) \
            else None
        if model is not None:
            lines += _defaults_note(model, task[key], "    ")
        if key == "traffic" and not task[key].get("flows"):
            lines += _comment("Example flow on this map (uncomment under traffic to use it):", "    ")
            lines += _example_flow(road_map)
        lines.append("")
    if "stop_signs" not in task:
        lines += _comment(SECTION_DOCS["stop_signs"], "  ") + _comment("stop_signs: [[x, y], ...]", "  ") + [""]
    env = _env_diff(sourced.data.get("env", {}), base.data.get("env", {}))
    env.setdefault("observation", {})["enabled"] = config.env.observation["enabled"]
    lines += _comment(SECTION_DOCS["env"].format(**docs))
    lines += _dump("env", env, "")
    return "\n".join(lines) + "\n"


def scaffold_task(name: str, source: str | Path, out: str | Path | None = None, force: bool = False) -> Path:
    """Write the spec of a new task ``name`` from task ``source`` to ``out`` (default ``NAME.yaml``)
    atomically, validate it, and return its path."""
    from task_dev_suite.task_validation import validate_task

    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"task name {name!r} must be letters, digits, '_' or '-'")
    path = Path(out) if out is not None else Path(f"{name}.yaml")
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; choose another -o path or pass --force to overwrite it")
    text = render_spec(name, source)
    with tempfile.TemporaryDirectory() as folder:  # validated before it is written
        draft = Path(folder) / f"{name}.yaml"
        draft.write_text(text, encoding="utf-8")
        report = validate_task(draft)
    if not report.ok:
        raise ConfigError(f"the spec derived from {source!r} does not validate:\n{report.format()}")
    write_atomic(path, text)
    return path
