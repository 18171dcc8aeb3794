"""The configuration schema of an env: world backend, actions, observations, task.

A run's configuration is built from ``configs/defaults.yaml``, then the task's YAML file, then
dotted command-line overrides, and validated here with pydantic. Errors name the file, line,
dotted key and the nearest valid keys.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from typing_extensions import TypedDict

from cardreamer.config_loading import ConfigError, SourcedConfig, nearest_hint, short_repr

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


@dataclass(frozen=True)
class Registered:
    """Validator of a dict keyed by a registry (reward terms, terminal settings), each key with its type.

    ``types()`` is read at validation time, so keys registered by task modules are accepted. The
    value stays a plain dict of the keys given.
    """

    noun: str
    types: Callable[[], dict[str, Any]]
    _adapters: dict[tuple[str, ...], TypeAdapter] = field(default_factory=dict, compare=False, repr=False)

    def __call__(self, value: Any, handler: Callable[[Any], Any]) -> dict[str, Any]:
        types = self.types()
        adapter = self._adapters.get(tuple(types))
        if adapter is None:
            typed = TypedDict(f"{self.noun}s", types, total=False)  # type: ignore[misc]
            typed.__pydantic_config__ = ConfigDict(extra="forbid", allow_inf_nan=False)  # type: ignore[attr-defined]
            adapter = self._adapters[tuple(types)] = TypeAdapter(typed)
        try:
            return dict(adapter.validate_python(value))
        except ValidationError as exc:
            raise ValidationError.from_exception_data(self.noun, relocated(exc, (), sorted(types), self.noun)) from None


def _reward_types() -> dict[str, Any]:
    from cardreamer.rewards import REWARD_TERMS

    return dict.fromkeys(REWARD_TERMS, float)


TERMINAL_TYPES: dict[str, Any] = {
    "time_limit": Annotated[StrictInt, Field(ge=1)],
    "collision": StrictBool,
    "out_of_lane": PositiveFloat | None,
    "off_road": StrictBool,
    "stall_time": PositiveFloat | None,
    "destination": StrictBool,
}
"""Types of the built-in ``task.terminal`` settings; settings registered by task modules take the
type of their default."""


def _terminal_types() -> dict[str, Any]:
    from cardreamer.rewards import TERMINAL_DEFAULTS

    like = {bool: StrictBool, int: StrictInt, float: float, str: str}
    return {name: TERMINAL_TYPES.get(name, like.get(type(default), Any)) for name, default in TERMINAL_DEFAULTS.items()}


# ----------------------------------------------------------------------------- env
class CarlaServer(Strict):
    host: str = "127.0.0.1"
    port: Port = 2000
    timeout: PositiveFloat = 10.0
    tm_port: Port = 0  # 0: choose a free port
    launch_command: str | None = None
    isolate: bool = True  # the client, its Traffic Manager and sensors in a worker process: a server crash is WorldLost


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
    seed_offset: int = 0


class LightSpec(Strict):
    green: PositiveFloat | PositiveInterval = 10.0
    yellow: NonNegative = 3.0
    red: PositiveFloat | PositiveInterval | None = None


class TaskSpec(Strict):
    name: str = Field(min_length=1)
    description: str = ""
    logic: str = "route"  # registered task logic (cardreamer.task_logic)
    map: str
    ego: EgoSpec = EgoSpec()
    traffic: TrafficSpec = TrafficSpec()
    lights: LightSpec = LightSpec()
    stop_signs: list[tuple[float, float]] = []
    desired_speed: float = Field(6.0, gt=0)
    rewards: Annotated[dict[str, float], WrapValidator(Registered("reward term", _reward_types))] = {}
    terminal: Annotated[dict[str, Any], WrapValidator(Registered("terminal setting", _terminal_types))] = {}
    params: dict[str, Any] = {}  # task-logic specific settings


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


def load_config(task_file: str | Path, overrides: list[str] | None = None) -> tuple[Config, SourcedConfig]:
    """Defaults + task YAML + overrides, validated. Returns the model and the merged raw config."""
    sourced = SourcedConfig()
    sourced.merge_file(DEFAULTS_FILE)
    sourced.merge_file(task_file)
    sourced.apply_overrides(overrides or [])
    return validate(sourced), sourced
