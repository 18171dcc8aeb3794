"""The shared extension machinery: Registry, plugin loading, atomic writes."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from cardreamer.atomic import atomic_output, write_atomic
from cardreamer.config_loading import ConfigError
from cardreamer.plugins import import_module
from cardreamer.registry import Registry, RegistryError


def test_registry_lookup_names_and_did_you_mean():
    reg: Registry = Registry("reward term")

    @reg.register("speed")
    def speed(ctx):
        return 1.0

    reg.register("time", abs)
    assert reg["speed"] is speed and "time" in reg and reg.names() == ["speed", "time"]
    with pytest.raises(ConfigError, match=r"unknown reward term 'sped' \(did you mean 'speed'\?\)"):
        reg["sped"]
    with pytest.raises(ConfigError, match="valid reward terms: speed, time"):
        reg["zzz"]


def test_registry_refuses_a_second_object_under_a_taken_name():
    reg: Registry = Registry("backbone")
    reg.register("mine", len)
    reg.register("mine", len)  # the same object again (a module imported twice) is fine
    with pytest.raises(RegistryError, match="'mine' is already registered by builtins.len"):
        reg.register("mine", abs)


def test_import_module_by_name_and_by_path(tmp_path, monkeypatch):
    (tmp_path / "my_plugin_mod.py").write_text("LOADED = 42\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert import_module("my_plugin_mod").LOADED == 42
    (tmp_path / "by_path.py").write_text("VALUE = 'x'\n")
    assert import_module(str(tmp_path / "by_path.py")).VALUE == "x"


@pytest.mark.parametrize("spec, message", [
    ("no_such_plugin_module", "plugin module 'no_such_plugin_module' not found"),
    ("missing_file.py", "plugin file missing_file.py does not exist"),
])
def test_import_module_errors_are_one_line(spec, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message) as info:
        import_module(spec)
    assert "\n" not in str(info.value)


def test_a_plugin_that_raises_is_named(tmp_path):
    bad = tmp_path / "raises_on_import.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match=r"raises_on_import.py failed to import: RuntimeError: boom"):
        import_module(str(bad))


def test_atomic_output_leaves_the_old_file_on_error(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    write_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_output(target, "w") as f:
        f.write("half of the new")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert os.listdir(target.parent) == ["file.txt"]  # no temporary file left behind
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert Path(target).stat().st_mode & 0o777 == 0o666 & ~umask
