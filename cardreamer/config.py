"""The configuration schema of an env: world backend, actions, observations, task.

A run's configuration is built from ``configs/defaults.yaml``, then the task's YAML file, then an
optional ``config`` mapping laid out like a task file, then dotted command-line overrides, and
validated here with pydantic. Errors name the file, line, dotted key and the nearest valid keys.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from cardreamer.config_loading import ConfigError, SourcedConfig, nearest_hint, short_repr
from cardreamer.registry import Registry

if TYPE_CHECKING:
    from cardreamer.world.slot import EnvSlot

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULTS_FILE = CONFIG_DIR / "defaults.yaml"


class Strict(BaseModel):
    """Unknown keys, NaN and infinities are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _ordered(pair: tuple[float, float]) -> tuple[float, float]:
    if pair[0] > pair[1]:
        raise PydanticCustomError("config", "{message}", {"message": f"[{pair[0]}, {pair[1]}] must be [min, max] "
                                                                     f"with min <= max"})
    return pair


NonNegative = Annotated[float, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Interval = Annotated[tuple[float, float], AfterValidator(_ordered)]
"""A [min, max] pair."""
NonNegativeInterval = Annotated[tuple[NonNegative, NonNegative], AfterValidator(_ordered)]
PositiveInterval = Annotated[tuple[PositiveFloat, PositiveFloat], AfterValidator(_ordered)]
Port = Annotated[int, Field(ge=0, le=65535)]


def config_error(loc: tuple[str | int, ...], message: str, value: Any = None) -> InitErrorDetails:
    """A validation error at ``loc`` (relative to the value being validated) with a message of our own."""
    return InitErrorDetails(type=PydanticCustomError("config", "{message}", {"message": message}), loc=loc, input=value)


def relocated(exc: ValidationError, prefix: tuple[str | int, ...], valid: list[str],
              noun: str = "key") -> list[InitErrorDetails]:
    """The errors of a nested validation, moved under ``prefix``; unknown keys name the valid ones."""
    errors = []
    for err in exc.errors():
        loc = (*prefix, *err["loc"])
        if err["type"] == "extra_forbidden":
            name = str(err["loc"][-1])
            errors.append(config_error(loc, f"unknown {noun} {name!r}{nearest_hint(name, valid)}"))
        else:
            errors.append(InitErrorDetails(type=err["type"], loc=loc, input=err["input"], ctx=err.get("ctx", {})))
    return errors


def keyed(value: Any, registry: Registry[Any], model_of: Callable[[Any], type[BaseModel] | TypeAdapter],
          raw_of: Callable[[Any], Any] = lambda raw: raw) -> dict[str, Any]:
    """A mapping keyed by a registry's names (reward terms, terminal settings, task parts), each
    value (``raw_of(value)``) validated by the model or adapter ``model_of(registered)``; all
    problems reported at once, unknown keys with the nearest valid ones."""
    if not isinstance(value, dict):
        raise ValidationError.from_exception_data(registry.kind, [config_error(
            (), f"must be a mapping of {registry.plural} to their settings", value)])
    out, errors = {}, []
    for name, raw in value.items():
        if name not in registry:
            errors.append(config_error((name,), f"unknown {registry.kind} {str(name)!r}"
                                                 f"{nearest_hint(str(name), registry.names(), registry.plural)}"))
            continue
        model = model_of(registry[name])
        try:
            out[name] = model.validate_python(raw_of(raw)) if isinstance(model, TypeAdapter) else \
                model.model_validate(raw_of(raw))
        except ValidationError as exc:
            errors.extend(relocated(exc, (name,), [] if isinstance(model, TypeAdapter) else list(model.model_fields)))
    if errors:
        raise ValidationError.from_exception_data(registry.kind, errors)
    return out


def _rewards(value: Any) -> dict[str, BaseModel]:
    """``task.rewards``: each term's scale, or ``{scale: ..., <its params>}``."""
    from cardreamer.rewards import REWARD_TERMS

    return keyed(value, REWARD_TERMS, lambda term: term.settings, lambda raw: raw if isinstance(raw, dict) else
                 {"scale": raw})


def _terminal(value: Any) -> dict[str, Any]:
    """``task.terminal``: each setting's value, of the type it was registered with."""
    from cardreamer.rewards import TERMINAL_SETTINGS

    return keyed(value, TERMINAL_SETTINGS, lambda setting: _adapter(setting.type))


_ADAPTERS: dict[Any, TypeAdapter] = {}


def _adapter(type_: Any) -> TypeAdapter:
    if type_ not in _ADAPTERS:
        _ADAPTERS[type_] = TypeAdapter(type_, config=ConfigDict(allow_inf_nan=False))
    return _ADAPTERS[type_]


CORE_SECTIONS = {"lights": "lights", "route": "ego", "traffic": "traffic"}
"""The core parts of every task and the task section that configures each."""


def _parts(value: Any) -> dict[str, BaseModel]:
    """``task.parts``: each part's params (null or {} for its defaults)."""
    from cardreamer.task_runtime import TASK_PARTS

    if isinstance(value, dict) and any(name in CORE_SECTIONS for name in value):
        raise ValidationError.from_exception_data("parts", [config_error(
            (name,), f"{name!r} is a core part of every task; configure it with task.{CORE_SECTIONS[name]}")
            for name in value if name in CORE_SECTIONS])
    return keyed(value, TASK_PARTS, lambda cls: cls.Params, lambda raw: {} if raw is None else raw)


def _dump_rewards(rewards: dict[str, BaseModel]) -> dict[str, Any]:
    """A rewards mapping as a task file writes it: the scale alone where the params are defaults."""
    out = {}
    for name, setting in rewards.items():
        params = setting.model_dump(mode="json", exclude_defaults=True)
        out[name] = setting.scale if set(params) <= {"scale"} else params
    return out


# ----------------------------------------------------------------------------- env
class CarlaServer(Strict):
    """Where the CARLA servers are: ``servers`` of them on ``port``, ``port + port_stride``, … (one per env)."""

    host: str = "127.0.0.1"
    port: Port = 2000
    servers: int = Field(1, ge=1)
    port_stride: int = Field(3, ge=3)  # a server on P also uses P+1 and P+2
    timeout: PositiveFloat = 10.0
    tm_port: Port = 0  # 0: choose a free port
    launch_command: str | None = None  # "{port}" in it stands for the env's server port
    restart_client_every: int = Field(1000, ge=0)  # resets; a fresh client (worker) empties libcarla's actor cache
    restart_server_every: int = Field(0, ge=0)     # resets; relaunch the server (leaks of sensors); needs launch_command
    isolate: bool = True  # the client, its Traffic Manager and sensors in a worker process: a server crash is WorldLost

    @model_validator(mode="after")
    def _ports(self) -> CarlaServer:
        last = self.ports()[-1]
        if last + 2 > 65535:
            raise ValueError(f"servers={self.servers} from port {self.port} every {self.port_stride} reach port "
                             f"{last + 2} (the last server uses P..P+2); the highest is 65535")
        if self.restart_server_every and not self.launch_command:
            raise ValueError(f"restart_server_every={self.restart_server_every} needs launch_command, the command "
                             f"that starts the server again")
        if self.servers > 1 and self.launch_command and "{port}" not in self.launch_command:
            raise ValueError(f"launch_command {self.launch_command!r} has no {{port}}, so all {self.servers} servers "
                             f"would be relaunched on one port; write e.g. '... -carla-rpc-port={{port}}'")
        return self

    def restart_due(self, resets: int) -> tuple[bool, bool]:
        """(a fresh client, and a relaunched server) before reset number ``resets`` (1, 2, ...)?"""
        server = bool(self.restart_server_every) and resets % self.restart_server_every == 0
        client = server or (bool(self.restart_client_every) and resets % self.restart_client_every == 0)
        return client, server

    def ports(self) -> list[int]:
        """The RPC port of each server."""
        return [self.port + k * self.port_stride for k in range(self.servers)]

    def for_env(self, slot: EnvSlot) -> CarlaServer:
        """The one server of env ``slot`` (its port, its ``launch_command``); refuses a run with more envs than servers."""
        if slot.count > self.servers:
            ports = ", ".join(str(self.port + k * self.port_stride) for k in range(slot.count))
            raise ConfigError(
                f"env.world.carla.servers={self.servers}, but this run has {slot.describe()}, and each needs a CARLA "
                f"server of its own (two worlds on one server see each other's vehicles and tick each other's Traffic "
                f"Manager): set env.world.carla.servers={slot.count} and start them on ports {ports} "
                f"(`cardreamer carla start --servers {slot.count} --port {self.port}`)"
                + (", or train without evaluation (run.eval_every=0)" if slot.evaluation else ""))
        port = self.ports()[slot.index]
        command = self.launch_command.replace("{port}", str(port)) if self.launch_command else None
        return self.model_copy(update={"port": port, "servers": 1, "launch_command": command})


class WorldConfig(Strict):
    backend: Literal["embedded", "carla", "auto"] = "embedded"
    map_dir: str | None = None
    dt: float = Field(0.1, gt=0, le=1.0)
    carla: CarlaServer = CarlaServer()


class ActionConfig(Strict):
    discrete: bool = True
    discrete_acc: list[float] = Field([-2.0, 0.0, 2.0], min_length=1)
    discrete_steer: list[float] = Field([-0.6, -0.2, 0.0, 0.2, 0.6], min_length=1)
    acc_range: Interval = (-3.0, 3.0)
    steer_range: Interval = (-1.0, 1.0)


REMOVED_DISPLAY = ("removed: the env no longer publishes to the visualizer itself; use `cardreamer train --serve`, "
                   "`cardreamer run --url URL` or `cardreamer drive`, or wrap the env in "
                   "visualization.wrapper.LiveDisplay(env, url=...)")
"""The message for the ``env.display`` section of older configs."""


class EnvConfig(Strict):
    world: WorldConfig = WorldConfig()
    action: ActionConfig = ActionConfig()
    observation: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _no_display(cls, value: Any) -> Any:
        if isinstance(value, dict) and "display" in value:
            raise ValidationError.from_exception_data("env", [config_error(("display",), REMOVED_DISPLAY)])
        return value

    @field_validator("observation")
    @classmethod
    def _observations(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Every entry against its handler's config, and ``enabled`` against the entries."""
        errors = observation_errors(value)
        if errors:
            raise ValidationError.from_exception_data("observation", errors)
        return value


def observation_errors(entries: dict[str, Any]) -> list[InitErrorDetails]:
    """Problems of an ``env.observation`` section, located relative to it."""
    from cardreamer.observer import get_handler, registered_handlers

    handlers = registered_handlers()
    names = [name for name in entries if name != "enabled"]
    errors = []
    for name in names:
        raw = entries[name]
        if not isinstance(raw, dict):
            errors.append(config_error((name,), "must be a mapping of handler settings", raw))
            continue
        handler = raw.get("handler", name)
        if handler not in handlers:
            if "handler" in raw:
                errors.append(config_error((name, "handler"), f"unknown handler {handler!r}"
                                                              f"{nearest_hint(handler, handlers, 'handlers')}"))
            else:
                errors.append(config_error((name,), f"unknown observation {name!r}"
                                                    f"{nearest_hint(name, [n for n in names if n != name], 'observations')}"
                                                    f"; a new one needs handler: one of {', '.join(handlers)}"))
            continue
        config_cls = get_handler(handler).Config
        try:
            config_cls.model_validate({**raw, "handler": handler})
        except ValidationError as exc:
            errors.extend(relocated(exc, (name,), list(config_cls.model_fields)))
    enabled = entries.get("enabled")
    if not isinstance(enabled, list) or not enabled or not all(isinstance(n, str) for n in enabled):
        return [*errors, config_error(("enabled",), "must be a non-empty list of observation names, "
                                                    "e.g. [birdeye_wpt]", enabled)]
    for i, name in enumerate(enabled):
        if name not in names:
            errors.append(config_error(("enabled", i), f"unknown observation {name!r}"
                                                       f"{nearest_hint(name, names, 'observations')}"))
        elif name in enabled[:i]:
            errors.append(config_error(("enabled", i), f"observation {name!r} is enabled twice"))
    return errors


# ----------------------------------------------------------------------------- task
class PoseSpec(Strict):
    """A pose in CARLA coordinates; yaw in degrees (as CARLA writes it)."""

    x: float
    y: float
    yaw: float | None = None  # None: the lane's heading at (x, y)


class BehaviorSpec(Strict):
    desired_speed: NonNegative | NonNegativeInterval = 8.0  # m/s, or a [min, max] range drawn per vehicle
    ignore_lights: bool = False
    ignore_signs: bool = False
    ignore_vehicles: bool = False
    auto_lane_change: bool = True
    min_gap: NonNegative = 2.5
    time_headway: NonNegative = 1.2
    politeness: float = Field(0.3, ge=0, le=1)


class EgoSpec(Strict):
    spawn: Literal["random"] | PoseSpec | list[PoseSpec] = "random"
    route: Literal["random"] | list[tuple[float, float]] = "random"
    route_length: float = Field(300.0, gt=10)
    speed: NonNegative = 0.0


class FlowSpec(Strict):
    """Vehicles entering at ``spawn`` whenever the gap behind the last one is large enough."""

    spawn: PoseSpec
    route: Literal["random"] | list[tuple[float, float]] = "random"
    gap: NonNegativeInterval = (10.0, 20.0)  # metres between consecutive vehicles, drawn per vehicle
    speed: NonNegative = 6.0
    behavior: BehaviorSpec = BehaviorSpec(auto_lane_change=False)
    max_vehicles: int = Field(30, ge=0)


class TrafficSpec(Strict):
    background: int = Field(0, ge=0)
    behavior: BehaviorSpec = BehaviorSpec()
    exclude_radius: NonNegative = 20.0  # keep background spawns this far from the ego
    near_ego: float | None = Field(None, gt=0)  # spawn background only within this many metres of the ego
    flows: list[FlowSpec] = []


class LightSpec(Strict):
    green: PositiveFloat | PositiveInterval = 10.0
    yellow: NonNegative = 3.0
    red: PositiveFloat | PositiveInterval | None = None


class TaskSpec(Strict):
    name: str = Field(min_length=1)
    description: str = ""
    map: str
    ego: EgoSpec = EgoSpec()
    traffic: TrafficSpec = TrafficSpec()
    lights: LightSpec = LightSpec()
    stop_signs: list[tuple[float, float]] = []
    desired_speed: float = Field(6.0, gt=0)
    parts: Annotated[dict[str, Any], BeforeValidator(_parts)] = {}  # part name: its params (cardreamer.task_runtime)
    rewards: Annotated[dict[str, Any], BeforeValidator(_rewards), PlainSerializer(_dump_rewards)] = {}
    terminal: Annotated[dict[str, Any], BeforeValidator(_terminal)] = {}

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        """``logic:`` and ``params:`` (before task parts) get one line saying how to write them now."""
        if isinstance(data, dict) and ("logic" in data or "params" in data):
            key = "logic" if "logic" in data else "params"
            raise ValidationError.from_exception_data("task", [config_error((key,), migration_hint(data))])
        return data

    @model_validator(mode="after")
    def _facts(self) -> TaskSpec:
        """Every reward term and enabled terminal setting is fed by a part; parts accept the spec."""
        errors = fact_errors(self)
        if errors:
            raise ValidationError.from_exception_data("task", errors)
        return self


MOVED_TO_TERMS = {"out_of_lane_threshold": ("out_of_lane", "threshold"),
                  "stay_in_lane_distance": ("stay_in_lane", "distance"),
                  "early_lane_change_distance": ("early_lane_change", "distance"),
                  "follow_gap": ("following_distance", "gap")}
"""Old ``params:`` keys that are now settings of a reward term: (term, setting)."""


def migration_hint(data: dict) -> str:
    """The one-line replacement of a task's old ``logic:`` / ``params:`` keys."""
    from cardreamer.task_runtime import TASK_PARTS

    logic = data.get("logic", "route")
    params = data.get("params") if isinstance(data.get("params"), dict) else {}
    cls = TASK_PARTS.get(logic) if isinstance(logic, str) else None
    fields = cls.Params.model_fields if cls is not None else {}

    def flow(value: Any) -> str:
        text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000)
        return text.strip().removesuffix("...").strip()  # a scalar's dump ends the document

    steps = [f"write parts: {flow({logic: {k: v for k, v in params.items() if k in fields}})}"] if cls else []
    steps += [f"write rewards: {{{term}: {{scale: <its scale>, {setting}: {flow(params[old])}}}}}"
              for old, (term, setting) in MOVED_TO_TERMS.items() if old in params]
    rest = [k for k in params if k not in fields and k not in MOVED_TO_TERMS]
    if rest:
        steps.append(f"drop {', '.join(map(str, rest))} (no part reads {'it' if len(rest) == 1 else 'them'})")
    if not steps:
        steps = ["drop them" if logic == "route" else f"{logic!r} is no registered part"]
    return (f"'logic:' and 'params:' were replaced by 'parts:', each part with its own params: {'; '.join(steps)} "
            f"(see docs/authoring.md)")


def fact_errors(spec: TaskSpec) -> list[InitErrorDetails]:
    """Reward terms and enabled terminal settings whose facts no part of ``spec`` provides, and
    the parts' own objections to the spec; located relative to the task."""
    from cardreamer.rewards import REWARD_TERMS, TERMINAL_SETTINGS, enabled
    from cardreamer.task_runtime import TASK_PARTS, provided_facts

    provided = provided_facts(spec)
    needed = [(("rewards", name), f"reward term {name!r}", REWARD_TERMS[name].needs) for name in spec.rewards]
    needed += [(("terminal", name), f"terminal setting {name!r}", TERMINAL_SETTINGS[name].needs)
               for name, value in spec.terminal.items() if enabled(value)]
    errors = []
    for loc, what, needs in needed:
        missing = sorted(needs - provided.keys())
        if not missing:
            continue
        givers = sorted(name for name, cls in TASK_PARTS.items() if set(missing) <= cls.provides)
        fix = (f"; add parts: {{{givers[0]}: {{}}}}" if len(givers) == 1 else
               f"; add one of the parts {', '.join(givers)}" if givers else "; no registered part provides it")
        errors.append(config_error(loc, f"{what} needs {'fact' if len(missing) == 1 else 'facts'} "
                                        f"{', '.join(missing)}, which no part of this task provides{fix}"))
    for name, params in spec.parts.items():
        errors += [config_error(loc, message) for loc, message in TASK_PARTS[name].spec_errors(spec, params)]
    return errors


class Config(Strict):
    env: EnvConfig = EnvConfig()
    task: TaskSpec


# ----------------------------------------------------------------------------- building
def validate(sourced: SourcedConfig) -> Config:
    """Validate a merged configuration; every problem is reported at once with its position."""
    try:
        config = Config.model_validate(sourced.data)
    except ValidationError as exc:
        raise format_validation_error(exc, sourced) from None
    return config


def format_validation_error(exc: ValidationError, sourced: SourcedConfig) -> ConfigError:
    """One line per problem: ``where: dotted.key: what is wrong``; a header only when there are several."""
    found = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not _is_union_tag(p)]
        if err["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            message = f"unknown key {loc[-1]!r}{nearest_hint(loc[-1], sorted(parent.model_fields) if parent else [])}"
        elif err["type"] == "missing":
            message = f"item {loc[-1]} is missing" if loc[-1].isdigit() else "required, but missing"
        elif err["type"] == "config":
            message = err["msg"]
        else:
            message = f"{err['msg']} (got {short_repr(err['input'])})"
        found.append((".".join(loc), message, (len(loc), not err["type"].endswith("_type"))))
    problems = {}
    for dotted, message, score in found:  # a value no member of a union takes fails in each of them:
        if dotted in problems or any(  # report the member that got furthest (deepest, not a mere type mismatch)
                (other == dotted or other.startswith(dotted + ".")) and other_score > score
                for other, _, other_score in found):
            continue
        problems[dotted] = (sourced.where(dotted), dotted, message)
    lines = [f"{where}: {key}: {message}" for where, key, message in problems.values()]
    if len(lines) > 1:
        lines = [f"invalid configuration ({len(lines)} problems):", *(f"  {line}" for line in lines)]
    return ConfigError("\n".join(lines), tuple(problems.values()))


def _is_union_tag(part: str | int) -> bool:
    """Whether a pydantic error location part names a union member (``float``, ``PoseSpec``,
    ``constrained-float``, ``function-after[...]``) rather than a config key."""
    return isinstance(part, str) and (any(c in part for c in "[-") or part[:1].isupper()
                                      or part in ("float", "int", "str", "bool", "none"))


def _model_at(path: list[str]) -> type[BaseModel] | None:
    model: Any = Config
    for part in path:
        if part.isdigit():
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        model = _model_of(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def merge_config(task: str | Path, overrides: list[str] | None = None,
                 config: Mapping[str, Any] | None = None) -> SourcedConfig:
    """The raw configuration of a task: built-in observation defaults, ``configs/defaults.yaml``,
    the task file (with its ``extends:`` chain, which also finds the built-in tasks), the ``config``
    mapping (laid out like a task file; its keys' errors say ``config:``), and the overrides; the
    plugins the task files and ``config`` name are imported, so their parts and terms validate."""
    import cardreamer.tasks  # noqa: F401  (registers the built-in parts, reward terms and terminal settings)
    from cardreamer.observer import DEFAULT_OBSERVATIONS
    from cardreamer.plugins import load_plugins
    from cardreamer.task_registry import TASK_DIR, task_file

    sourced = SourcedConfig()
    sourced.merge({"env": {"observation": DEFAULT_OBSERVATIONS}}, "built-in observation defaults")
    sourced.merge_file(DEFAULTS_FILE)
    sourced.merge_file(task_file(task), extends_dirs=(TASK_DIR,))
    if config is not None:
        merge_mapping(sourced, config)
    sourced.apply_overrides(overrides or [])
    for module, where in sourced.plugins:
        try:
            load_plugins([module])
        except ConfigError as exc:
            raise ConfigError.at(where, "plugins", str(exc)) from None
    return sourced


CONFIG_SOURCE = "config"
"""How errors name a key that came from a ``config`` mapping (``gymnasium.make(id, config={...})``)."""


def merge_mapping(sourced: SourcedConfig, config: Mapping[str, Any]) -> None:
    """Merge a nested mapping laid out like a task file (``task:``, ``env:``, ``plugins:``; a
    ``.py`` plugin path is relative to the working directory) over ``sourced``."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"{CONFIG_SOURCE}: must be a mapping like a task file ({{'task': {{...}}, 'env': {{...}}}}), "
                          f"got {short_repr(config)}")
    data = dict(config)
    if "extends" in data:
        raise ConfigError.at(CONFIG_SOURCE, "extends", "a config mapping builds on the task it is given with; "
                                                       "choose the base task with task= (or the env id) instead")
    modules = data.pop("plugins", [])
    if not isinstance(modules, list) or not all(isinstance(m, str) and m for m in modules):
        raise ConfigError.at(CONFIG_SOURCE, "plugins", f"must be a list of module names or .py paths, "
                                                       f"got {short_repr(modules)}")
    for module in modules:
        spec = str(Path(module).resolve()) if module.endswith(".py") else module
        if spec not in (known for known, _ in sourced.plugins):
            sourced.plugins.append((spec, CONFIG_SOURCE))
    sourced.merge(data, CONFIG_SOURCE)


def recorded_config(data: Mapping[str, Any], where: str, overrides: list[str] | None = None) -> Config:
    """A configuration recorded as plain data (``Config.model_dump(mode="json")``, e.g. a run
    directory's ``env.task_config``) with dotted ``overrides`` on top, validated again; errors name
    ``where`` or the override."""
    import cardreamer.tasks  # noqa: F401  (registers the built-in parts, reward terms and terminal settings)

    sourced = SourcedConfig()
    sourced.merge(dict(data), where)
    sourced.apply_overrides(overrides or [])
    return validate(sourced)


def build_config(task: str | Path, overrides: list[str] | None = None,
                 config: Mapping[str, Any] | None = None) -> tuple[Config, SourcedConfig]:
    """A task's configuration, validated (the one pipeline of the env, the validator and the CLI)."""
    sourced = merge_config(task, overrides, config)
    return validate(sourced), sourced
