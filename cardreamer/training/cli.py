"""Command-line entry points ``train`` and ``eval``, added to the ``cardreamer`` command by
``register(subparsers)``.

    cardreamer train --task CartPole-v1 --size tiny --steps 20000 --logdir runs/cartpole
    cardreamer train --task right_turn_simple --size cpu --logdir runs/rt --model.batch_size=8
    cardreamer train --import my_backbones --backbone mine --task CartPole-v1 --logdir runs/mine
    cardreamer train --task right_turn_hard --from-checkpoint runs/rt --logdir runs/rt-hard
    cardreamer train --task four_lane --logdir runs/fl --url 'http://127.0.0.1:9000/?token=...'
    cardreamer eval --logdir runs/rt --episodes 20 --json results.json
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from urllib.parse import parse_qs, urlsplit

from cardreamer.config_loading import ConfigError

from .checkpoint import CheckpointError
from .config import (
    DEFAULT_BACKBONE,
    TrainingConfig,
    apply_overrides,
    config_keys,
    make_config,
    split_overrides,
)
from .protocol import backbone_spec

FLAG_KEYS = {"steps": "run.steps", "envs": "env.num_envs", "train_ratio": "run.train_ratio", "seed": "seed",
             "eval_every": "run.eval_every", "eval_episodes": "run.eval_episodes"}
"""``train`` options that set a config key (left out: the config's value)."""


STARTED_SERVERS: list = []
"""Visualizer processes ``train --serve`` started; each ends by itself once this process is gone
and no run publishes to it."""


def _default(flag: str) -> str:
    """`` (default: KEY=VALUE)`` of a train option, the config's default of the key it sets."""
    key = FLAG_KEYS[flag]
    value = TrainingConfig().to_dict()
    for part in key.split("."):
        value = value[part]
    return f" (default: {key}={value})"


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train a backbone on a task (resumes an existing logdir)",
                                  description="Extra dotted overrides such as --model.lr=1e-4 or "
                                              "--env.overrides=[env.world.backend=carla] are applied last. An "
                                              "option left out keeps its config key's value: the default shown "
                                              "unless the size preset sets it (train prints what it sets).")
    train.add_argument("--task", required=True, help="CarDreamer task name or gymnasium id (e.g. CartPole-v1)")
    train.add_argument("--backbone", default=DEFAULT_BACKBONE,
                       help=f"registered backbone name (default: {DEFAULT_BACKBONE}); a plugin's with --import")
    train.add_argument("--size", help="size preset of the backbone (dreamerv3: 1m, 12m, 25m, 50m, 100m, 200m, tiny, "
                                      "cpu; default: the backbone's command-line preset, cpu for dreamerv3)")
    train.add_argument("--steps", type=int, help=f"env steps to train for{_default('steps')}")
    train.add_argument("--logdir", required=True, help="run directory")
    train.add_argument("--envs", type=int, help=f"parallel environments{_default('envs')}")
    train.add_argument("--train-ratio", type=float, help=f"replayed steps per env step{_default('train_ratio')}")
    train.add_argument("--seed", type=int, help=f"seed of the envs, the backbone and the replay{_default('seed')}")
    train.add_argument("--eval-every", type=int, help=f"env steps between evaluations, 0: never{_default('eval_every')}")
    train.add_argument("--eval-episodes", type=int, help=f"episodes per evaluation{_default('eval_episodes')}")
    served = train.add_mutually_exclusive_group()
    served.add_argument("--serve", action="store_true",
                        help="publish metrics and frames to the visualizer on run.serve_url's port (default 9000): "
                             "the one already running there, else a new one serving the logdir's parent folder")
    served.add_argument("--url", help="publish to the visualizer already running at URL (as `cardreamer serve` "
                                      "prints it, with ?token=...; default: none)")
    train.add_argument("--token", help="the token of the visualizer at --url, if its URL does not carry one "
                                       "(default: none)")
    train.add_argument("--pretrain-data", help="a dataset folder from `cardreamer collect` to pre-train on first "
                                               "(default: none)")
    train.add_argument("--from-checkpoint", metavar="PATH",
                       help="start a fresh run from another run's checkpoint (its run dir: the newest; or "
                            "<run>/checkpoints/<step>), e.g. to fine-tune on another task; ignored once this "
                            "run has checkpoints of its own (default: none, a fresh start)")
    train.add_argument("--from-checkpoint-parts", metavar="PARTS",
                       help="what to take from it, comma-separated: agent (the backbone's state: weights and "
                            "optimizer), replay (default: agent)")
    train.set_defaults(func=run_train, fast_allocator=True)

    evaluate = subparsers.add_parser("eval", help="evaluate a trained backbone",
                                     description="Extra dotted overrides of the task, such as "
                                                 "--task.traffic.background=30 or --env.world.dt=0.05, change the "
                                                 "task the run recorded (config.yaml's env.task_config) for this "
                                                 "evaluation only, checked as train checks them; the results "
                                                 "record them and go to <logdir>/eval/<step>+<hash>.json. The "
                                                 "run's own settings (--model.*, --run.*, --env.image_size, ...) "
                                                 "are refused: the checkpoint was trained with them.")
    evaluate.add_argument("--logdir", help="run directory (uses its newest checkpoint); this or --checkpoint")
    evaluate.add_argument("--checkpoint", help="a checkpoint folder, logdir/checkpoints/<step>; this or --logdir")
    evaluate.add_argument("--episodes", type=int, default=10, help="evaluation episodes")
    evaluate.add_argument("--json", nargs="?", const="-", help="also write the results as JSON to this file ('-' or "
                                                               "no file: stdout; default: only <logdir>/eval/)")
    evaluate.add_argument("--seed", type=int, help="seed of the first episode; episode i uses SEED+i "
                                                   "(default: the run's seed + 20000)")
    evaluate.add_argument("--policy", choices=("sample", "greedy"),
                          help="sample actions (as DreamerV3 does) or take the policy's mode (default: the "
                               "run's model.eval_policy, sample unless set)")
    evaluate.set_defaults(func=run_eval, fast_allocator=True)


