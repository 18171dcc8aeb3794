"""``cardreamer task validate|new|preview`` and ``cardreamer collect``.

The main CLI calls ``register(subparsers)``; each subcommand sets ``args.func(args)``, which
returns the exit status. Dotted config overrides (``--task.traffic.background=5``) arrive as
``args.overrides``.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``task`` (validate, new, preview) and ``collect``."""
    task = subparsers.add_parser("task", help="author tasks: validate, scaffold and preview task specs")
    commands = task.add_subparsers(dest="task_command", required=True, metavar="COMMAND")

    p = commands.add_parser("validate", help="check a task spec against its schema and its map (exit 1 if invalid)")
    p.add_argument("file", help="task .yaml file (or a built-in task name)")
    p.set_defaults(func=cmd_validate)

    p = commands.add_parser("new", help="write a commented task spec to start from")
    p.add_argument("name", help="name of the new task")
    p.add_argument("--from", dest="source", default="wpt", help="task to start from (name or .yaml; default wpt)")
    p.add_argument("-o", "--out", type=Path, help="output file (default NAME.yaml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_new)

    p = commands.add_parser("preview", help="draw the whole scene of a task from above")
    p.add_argument("file", help="task .yaml file (or a built-in task name)")
    p.add_argument("-o", "--out", type=Path, help="output PNG (default: <task file name>.png in the current folder)")
    p.add_argument("--serve", action="store_true", help="show it in the browser, re-rendering on every change")
    p.add_argument("--port", type=int, default=8765, help="port for --serve (default 8765; 0 picks a free one)")
    p.set_defaults(func=cmd_preview)

    p = subparsers.add_parser("collect", help="record episodes of a task into a dataset folder")
    p.add_argument("--task", required=True, help="task name or task .yaml file")
    p.add_argument("--policy", default="expert", help="expert | random | checkpoint:PATH | human (default expert)")
    p.add_argument("--episodes", type=int, required=True, help="number of new episodes")
    p.add_argument("--out", type=Path, required=True, help="dataset folder (created, or appended to)")
    p.add_argument("--envs", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--seed", type=int, default=0, help="first episode seed; seeds already in the dataset are skipped")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_collect)


def cmd_validate(args: argparse.Namespace) -> int:
    from task_dev_suite.task_validation import validate_task

    report = validate_task(args.file, getattr(args, "overrides", None))
    print(report.format())
    return 0 if report.ok else 1


def cmd_new(args: argparse.Namespace) -> int:
    from task_dev_suite.scaffold import scaffold_task

    path = scaffold_task(args.name, args.source, args.out, force=args.force)
    print(f"wrote {path} (from {args.source}); next: cardreamer task validate {path}")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from task_dev_suite.preview import preview_task, serve_preview, write_png

    overrides = getattr(args, "overrides", None)
    if args.serve:
        serve_preview(args.file, overrides, port=args.port, out=args.out)
        return 0
    image, report = preview_task(args.file, overrides)
    out = args.out or Path(report.path.stem + ".png")
    write_png(out, image)
    print(report.format())
    print(f"wrote {out}")
    return 0 if report.ok else 1


def cmd_collect(args: argparse.Namespace) -> int:
    from task_dev_suite.collect import CollectError, collect

    try:
        entries = collect(args.task, args.policy, args.episodes, args.out, envs=args.envs, seed=args.seed,
                          overrides=getattr(args, "overrides", None), progress=not args.no_progress)
    except CollectError as exc:
        print(f"cardreamer collect: error: {exc}")
        return 2
    steps = sum(e["length"] for e in entries)
    success = sum(e["success"] for e in entries)
    print(f"wrote {len(entries)} episodes ({steps} steps, {success} successful) to {args.out}")
    return 0
