"""The training commands re-execute themselves under a caching allocator (allocator.py)."""

import os
import subprocess
import sys

import pytest

from cardreamer.training.allocator import find_allocator

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux-only")

PROBE = "from cardreamer.training.allocator import *; reexec_with_fast_allocator(); print(loaded_allocator())"


def _run(code_or_args, **env):
    args = code_or_args if isinstance(code_or_args, list) else [sys.executable, "-c", code_or_args]
    clean = {k: v for k, v in os.environ.items() if k not in ("CARDREAMER_ALLOCATOR", "LD_PRELOAD")}
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env={**clean, **env})


@pytest.mark.skipif(find_allocator() is None, reason="neither tcmalloc nor the mimalloc wheel is installed")
def test_reexec_runs_the_same_command_under_a_caching_allocator():
    out = _run(PROBE)
    assert out.returncode == 0, out.stderr
    loaded = out.stdout.strip().splitlines()[-1]
    assert "tcmalloc" in loaded or "mimalloc" in loaded, out.stdout


def test_system_keeps_glibc():
    out = _run(PROBE, CARDREAMER_ALLOCATOR="system")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"


def test_a_missing_library_is_one_clear_error(tmp_path):
    missing = str(tmp_path / "libnothere.so")
    out = _run([sys.executable, "-m", "cardreamer.cli", "eval", "--logdir", str(tmp_path)], CARDREAMER_ALLOCATOR=missing)
    assert out.returncode == 2
    assert "CARDREAMER_ALLOCATOR" in out.stderr and "libnothere.so" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.skipif(find_allocator() is None, reason="neither tcmalloc nor the mimalloc wheel is installed")
def test_children_of_the_reexecuted_process_get_the_original_environment():
    code = PROBE + "; import os; print(repr(os.environ.get('LD_PRELOAD')), '_CARDREAMER_ALLOCATOR_REEXECUTED' in os.environ)"
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["None", "False"], out.stdout
