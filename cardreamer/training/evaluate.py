"""Evaluate a trained backbone: success, collision, speed, route completion and return."""

from __future__ import annotations

import json
import os

from rich.console import Console
from rich.table import Table

from cardreamer.atomic import write_atomic
from cardreamer.config_loading import ConfigError

from . import checkpoint
from .config import apply_overrides, load_config
from .envs import EnvFn, default_env_fn, make_vector_env
from .loop import run_episodes, summarize
from .protocol import make_backbone


def evaluate(path: str, episodes: int = 10, env_fn: EnvFn | None = None, json_path: str | None = None,
             show: bool = True, seed: int | None = None, policy: str | None = None) -> dict:
    """Run ``episodes`` evaluation episodes of a logdir's newest checkpoint (or a given checkpoint
    folder) and return the summary; print it as a table when ``show``; write JSON to ``json_path``.
    ``policy`` ('sample' or 'greedy') overrides the run's ``model.eval_policy``. The plugin modules
    the run recorded are imported first (see :func:`.config.load_config`)."""
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    logdir, _ = checkpoint.resolve(path)
    config = load_config(os.path.join(logdir, "config.yaml"))
    if policy is not None:
        if config.model is None or "eval_policy" not in type(config.model).model_fields:
            raise ConfigError(f"--policy {policy}: backbone {config.backbone!r} has no eval policy setting "
                              f"(model.eval_policy)")
        config = apply_overrides(config, {"model": {"eval_policy": policy}})
    envs = make_vector_env(env_fn or default_env_fn(config), 1, False, config.env.image_size)
    try:
        agent = make_backbone(config.backbone, envs.single_observation_space, envs.single_action_space, config)
        ckpt = checkpoint.restore(path, agent.load)
        results, _ = run_episodes(agent, envs, episodes, "eval", config.seed + 20_000 if seed is None else seed)
        policy = getattr(agent, "eval_policy", None)  # a backbone may say how it acts in 'eval' mode
    finally:
        envs.close()
    summary = {"checkpoint": ckpt, "task": config.env.task, "backbone": config.backbone,
               "policy": policy, **summarize(results),
               "per_episode": results}
    if show:
        print_summary(summary)
    if json_path:
        text = json.dumps(summary, indent=2)
        if json_path == "-":
            print(text)
        else:
            write_atomic(json_path, text)
    return summary


def print_summary(summary: dict) -> None:
    policy = f", {summary['policy']} actions" if summary.get("policy") else ""
    table = Table(title=f"{summary['backbone']} on {summary['task'] or 'env'} ({summary['episodes']} episodes{policy})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    fmt = {"success_rate": "{:.0%}", "collision_rate": "{:.0%}", "route_completion": "{:.1%}",
           "mean_speed": "{:.2f}", "return": "{:.2f}", "return_std": "{:.2f}", "length": "{:.1f}"}
    for key, pattern in fmt.items():
        value = summary.get(key)
        table.add_row(key, "n/a" if value is None else pattern.format(value))
    Console().print(table)
