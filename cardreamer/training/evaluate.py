"""Evaluate a trained backbone: success, collision, speed, route completion and return.

Episode ``i`` starts from ``reset(seed=seed + i)``, so each can be replayed alone; the results (the
summary, the seeds and one row per episode) are written to ``<logdir>/eval/<checkpoint-step>.json``
(the latest evaluation of that checkpoint).

The env is built from the task config the run recorded (``env.task_config`` in config.yaml), so a
task file changed since does not change what is evaluated; a map file changed since is used as it
is now, with a warning. A config.yaml of before that record names the task and overrides only.
Dotted ``task.*`` / ``env.*`` overrides change that task for one evaluation (the run's config.yaml is
untouched): its results record them and go to ``eval/<checkpoint-step>+<hash of the overrides>.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from cardreamer.atomic import write_atomic
from cardreamer.config_loading import ConfigError

from . import checkpoint
from .config import apply_overrides, config_keys, load_config, split_overrides
from .envs import EnvFn, default_env_fn, make_vector_env, map_changed, with_env_overrides
from .loop import EPISODE_KEYS, run_episodes, summarize
from .protocol import make_backbone


def evaluate(path: str, episodes: int = 10, env_fn: EnvFn | None = None, json_path: str | None = None,
             show: bool = True, seed: int | None = None, policy: str | None = None,
             progress: bool = False, overrides: Sequence[str] = ()) -> dict:
    """Run ``episodes`` evaluation episodes of a logdir's newest checkpoint (or a given checkpoint
    folder), write the results to the run's ``eval/<checkpoint-step>.json`` and return them; print
    them as a table when ``show``, also write them to ``json_path`` ('-': stdout); ``progress``
    shows a bar with success so far and an ETA. Episode ``i`` is seeded ``seed + i`` (default seed:
    the run's seed + 20000). ``policy`` ('sample' or 'greedy') overrides the run's
    ``model.eval_policy``. ``overrides`` (``task.*`` / ``env.*`` keys such as
    ``task.traffic.background=30``) change the run's recorded task for this evaluation (see
    :func:`.envs.with_env_overrides`). The plugin modules the run recorded are imported first (see
    :func:`.config.load_config`)."""
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    logdir, _ = checkpoint.resolve(path)
    config = load_config(os.path.join(logdir, "config.yaml"))
    if policy is not None:
        if config.model is None or "eval_policy" not in type(config.model).model_fields:
            raise ConfigError(f"--policy {policy}: backbone {config.backbone!r} has no eval policy setting "
                              f"(model.eval_policy)")
        config = apply_overrides(config, {"model": {"eval_policy": policy}})
    try:
        training, overrides = split_overrides(overrides, config_keys(config.backbone))
    except ValueError as error:
        raise ConfigError(f"command line: {error}") from None
    if training:
        raise ConfigError(f"command line: --{training[0]}: eval takes overrides of the run's task (--task.* and "
                          f"--env.* keys of its task config), not of the run's own settings, which its checkpoint "
                          f"was trained with")
    config = with_env_overrides(config, overrides)
    changed = map_changed(config)
    if changed:
        print(f"cardreamer: warning: {changed}", file=sys.stderr)
    seeds = [(config.seed + 20_000 if seed is None else seed) + i for i in range(episodes)]
    envs = make_vector_env(env_fn or default_env_fn(config), 1, False, config.env.image_size)
    try:
        agent = make_backbone(config.backbone, envs.single_observation_space, envs.single_action_space, config)
        ckpt = checkpoint.restore(path, agent.load)
        rows = _play(agent, envs, seeds, progress)
        policy = getattr(agent, "eval_policy", None)  # a backbone may say how it acts in 'eval' mode
    finally:
        envs.close()
    summary = {"checkpoint": ckpt, "task": config.env.task, "backbone": config.backbone,
               "policy": policy, "overrides": overrides, **summarize(rows), "seeds": seeds, "per_episode": rows}
    text = json.dumps(summary, indent=2)
    report = os.path.join(logdir, "eval", os.path.basename(ckpt) + _overrides_suffix(overrides) + ".json")
    try:
        write_atomic(report, text)
    except OSError as error:  # e.g. a read-only copy of a run: the results are still shown
        print(f"cardreamer: warning: could not write {report} ({error.strerror or error})", file=sys.stderr)
        report = None
    if show:
        print_summary(summary)
        if report:
            print(f"results -> {report}")
    if json_path == "-":
        print(text)
    elif json_path:
        write_atomic(json_path, text)
    return summary


def _overrides_suffix(overrides: list[str]) -> str:
    """``+<8 hex digits>`` naming a set of overrides in a report's file name; empty without any."""
    if not overrides:
        return ""
    return "+" + hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:8]


def _play(agent, envs, seeds: list[int], progress: bool) -> list[dict]:
    """One episode from each seed; its row holds the seed, return, length and the driving metrics
    (None where the env reports none)."""
    rows: list[dict] = []
    bar = tqdm(seeds, desc="eval", unit="episode", disable=not progress, dynamic_ncols=True)
    for episode_seed in bar:
        (episode,), _ = run_episodes(agent, envs, 1, "eval", episode_seed)
        row = {"seed": episode_seed, "return": episode["return"], "length": episode["length"]}
        for key in EPISODE_KEYS:
            value = episode.get(key)
            row[key] = bool(value) if key in ("success", "collision") and value is not None else value
        row["terminal_reason"] = episode.get("terminal_reason")
        rows.append(row)
        successes = [r["success"] for r in rows if r["success"] is not None]
        if successes:
            bar.set_postfix(success=f"{sum(successes)}/{len(rows)}")
    bar.close()
    return rows


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
