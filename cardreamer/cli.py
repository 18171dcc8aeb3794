"""The ``cardreamer`` command: tasks, run, train, eval, serve, drive, map, task, collect.

Every subcommand reports bad input (an unknown task, a config typo, a malformed map) as one
clear line on stderr and exit status 2, never as a traceback.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import json
import logging
import sys
import time

from cardreamer.config_loading import ConfigError
from cardreamer.plugins import load_plugins
from cardreamer.roadmap import MapError
from cardreamer.world.api import WorldError

PROJECT_PACKAGES = ("cardreamer", "dreamerv3_backbone", "visualization", "task_dev_suite")
USER_ERRORS = (ConfigError, MapError, WorldError, FileNotFoundError)

SUBCOMMAND_MODULES = (
    "cardreamer.training.cli",
    "cardreamer.training.experiment",
    "visualization.cli",
    "task_dev_suite.map_cli",
    "task_dev_suite.cli",
    "cardreamer.world.carla_backend.cli",
)
"""Modules that add their subcommands through a ``register(subparsers)`` function."""


def cmd_tasks(args: argparse.Namespace) -> int:
    from cardreamer.task_registry import env_id, task_description, task_names

    for name in task_names():
        print(f"{name:<28} {env_id(name):<40} {task_description(name)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run episodes with a random or expert policy and print per-episode metrics."""
    from rich.console import Console
    from rich.table import Table
    from tqdm import tqdm

    from cardreamer.env import make_env
    from cardreamer.expert import ExpertPolicy

    env = make_env(args.task, args.overrides)
    policy = ExpertPolicy(env) if args.policy == "expert" else None
    if args.url:
        from visualization.wrapper import LiveDisplay

        try:
            env = LiveDisplay(env, args.url, run=args.run)
        except ValueError as exc:  # a malformed --url or --run
            env.close()
            raise ConfigError(str(exc)) from None
    rows, steps, start = [], 0, time.perf_counter()
    with tqdm(total=args.episodes, desc=f"{args.task} ({args.policy})", unit="ep") as bar:
        for episode in range(args.episodes):
            env.reset(seed=args.seed + episode)
            done = False
            while not done:
                action = policy.act() if policy else env.action_space.sample()
                _, _, terminated, truncated, info = env.step(action)
                steps += 1
                done = terminated or truncated
            rows.append({"episode": episode, "seed": args.seed + episode, **{
                k: info[k] for k in ("episode_return", "episode_length", "success", "collision",
                                     "route_completion", "mean_speed", "terminal_reason")}})
            bar.set_postfix(steps_per_s=f"{steps / (time.perf_counter() - start):.0f}",
                            success=f"{sum(r['success'] for r in rows) / len(rows):.0%}")
            bar.update()
    env.close()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    table = Table(title=f"{args.task}: {args.policy} policy")
    for col in ("episode", "seed", "return", "length", "success", "collision", "completion", "speed", "end"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["episode"]), str(r["seed"]), f"{r['episode_return']:.1f}", str(r["episode_length"]),
                      "yes" if r["success"] else "no", "yes" if r["collision"] else "no",
                      f"{r['route_completion']:.0%}", f"{r['mean_speed']:.1f}", r["terminal_reason"])
    console = Console()
    console.print(table)
    n = len(rows)
    console.print(f"success {sum(r['success'] for r in rows) / n:.0%}, collisions {sum(r['collision'] for r in rows) / n:.0%}, "
                  f"mean return {sum(r['episode_return'] for r in rows) / n:.1f}")
    return 0


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that ends each option's line with ``(default: X)``, with or without a help text, unless
    the default is None, the option is a flag, or its help already speaks of its default."""

    def _format_action(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        takes_default = action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)
        if (takes_default and action.nargs != 0 and action.default not in (None, argparse.SUPPRESS)
                and help_text != argparse.SUPPRESS and "default" not in help_text.lower()):
            action = copy.copy(action)
            action.help = f"{help_text} (default: %(default)s)".lstrip()
        return super()._format_action(action)


class CommandParser(argparse.ArgumentParser):
    """The parser of ``cardreamer`` and of every subcommand under it: a long option must be spelt
    out (``--step`` is not taken as ``--steps``), ``--help`` shows every option's default, and every
    subcommand takes ``--import MODULE`` (plugins: see :mod:`cardreamer.plugins`)."""

    def __init__(self, *args, plugin_option: bool = True, **kwargs):
        super().__init__(*args, **{"formatter_class": DefaultsHelpFormatter, **kwargs, "allow_abbrev": False})
        if plugin_option:
            self.add_argument("--import", dest="plugins", action="append", metavar="MODULE", default=argparse.SUPPRESS,
                              help="import a plugin module (dotted name or .py path) that registers reward terms, "
                                   "task parts, observation handlers or backbones; repeatable")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="cardreamer", description=__doc__.splitlines()[0], plugin_option=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("tasks", help="list the built-in tasks")
    p.set_defaults(func=cmd_tasks)
    p = sub.add_parser("run", help="run episodes of a task with a random or expert policy")
    p.add_argument("--task", default="wpt", help="task name or task .yaml path")
    p.add_argument("--policy", choices=("random", "expert"), default="expert")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the per-episode metrics as JSON")
    p.add_argument("--url", help="publish frames and step info to the visualizer at URL (as `cardreamer serve` prints it)")
    p.add_argument("--run", default="env", help="the run name shown by the visualizer (with --url)")
    p.set_defaults(func=cmd_run)
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    overrides = [u for u in unknown if u.startswith("--") and "=" in u]
    stray = [u for u in unknown if u not in overrides]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)} (config overrides look like --env.world.dt=0.05)")
    args.overrides = overrides
    logging.basicConfig(level=logging.WARNING, format="cardreamer: %(message)s")
    for package in PROJECT_PACKAGES:  # our own progress messages; libraries stay at warnings
        logging.getLogger(package).setLevel(logging.INFO)
    try:
        load_plugins(getattr(args, "plugins", []))
        if argv is None and getattr(args, "fast_allocator", False):  # a real command line, not a call
            from cardreamer.training.allocator import reexec_with_fast_allocator

            reexec_with_fast_allocator()
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"cardreamer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
