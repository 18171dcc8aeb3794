"""A full disk during ``cardreamer train`` and ``cardreamer collect`` (a small tmpfs, filled): one
line naming the file, exit status 2, the last complete checkpoint / the complete episodes intact,
and no half-written file (no ``*.tmp``) left. Needs permission to mount a tmpfs (root); skips
with that reason otherwise."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cardreamer.training import checkpoint
from tests.robustness.test_specs import cardreamer

LEFT_FREE = 8 * 1024
"""Bytes left free when the disk is filled: less than a checkpoint or an episode needs."""


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Callable[[str], Path]]:
    """``small_disk(size)`` mounts a tmpfs of ``size`` (e.g. ``"64m"``) and returns its folder."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        if shutil.which("mount") is None:
            pytest.skip("no mount command to make a small disk (tmpfs)")
        disk = tmp_path / f"disk{len(mounted)}"
        disk.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                                capture_output=True, text=True, check=False)
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs to fill: {result.stderr.strip() or 'mount failed'} (needs root)")
        mounted.append(disk)
        return disk

    yield mount
    for disk in mounted:
        subprocess.run(["umount", str(disk)], check=False)


def fill(disk: Path) -> None:
    """Fill ``disk`` up to :data:`LEFT_FREE` bytes."""
    stat = os.statvfs(disk)
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * (stat.f_bavail * stat.f_frsize - LEFT_FREE))


def temporary_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def one_error_line(result: subprocess.CompletedProcess, stream: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    errors = [line for line in getattr(result, stream).splitlines() if "error" in line]
    assert len(errors) == 1, output
    return errors[0]


TRAIN = ("train", "--task", "CartPole-v1", "--backbone", "random", "--eval-every", "0", "--run.train_fill=64",
         "--run.progress=false", "--run.save_every_steps=100")
"""A run that checkpoints (counters, backbone state, replay chunks) every 100 steps; the random backbone
keeps the test fast, the files written and their error path are the same for every backbone."""


def test_train_on_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(small_disk):
    disk = small_disk("64m")
    logdir = disk / "run"
    first = cardreamer(*TRAIN, "--steps", "200", "--logdir", str(logdir))
    assert first.returncode == 0, first.stdout + first.stderr
    (last,) = checkpoint.checkpoint_dirs(str(logdir))[-1:]
    before = {p.relative_to(logdir): p.read_bytes() for p in Path(last).rglob("*") if p.is_file()}
    fill(disk)
    result = cardreamer(*TRAIN, "--steps", "600", "--logdir", str(logdir))
    line = one_error_line(result, "stderr")
    assert line.startswith(f"cardreamer: error: disk full writing {logdir}/"), line
    assert line.endswith("the newest complete checkpoint is intact: free space and run the same command to resume")
    assert checkpoint.checkpoint_dirs(str(logdir))[-1] == last
    assert {p.relative_to(logdir): p.read_bytes() for p in Path(last).rglob("*") if p.is_file()} == before
    checkpoint.read_arrays(os.path.join(last, checkpoint.AGENT_FILE))  # still loads
    assert temporary_files(disk) == []
    (disk / "filler").unlink()  # with space again, the same command resumes from that checkpoint
    resumed = cardreamer(*TRAIN, "--steps", "300", "--logdir", str(logdir))
    assert resumed.returncode == 0 and "trained 300 env steps" in resumed.stdout, resumed.stdout + resumed.stderr


COLLECT = ("collect", "--task", "four_lane", "--policy", "random", "--no-progress", "--task.terminal.time_limit=30")


def test_collect_on_a_full_disk_is_one_line_and_keeps_the_complete_episodes(small_disk):
    disk = small_disk("16m")
    out = disk / "data"
    first = cardreamer(*COLLECT, "--episodes", "1", "--out", str(out))
    assert first.returncode == 0, first.stdout + first.stderr
    (episode,) = [p for p in out.iterdir() if p.suffix == ".npz"]
    kept, index = episode.read_bytes(), (out / "index.jsonl").read_text()
    fill(disk)
    result = cardreamer(*COLLECT, "--episodes", "2", "--out", str(out))
    line = one_error_line(result, "stdout")
    assert line.startswith(f"cardreamer collect: error: disk full writing {out}/four_lane-000000"), line
    assert line.endswith("the 0 new episodes before it are complete and indexed, nothing half-written is left: "
                         "free space and run the command again (seeds already in the dataset are skipped)")
    assert sorted(p.name for p in out.iterdir()) == sorted([".lock", "index.jsonl", episode.name])
    assert episode.read_bytes() == kept and (out / "index.jsonl").read_text() == index
    assert [json.loads(row)["file"] for row in index.splitlines()] == [episode.name]
    assert temporary_files(disk) == []
