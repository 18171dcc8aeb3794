"""YAML loading with source positions, deep merging, and dotted command-line overrides.

Every configuration error is raised as ConfigError with the file, the line and column, the dotted
key, and (for unknown keys) the nearest valid keys, so a typo never ends in a traceback.
"""
from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names file, position and key.

    ``problems`` holds one ``(where, dotted key, message)`` per problem when the schema found them.
    """

    def __init__(self, message: str, problems: tuple[tuple[str, str, str], ...] = ()):
        super().__init__(message)
        self.problems = problems

    @classmethod
    def at(cls, where: str, key: str, message: str) -> ConfigError:
        """One problem at a position: ``where: key: message``."""
        return cls(f"{where}: {key}: {message}", ((where, key, message),))


class _PositionLoader(yaml.SafeLoader):
    """SafeLoader that records the (line, column) of every mapping key, by dotted path."""


def _load_with_positions(text: str, source: str) -> tuple[Any, dict[str, tuple[int, int]]]:
    """The YAML document in ``text`` and the (line, column) of every key and list item, by dotted path."""
    try:
        return _parse(text)
    except yaml.reader.ReaderError as exc:  # raised before parsing: a character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        raise _yaml_error(f"{source}:{line}:{column}", f"not a YAML text file: character 0x{exc.character:02x} "
                                                       f"is not allowed in YAML") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise _yaml_error(where, f"invalid YAML: {problem}") from None


def _yaml_error(where: str, message: str) -> ConfigError:
    """A file that is no YAML config: ``where: message`` (its problem's key is ``yaml``)."""
    return ConfigError(f"{where}: {message}", ((where, "yaml", message),))


MAX_NODES = 100_000
"""Most keys and list items a config file may hold once its YAML aliases are expanded."""


def _parse(text: str) -> tuple[Any, dict[str, tuple[int, int]]]:
    loader = _PositionLoader(text)
    try:
        node = loader.get_single_node()
        positions: dict[str, tuple[int, int]] = {}

        def walk(n: yaml.Node, path: str, ancestors: tuple[int, ...]) -> None:
            if id(n) in ancestors:
                raise _Unloadable(n, "an alias refers to a collection that contains it (a cycle)")
            if isinstance(n, yaml.MappingNode):
                children = [(str(k.value), k, v) for k, v in n.value]
            elif isinstance(n, yaml.SequenceNode):
                children = [(str(i), v, v) for i, v in enumerate(n.value)]
            else:
                return
            for name, mark_node, child in children:
                key = f"{path}.{name}" if path else name
                positions[key] = (mark_node.start_mark.line + 1, mark_node.start_mark.column + 1)
                if len(positions) > MAX_NODES:
                    raise _Unloadable(mark_node, f"more than {MAX_NODES} keys and items once aliases are expanded")
                walk(child, key, (*ancestors, id(n)))

        if node is not None:
            walk(node, "", ())
        return (loader.construct_document(node) if node is not None else None), positions
    finally:
        loader.dispose()


class _Unloadable(yaml.YAMLError):
    """Valid YAML that is no config: a cyclic or enormous structure."""

    def __init__(self, node: yaml.Node, problem: str):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, node.start_mark


class SourcedConfig:
    """A plain nested dict plus where each key came from (file, line, column)."""

    def __init__(self, data: dict | None = None):
        self.data: dict = data or {}
        self.origin: dict[str, tuple[str, int, int]] = {}
        self.plugins: list[tuple[str, str]] = []  # (module or absolute .py path, where the file names it)
        self._overridden: dict[str, None] = {}  # keys set by overrides, in the order given (an ordered set)

    def where(self, dotted: str) -> str:
        """'file:line:col' of a dotted key (or of its nearest ancestor that has a position).

        A key set in whole or in part by a command-line override names that override (a spawn moved
        by ``--task.ego.spawn.x=300`` is off the road because of the override), the first one given
        when several set parts of it.
        """
        below = next((key for key in self._overridden if key.startswith(dotted + ".")), None)
        if below is not None:
            return self.origin[below][0]
        parts = dotted.split(".")
        while parts:
            key = ".".join(parts)
            if key in self.origin:
                f, line, col = self.origin[key]
                return f"{f}:{line}:{col}" if line else f
            parts.pop()
        return "<config>"

    def merge_file(self, path: str | os.PathLike, extends_dirs: tuple[Path, ...] = (),
                   _chain: tuple[Path, ...] = ()) -> SourcedConfig:
        """Merge a YAML file. A top-level ``extends: <name>`` first merges ``<name>.yaml`` from the
        same folder (or a path relative to it), else from ``extends_dirs``, so a variant only states
        what differs. A top-level ``plugins: [module, ...]`` is collected in ``self.plugins`` (a
        ``.py`` path relative to the file), for the caller to import before validating."""
        path = Path(path)
        data, positions = _load_with_positions(read_text(path), str(path))
        if data is None:
            return self
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping of keys, got {type(data).__name__}")
        data = dict(data)
        if "extends" in data:
            base = _base_file(path, data.pop("extends"), positions.get("extends", (0, 0)), extends_dirs, _chain)
            self.merge_file(base, extends_dirs, (*_chain, path.resolve()))
        if "plugins" in data:
            self._add_plugins(path, data.pop("plugins"), positions)
        self.merge(data, str(path), positions)
        return self

    def _add_plugins(self, path: Path, modules: Any, positions: dict[str, tuple[int, int]]) -> None:
        line, col = positions.get("plugins", (0, 0))
        if not isinstance(modules, list) or not all(isinstance(m, str) and m for m in modules):
            raise ConfigError.at(f"{path}:{line}:{col}", "plugins", f"must be a list of module names or .py paths, "
                                                                    f"got {short_repr(modules)}")
        for i, module in enumerate(modules):
            line, col = positions.get(f"plugins.{i}", (line, col))
            spec = str((path.parent / module).resolve()) if module.endswith(".py") else module
            if spec not in (known for known, _ in self.plugins):
                self.plugins.append((spec, f"{path}:{line}:{col}"))

    def merge(self, data: dict, source: str, positions: dict[str, tuple[int, int]] | None = None) -> None:
        positions = positions or {}
        _deep_merge(self.data, copy.deepcopy(data))
        for key, value in _dotted_items(data):
            if isinstance(value, list):  # a list replaces the old one: forget its items' positions
                self._forget_below(key)
            line, col = positions.get(key, (0, 0))
            self.origin[key] = (source, line, col)

    def _forget_below(self, dotted: str) -> None:
        for key in [k for k in self.origin if k.startswith(dotted + ".")]:
            del self.origin[key]
            self._overridden.pop(key, None)

    def apply_overrides(self, overrides: list[str]) -> None:
        """Apply ``--a.b.c=value`` (or ``a.b.c=value``) overrides; values are parsed as YAML."""
        for item in overrides:
            text = item.removeprefix("--")
            if "=" not in text:
                raise ConfigError(f"override {item!r} must look like --key.subkey=value")
            key, raw = text.split("=", 1)
            try:
                value = yaml.safe_load(raw) if raw.strip() else None
            except yaml.YAMLError:
                value = raw
            self.set(key, value, source=f"command line: --{text}")

    def set(self, dotted: str, value: Any, source: str) -> None:
        """Set a dotted key; whether the key exists is checked when the config is validated.

        Every key the override creates or replaces (sections on the way, the value's own keys and
        list items) is attributed to ``source``, so an error in any of them names the override.
        """
        parts = dotted.split(".")
        if not all(parts):
            raise ConfigError(f"{source}: {dotted!r} is not a dotted key like task.traffic.background")
        node = self.data
        for depth, part in enumerate(parts[:-1]):
            if part not in node:
                node[part] = {}
                self.origin[".".join(parts[:depth + 1])] = (source, 0, 0)
            child = node[part]
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: {'.'.join(parts[:depth + 1])!r} is a value "
                                  f"({short_repr(child)}), not a section with key {parts[depth + 1]!r}")
            node = child
        node[parts[-1]] = value
        self._forget_below(dotted)
        for key in (dotted, *(key for key, _ in _dotted_items(value, dotted))):
            self.origin[key] = (source, 0, 0)
            self._overridden[key] = None


