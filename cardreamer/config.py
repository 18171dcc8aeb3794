"""The configuration schema of an env: world backend, actions, observations, display, task.

A run's configuration is built from ``configs/defaults.yaml``, then the task's YAML file, then
dotted command-line overrides, and validated here with pydantic. Errors name the file, line,
dotted key and the nearest valid keys.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cardreamer.config_loading import ConfigError, SourcedConfig, nearest_hint

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULTS_FILE = CONFIG_DIR / "defaults.yaml"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ----------------------------------------------------------------------------- env
class CarlaServer(Strict):
    host: str = "127.0.0.1"
    port: int = 2000
    timeout: float = 10.0
    tm_port: int = 0  # 0: choose a free port
    launch_command: str | None = None


class WorldConfig(Strict):
    backend: Literal["embedded", "carla", "auto"] = "embedded"
    map_dir: str | None = None
    dt: float = Field(0.1, gt=0, le=1.0)
    carla: CarlaServer = CarlaServer()


class ActionConfig(Strict):
    discrete: bool = True
    discrete_acc: list[float] = [-2.0, 0.0, 2.0]
    discrete_steer: list[float] = [-0.6, -0.2, 0.0, 0.2, 0.6]
    acc_range: tuple[float, float] = (-3.0, 3.0)
    steer_range: tuple[float, float] = (-1.0, 1.0)


class DisplayConfig(Strict):
    enable: bool = False
    url: str | None = None
    token: str | None = None
    run: str = "env"
    keys: list[str] = ["birdeye_wpt"]


class EnvConfig(Strict):
    world: WorldConfig = WorldConfig()
    action: ActionConfig = ActionConfig()
    observation: dict[str, Any] = {}
    display: DisplayConfig = DisplayConfig()

    @field_validator("observation")
    @classmethod
    def _enabled_entries_exist(cls, value: dict[str, Any]) -> dict[str, Any]:
        enabled = value.get("enabled", [])
        if not isinstance(enabled, list) or not enabled:
            raise ValueError("observation.enabled must be a non-empty list of observation names")
        entries = [k for k in value if k != "enabled"]
        for name in enabled:
            if name not in entries:
                raise ValueError(f"observation.enabled names {name!r}, which is not defined{nearest_hint(name, entries)}")
        return value


# ----------------------------------------------------------------------------- task
class PoseSpec(Strict):
    """A pose in CARLA coordinates; yaw in degrees (as CARLA writes it)."""

    x: float
    y: float
    yaw: float | None = None  # None: the lane's heading at (x, y)


class BehaviorSpec(Strict):
    desired_speed: float | tuple[float, float] = 8.0  # m/s, or a [min, max] range drawn per vehicle
    ignore_lights: bool = False
    ignore_signs: bool = False
    ignore_vehicles: bool = False
    auto_lane_change: bool = True
    min_gap: float = 2.5
    time_headway: float = 1.2
    politeness: float = 0.3


class EgoSpec(Strict):
    spawn: Literal["random"] | PoseSpec | list[PoseSpec] = "random"
    route: Literal["random"] | list[tuple[float, float]] = "random"
    route_length: float = Field(300.0, gt=10)
    speed: float = 0.0


class FlowSpec(Strict):
    """Vehicles entering at ``spawn`` whenever the gap behind the last one is large enough."""

    spawn: PoseSpec
    route: Literal["random"] | list[tuple[float, float]] = "random"
    gap: tuple[float, float] = (10.0, 20.0)  # metres between consecutive vehicles, drawn per vehicle
    speed: float = 6.0
    behavior: BehaviorSpec = BehaviorSpec(auto_lane_change=False)
    max_vehicles: int = 30


class TrafficSpec(Strict):
    background: int = Field(0, ge=0)
    behavior: BehaviorSpec = BehaviorSpec()
    exclude_radius: float = 20.0  # keep background spawns this far from the ego
    near_ego: float | None = Field(None, gt=0)  # spawn background only within this many metres of the ego
    flows: list[FlowSpec] = []
    seed_offset: int = 0


class LightSpec(Strict):
    green: float | tuple[float, float] = 10.0
    yellow: float = 3.0
    red: float | tuple[float, float] | None = None


class TaskSpec(Strict):
    name: str
    description: str = ""
    logic: str = "route"  # registered task logic (cardreamer.task_logic)
    map: str
    ego: EgoSpec = EgoSpec()
    traffic: TrafficSpec = TrafficSpec()
    lights: LightSpec = LightSpec()
    stop_signs: list[tuple[float, float]] = []
    desired_speed: float = Field(6.0, gt=0)
    rewards: dict[str, float] = {}
    terminal: dict[str, Any] = {}
    params: dict[str, Any] = {}  # task-logic specific settings

    @model_validator(mode="after")
    def _known_terms(self) -> TaskSpec:
        from cardreamer.rewards import REWARD_TERMS, TERMINAL_DEFAULTS

        for term in self.rewards:
            if term not in REWARD_TERMS:
                raise ValueError(f"unknown reward term {term!r}{nearest_hint(term, sorted(REWARD_TERMS))}")
        for key in self.terminal:
            if key not in TERMINAL_DEFAULTS:
                raise ValueError(f"unknown terminal setting {key!r}{nearest_hint(key, sorted(TERMINAL_DEFAULTS))}")
        return self


class Config(Strict):
    env: EnvConfig = EnvConfig()
    task: TaskSpec


# ----------------------------------------------------------------------------- building
def validate(sourced: SourcedConfig) -> Config:
    """Validate a merged configuration; every problem is reported at once with its position."""
    try:
        config = Config.model_validate(sourced.data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, sourced)) from None
    return config


def format_validation_error(exc: ValidationError, sourced: SourcedConfig) -> str:
    lines = [f"invalid configuration ({exc.error_count()} problem{'s' * (exc.error_count() > 1)}):"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith(("literal[", "list[", "tuple[", "PoseSpec"))]
        dotted = ".".join(loc)
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            valid = sorted(parent.model_fields) if parent else []
            message = f"unknown key{nearest_hint(loc[-1], valid)}"
        elif "input" in err and err["type"] not in ("missing",):
            message = f"{message} (got {err['input']!r})"
        lines.append(f"  {sourced.where(dotted)}: {dotted}: {message}")
    return "\n".join(lines)


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