def config_from_args(args: argparse.Namespace) -> TrainingConfig:
    """The config for ``train`` from parsed flags and the dotted ``--key=value`` overrides in
    ``args.overrides``. Keys of this package's config set it; other ``env.`` and ``task.`` keys (such as
    ``--env.world.backend=carla``) are handed to the CarDreamer env as ``env.overrides``."""
    overrides = [f"env.task={args.task}", f"backbone={args.backbone}", f"logdir={args.logdir}"]
    overrides += [f"{key}={getattr(args, flag)}" for flag, key in FLAG_KEYS.items() if getattr(args, flag) is not None]
    if args.serve:
        overrides.append("run.serve=true")
    if getattr(args, "url", None):
        _check_url(args.url, getattr(args, "token", None))
        overrides += ["run.serve=true", f"run.serve_url={args.url}"]
    if getattr(args, "token", None):
        overrides.append(f"run.serve_token={args.token}")
    if getattr(args, "pretrain_data", None):
        overrides.append(f"run.pretrain_data={args.pretrain_data}")
    if getattr(args, "from_checkpoint", None):
        overrides.append(f"run.from_checkpoint={os.path.abspath(os.path.expanduser(args.from_checkpoint))}")
    if getattr(args, "from_checkpoint_parts", None):
        overrides.append(f"run.from_checkpoint_parts={args.from_checkpoint_parts}")
    training, env_overrides = split_overrides(getattr(args, "overrides", []), config_keys(args.backbone))
    config = make_config(args.size or backbone_spec(args.backbone).command_preset, overrides + training)
    if env_overrides:
        config = apply_overrides(config, {"env": {"overrides": list(config.env.overrides) + env_overrides}})
    return config


