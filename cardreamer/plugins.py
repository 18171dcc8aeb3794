"""Loading users' extensions: installed plugin packages and modules named on the command line.

A plugin is a Python module that registers reward terms, task parts, observation handlers or
backbones on import (with the registries' ``register`` decorators). It is found either

- as an installed package's entry point in the group ``cardreamer.plugins`` (in its
  ``pyproject.toml``: ``[project.entry-points."cardreamer.plugins"] mine = "my_package.cardreamer"``),
  loaded automatically by every command; or
- by name with ``--import MODULE`` (any command) or ``plugins: [MODULE, ...]`` in a task file:
  a dotted module name importable from the current directory or the Python path, or a path to a
  ``.py`` file.

Run directories record the modules a run imported, so ``cardreamer eval`` rebuilds what ``train``
used. Plugins are code: they run only when the user installs or names them, never because a
downloaded file mentions them (a run directory's ``.py`` paths are not imported without
``--import``).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from cardreamer.config_loading import ConfigError

ENTRY_POINT_GROUP = "cardreamer.plugins"

_loaded: dict[str, ModuleType] = {}
_entry_points_loaded = False


def load_entry_points() -> list[str]:
    """Import every installed ``cardreamer.plugins`` entry point (once per process); their names."""
    global _entry_points_loaded
    names = [ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)]
    if _entry_points_loaded:
        return names
    _entry_points_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception as error:  # a broken plugin package must not hide which one it is
            raise ConfigError(f"plugin {ep.name!r} ({ep.value}, entry point group {ENTRY_POINT_GROUP!r}) "
                              f"failed to load: {type(error).__name__}: {error}") from None
        if callable(loaded) and not isinstance(loaded, ModuleType):
            loaded()  # an entry point may name a register() function instead of a module
    return names


def import_module(spec: str) -> ModuleType:
    """Import one plugin: a dotted module name, or a path to a ``.py`` file. Idempotent."""
    if spec in _loaded:
        return _loaded[spec]
    path = Path(spec)
    if path.suffix == ".py":
        if not path.is_file():
            raise ConfigError(f"plugin file {spec} does not exist")
        name = f"cardreamer_plugin_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[name]
            raise ConfigError(f"plugin file {spec} failed to import: {type(error).__name__}: {error}") from None
    else:
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))  # `cardreamer` (a console script) does not add it itself
        try:
            module = importlib.import_module(spec)
        except ModuleNotFoundError as error:
            if error.name and spec.startswith(error.name):
                raise ConfigError(f"plugin module {spec!r} not found (not importable from the current directory "
                                  f"or the Python path; a .py file needs its path)") from None
            raise ConfigError(f"plugin module {spec!r} failed to import: {type(error).__name__}: {error}") from None
        except Exception as error:
            raise ConfigError(f"plugin module {spec!r} failed to import: {type(error).__name__}: {error}") from None
    _loaded[spec] = module
    return module


def load_plugins(modules: Iterable[str] = ()) -> list[str]:
    """Load the installed entry points and import ``modules``; the modules imported, in order."""
    load_entry_points()
    imported = []
    for spec in modules:
        import_module(spec)
        imported.append(spec)
    return imported


def imported_modules() -> list[str]:
    """Every module imported through :func:`import_module` in this process, in order (for run dirs)."""
    return list(_loaded)
