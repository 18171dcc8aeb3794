"""Run one benchmark command on two or more source trees in alternating rounds (A B A B ...).

Each run is a fresh process with its working directory and PYTHONPATH set to the tree, so the
trees' own code is imported; alternating spreads the load of a shared machine over all of them.

    python bench/alternate.py --tree before=/tmp/old --tree after=. --rounds 3 -- \\
        python bench/bench_world.py --maps Town01 --counts 50 --memory-ticks 0
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=PATH",
                        help="a source tree to run the command in (give two or more)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    trees = []
    for spec in args.tree:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_dir():
            parser.error(f"--tree {spec!r}: expected NAME=PATH with PATH an existing folder")
        trees.append((name, str(Path(path).resolve())))
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")
    for round_ in range(1, args.rounds + 1):
        for name, path in trees:
            env = dict(os.environ, PYTHONPATH=path)
            result = subprocess.run(command, cwd=path, env=env, capture_output=True, text=True, check=False)
            for line in (result.stdout + result.stderr).splitlines():
                print(f"round {round_} {name:>8}: {line}", flush=True)
            if result.returncode:
                sys.exit(f"{name}: {' '.join(command)} exited with {result.returncode}")


if __name__ == "__main__":
    main()