def _base_file(path: Path, name: Any, position: tuple[int, int], extends_dirs: tuple[Path, ...],
               chain: tuple[Path, ...]) -> Path:
    """The file an ``extends:`` value names (beside ``path``, else in ``extends_dirs``), checked: it
    exists and does not extend back."""
    where = f"{path}:{position[0]}:{position[1]}"
    if not isinstance(name, str) or not name:
        raise ConfigError.at(where, "extends", f"must name a file to build on, got {name!r}")
    file_name = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
    folders = (path.parent, *(d for d in extends_dirs if Path(file_name).name == file_name))
    base = next((folder / file_name for folder in folders  # a file named like its base builds on the built-in one
                 if (folder / file_name).is_file() and (folder / file_name).resolve() != path.resolve()), None)
    if base is None:
        valid = sorted({p.stem for folder in folders for p in folder.glob("*.yaml") if p.resolve() != path.resolve()})
        places = " or ".join(str(folder) for folder in folders)
        raise ConfigError.at(where, "extends", f"{name!r} is not a file in {places}"
                                               f"{nearest_hint(name, valid)}; valid names: {', '.join(valid)}")
    if base.resolve() in (*chain, path.resolve()):
        raise ConfigError.at(where, "extends", f"{name!r} extends back to {path.name} (a cycle)")
    return base


def read_text(path: Path) -> str:
    """A config file's text; a missing, unreadable or non-UTF-8 file is a ConfigError."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte 0x{exc.object[exc.start]:02x} at offset "
                          f"{exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def nearest_hint(name: str, valid: list[str] | tuple[str, ...], noun: str = "keys") -> str:
    """`` (did you mean 'a' or 'b'?)`` for close matches, else ``; valid <noun>: ...`` (or nothing)."""
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=3, cutoff=0.6)
    if close:
        quoted = [repr(c) for c in close]
        return f" (did you mean {' or '.join([', '.join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)}?)"
    if valid:
        return f"; valid {noun}: {', '.join(str(v) for v in valid)}"
    return ""


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)``, or just its type when the repr is too long for a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else f"a {type(value).__name__}"


def _deep_merge(base: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


def _dotted_items(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of everything below ``data``, list items included as ``key.0``."""
    children = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    items = []
    for k, v in children:
        key = f"{prefix}.{k}" if prefix else str(k)
        items.append((key, v))
        items.extend(_dotted_items(v, key))
    return items
