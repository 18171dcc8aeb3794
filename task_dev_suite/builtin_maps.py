"""The maps shipped with CarDreamer: specs and generated OpenDRIVE files in ``cardreamer/maps/``.

``python -m task_dev_suite.builtin_maps`` regenerates every built-in map from its spec and runs the
full validation gate (1 m grid) on each; it exits non-zero when a map fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cardreamer
from task_dev_suite.map_validation import validate_map
from task_dev_suite.opendrive_writer import build_map

MAPS_DIR = Path(cardreamer.__file__).resolve().parent / "maps"
BUILTIN_MAPS = ("intersection", "stop_sign", "roundabout", "highway", "two_lane", "town_grid")


def spec_path(name: str) -> Path:
    """The spec YAML of a built-in map."""
    _check_name(name)
    return MAPS_DIR / f"{name}.yaml"


def map_path(name_or_path: str | Path) -> Path:
    """The .xodr of a built-in map given its name, or an existing .xodr path as given."""
    if str(name_or_path) in BUILTIN_MAPS:
        return MAPS_DIR / f"{name_or_path}.xodr"
    path = Path(name_or_path)
    if path.suffix == ".xodr" and path.is_file():
        return path
    raise FileNotFoundError(
        f"map {str(name_or_path)!r} is neither a built-in map ({', '.join(BUILTIN_MAPS)}) nor an existing .xodr file"
    )


def regenerate_builtin_maps(
    out_dir: str | Path = MAPS_DIR, names: tuple[str, ...] = BUILTIN_MAPS
) -> list[Path]:
    """Build each built-in map's .xodr from its spec into ``out_dir``; returns the written paths."""
    return [build_map(spec_path(name), Path(out_dir) / f"{name}.xodr") for name in names]


def _check_name(name: str) -> None:
    if name not in BUILTIN_MAPS:
        raise KeyError(f"unknown built-in map {name!r}; built-in maps: {', '.join(BUILTIN_MAPS)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=MAPS_DIR)
    parser.add_argument("--grid-step", type=float, default=1.0)
    args = parser.parse_args(argv)
    failed = []
    for path in regenerate_builtin_maps(args.out_dir):
        start = time.perf_counter()
        report = validate_map(path, grid_step=args.grid_step)
        print(report)
        print(f"  gate took {time.perf_counter() - start:.1f} s, file {path.stat().st_size / 1024:.0f} KiB\n")
        if not report.ok:
            failed.append(path.stem)
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
