"""Finding task definitions (the built-in ``cardreamer/tasks/*.yaml`` or any task file) and
registering the built-in ones with Gymnasium."""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import gymnasium
import yaml

from cardreamer.config_loading import ConfigError, nearest_hint

TASK_DIR = Path(str(files("cardreamer.tasks")))
"""The built-in tasks' folder (inside the installed package)."""
ENV_NAMESPACE = "CarDreamer"


def task_names() -> list[str]:
    return sorted(p.stem for p in TASK_DIR.glob("*.yaml") if not p.stem.startswith("_"))


def task_file(task: str | Path) -> Path:
    """The YAML file of a built-in task name, or the given path to a task file."""
    path = Path(task)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"task file {path} does not exist")
        return path
    candidate = TASK_DIR / f"{task}.yaml"
    if not candidate.is_file():
        raise ConfigError(f"unknown task {str(task)!r}{nearest_hint(str(task), task_names(), 'tasks')}, "
                          f"or pass a path to a task .yaml file")
    return candidate


def task_description(name: str) -> str:
    data = yaml.safe_load(task_file(name).read_text()) or {}
    return str(data.get("task", {}).get("description", ""))


def env_id(name: str) -> str:
    """Gymnasium id of a task: ``four_lane`` → ``CarDreamer/FourLane-v0``."""
    return f"{ENV_NAMESPACE}/{''.join(part.capitalize() for part in name.split('_'))}-v0"


def register_envs() -> None:
    """Register every built-in task as ``CarDreamer/<Task>-v0`` (idempotent), with
    ``cardreamer.vector:CarDreamerVectorEnv`` as its vector entry point (``gymnasium.make_vec(id,
    num_envs=K, vectorization_mode="vector_entry_point")``: K worlds in this process).

    No ``max_episode_steps``: the env truncates at its task's ``time_limit`` (which ``config=`` or
    ``overrides=`` may change) and reports it in the made env's ``spec``. No additional wrappers
    (``make_vec`` refuses a vector entry point with them): a TimeLimit of the user's
    (``max_episode_steps=N``) cuts episodes without the end-of-episode info unless the env is
    wrapped in :class:`cardreamer.env.EpisodeEndInfo`.
    """
    for name in task_names():
        gid = env_id(name)
        if gid not in gymnasium.registry:
            gymnasium.register(id=gid, entry_point="cardreamer.env:CarDreamerEnv", kwargs={"task": name},
                               vector_entry_point="cardreamer.vector:CarDreamerVectorEnv")