def _check_url(url: str, token: str | None) -> None:
    """Refuse a --url that is not a visualizer address or has no token (one line, before training)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--url {url!r}: expected the visualizer's address, like http://127.0.0.1:9000/?token=...")
    if not token and not parse_qs(parts.query).get("token"):
        raise ValueError(f"--url {url!r} has no ?token=...: copy the URL `cardreamer serve` printed, or add --token")


def check_env_config(config: TrainingConfig) -> None:
    """Validate the CarDreamer task config of ``config.env`` (raising ConfigError), so that a bad
    task or override stops ``train`` before it writes anything; a gymnasium id has none to check."""
    import gymnasium as gym

    if config.env.task in gym.registry and not config.env.overrides:
        return
    from cardreamer.env import build_config

    build_config(config.env.task, list(config.env.overrides))


def use_compilation_cache() -> None:
    """Keep compiled train steps on disk so resuming and evaluating skip most compile time
    (~/.cache/cardreamer/jax unless JAX_COMPILATION_CACHE_DIR is set)."""
    import jax

    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser("~/.cache/cardreamer/jax"))


def _connect_visualizer(config: TrainingConfig, served_here: bool) -> TrainingConfig | None:
    """``config`` publishing to the visualizer: with ``served_here`` (``--serve``) the one on
    run.serve_url's port or a new one (one line says which; None after a one-line error), else
    the one at run.serve_url (``--url``); the run is named as that server lists its directory."""
    from pathlib import Path

    from visualization.cli import run_name_on, running_visualizer, serve_for_run

    run_dir = Path(config.logdir).expanduser().resolve()
    url = config.run.serve_url
    if served_here:
        try:
            server, url, what = serve_for_run(url, run_dir.parent)
        except RuntimeError as error:
            print(f"cardreamer: error: --serve: {error}", file=sys.stderr)
            return None
        print(f"CarDreamer visualizer: {what}", flush=True)
        if server is not None:  # it outlives this call while other runs publish to it: not stopped here
            STARTED_SERVERS.append(server)
    parts = urlsplit(url)
    try:
        health = running_visualizer(parts.hostname or "127.0.0.1", parts.port or 9000)
    except OSError:
        health = None  # not reachable now: the publisher retries quietly
    name = config.run.serve_name or run_name_on((health or {}).get("logdir"), run_dir)
    return apply_overrides(config, {"run": {"serve_url": url, "serve_name": name}})


def run_train(args: argparse.Namespace) -> int:
    from .loop import train

    try:
        config = config_from_args(args)
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"command line: {error.args[0] if error.args else error}") from None
    check_env_config(config)
    if config.preset_settings:
        settings = ", ".join(f"{key}={value}" for key, value in config.preset_settings.items())
        print(f"size preset {config.size!r} of {config.backbone} sets {settings} (recorded in config.yaml; "
              f"override with --KEY=VALUE)")
    use_compilation_cache()
    if config.run.serve:
        config = _connect_visualizer(config, served_here=not getattr(args, "url", None))
        if config is None:
            return 2
    try:
        summary = train(config)
    except CheckpointError as error:
        print(f"cardreamer: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        print(f"cardreamer: error: disk full writing {error.filename or config.logdir}; the newest complete "
              f"checkpoint is intact: free space and run the same command to resume", file=sys.stderr)
        return 2
    if summary["stopped_by"]:
        print(f"stopped by {summary['stopped_by']} at {summary['env_steps']} env steps, checkpoint saved -> "
              f"{summary['logdir']}; run the same command to resume")
        return 128 + int(getattr(signal, summary["stopped_by"]))
    print(f"trained {summary['env_steps']} env steps, {summary['updates']} updates -> {summary['logdir']}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    if bool(args.logdir) == bool(args.checkpoint):
        raise SystemExit("eval: give exactly one of --logdir or --checkpoint")
    use_compilation_cache()
    try:
        evaluate(args.logdir or args.checkpoint, args.episodes, json_path=args.json, show=args.json != "-",
                 seed=args.seed, policy=args.policy, progress=True, overrides=args.overrides)
    except CheckpointError as error:
        print(f"cardreamer: error: {error}", file=sys.stderr)
        return 2
    return 0
