"""Experiments: one YAML file names a base task, a training recipe, variants and seeds.

``cardreamer experiment run FILE`` trains and evaluates every (variant, seed) as an ordinary run
directory, ``<root>/<variant>/seed<k>``, each in its own ``python -m cardreamer.cli`` processes
(``train``, then ``eval`` of the final checkpoint), K at a time; finished runs (those with
``eval/final.json``) are skipped and interrupted ones resume from their checkpoint.
``cardreamer experiment report FILE`` writes ``<root>/report.md`` (mean ± standard error over
seeds) and ``<root>/success_curve.png``. See docs/experiments.md.

    cardreamer experiment run experiments/observability.yaml --dry-run
    cardreamer experiment run experiments/observability.yaml --parallel 2
    cardreamer experiment report experiments/observability.yaml
"""

from __future__ import annotations

import argparse
import collections
import difflib
import functools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import cv2
import numpy as np
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from cardreamer.atomic import write_atomic
from cardreamer.plugins import imported_modules

from .checkpoint import checkpoint_dirs
from .cli import config_from_args
from .cli import register as register_train_commands
from .protocol import available_backbones, backbone_spec

SUCCESS_TARGET = 0.8
"""The eval success rate whose first crossing the report gives in env steps."""
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
RESERVED_KEYS = {"logdir": "root", "seed": "seeds", "backbone": "backbone", "size": "size", "env.task": "task",
                 "run.steps": "steps", "run.eval_every": "eval.every", "run.eval_episodes": "eval.episodes"}
"""Config keys the experiment sets for each run, and the file's key that sets them."""


class ExperimentError(ValueError):
    """Bad experiment input; ``lines`` holds one message per problem."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


def _check_override(text: str) -> str:
    key, sep, value = text.removeprefix("--").partition("=")
    if not sep or "." not in key or " " in key:
        raise ValueError(f"{text!r} is not an override: write a dotted config key and a value, "
                         "e.g. model.lr=1e-4 or env.observation.enabled=[camera]")
    if key in RESERVED_KEYS:
        raise ValueError(f"{key} is set by the experiment for each run: "
                         f"use the file's {RESERVED_KEYS[key]!r} key")
    return f"{key}={value}"


Override = Annotated[str, AfterValidator(_check_override)]
Name = Annotated[str, Field(pattern=NAME_PATTERN, description="a folder name: letters, digits, _ . -")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EvalSpec(_Strict):
    every: int = Field(10_000, ge=0, description="env steps between evaluations while training (0: never)")
    episodes: int = Field(10, ge=1, description="episodes of each evaluation while training")
    final_episodes: int = Field(50, ge=1, description="episodes of the final checkpoint's evaluation")
    policy: Literal["sample", "greedy"] | None = None


class Variant(_Strict):
    name: Name
    description: str = ""
    task: str | None = Field(None, description="replaces the experiment's task")
    overrides: list[Override] = []


class Experiment(_Strict):
    name: Name
    description: str = ""
    task: str = Field(description="the base task: a CarDreamer task name, a task .yaml or a gymnasium id")
    backbone: str = "dreamerv3"
    size: str | None = Field(None, description="a size preset of the backbone (default: the one `cardreamer train` "
                                                "takes without --size)")
    steps: int = Field(gt=0, description="env steps per run")
    seeds: list[int] = Field(min_length=1, description="a list of seeds, e.g. [0, 1]")
    root: str | None = None
    eval: EvalSpec = EvalSpec()
    overrides: list[Override] = []
    variants: list[Variant] = Field(min_length=1, description="a list of {name, overrides} mappings")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, name: str) -> str:
        if name not in available_backbones():
            raise ValueError(f"unknown backbone {name!r}; registered: {', '.join(available_backbones())}")
        return name

    @field_validator("size")
    @classmethod
    def _known_size(cls, size: str | None, info: ValidationInfo) -> str | None:
        if size is None or "backbone" not in info.data:  # an unknown backbone is reported by itself
            return size
        presets = backbone_spec(info.data["backbone"]).presets
        if size not in presets:
            valid = f"valid sizes: {', '.join(presets)}" if presets else "it has no size presets: drop size"
            raise ValueError(f"unknown size {size!r} of backbone {info.data['backbone']!r}; {valid}")
        return size

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        if twice:
            raise ValueError(f"seed {twice[0]} is listed twice")
        return seeds


@dataclass(frozen=True)
class Run:
    """One (variant, seed) of an experiment: its run directory and its two commands."""

    variant: str
    seed: int
    logdir: Path
    train: tuple[str, ...]  # arguments of `cardreamer`
    evaluate: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.variant}/seed{self.seed}"

    @property
    def final_json(self) -> Path:
        return self.logdir / "eval" / "final.json"

    def state(self) -> str:
        """'finished' (final evaluation written), 'resume' (has a checkpoint) or 'new'."""
        if self.final_json.is_file():
            return "finished"
        return "resume" if checkpoint_dirs(str(self.logdir)) else "new"


@dataclass(frozen=True)
class LoadedExperiment:
    spec: Experiment
    path: Path
    positions: dict[str, tuple[int, int]]  # dotted key or list item -> (line, column)

    def where(self, dotted: str) -> str:
        return _where(self.path, self.positions, dotted)


def _where(path: Path, positions: dict[str, tuple[int, int]], dotted: str) -> str:
    """'file:line:col' of a dotted key (or of its nearest enclosing key)."""
    parts = dotted.split(".")
    while parts and ".".join(parts) not in positions:
        parts.pop()
    if not parts:
        return str(path)
    line, column = positions[".".join(parts)]
    return f"{path}:{line}:{column}"


# ----------------------------------------------------------------------------- loading

def _positions(node: yaml.Node, path: str = "") -> dict[str, tuple[int, int]]:
    """(line, column) of every mapping key and list item under a composed YAML node."""
    found: dict[str, tuple[int, int]] = {}
    if isinstance(node, yaml.MappingNode):
        children = [(f"{path}.{key.value}" if path else str(key.value), key, value)
                    for key, value in node.value]
    elif isinstance(node, yaml.SequenceNode):
        children = [(f"{path}.{i}", item, item) for i, item in enumerate(node.value)]
    else:
        return found
    for dotted, marked, child in children:
        found[dotted] = (marked.start_mark.line + 1, marked.start_mark.column + 1)
        found.update(_positions(child, dotted))
    return found


def load_experiment(path: str | os.PathLike) -> LoadedExperiment:
    """Read and validate an experiment file; every problem is one line of the ExperimentError."""
    path = Path(path)
    if not path.is_file():
        raise ExperimentError([f"{path}: no such experiment file"])
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        data, node = yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ExperimentError([f"{where}: invalid YAML: {getattr(error, 'problem', None) or error}"]) from None
    if not isinstance(data, dict):
        raise ExperimentError([(f"{path}: the top level must be a mapping of experiment keys, got "
                               f"{type(data).__name__}")])
    positions = _positions(node)
    where = functools.partial(_where, path, positions)
    errors = _duplicate_names(where, data.get("variants"))
    try:
        spec = Experiment.model_validate(data)
    except ValidationError as error:
        errors = [_explain(err, where) for err in error.errors()] + errors
    if errors:
        raise ExperimentError(errors)
    return LoadedExperiment(spec, path, positions)


def _duplicate_names(where: Callable[[str], str], variants: Any) -> list[str]:
    if not isinstance(variants, list):
        return []
    names = [v.get("name") if isinstance(v, dict) else None for v in variants]
    return [f"{where(f'variants.{i}.name')}: variants.{i}.name: duplicate variant name {name!r} "
            f"(also variants.{names.index(name)})"
            for i, name in enumerate(names) if name is not None and name in names[:i]]


def _explain(err: Any, where: Callable[[str], str]) -> str:
    loc = [str(part) for part in err["loc"]]
    dotted = ".".join(loc)
    field = _field_at(err["loc"])
    if err["type"] == "extra_forbidden":
        valid = list(_model_at(err["loc"][:-1]).model_fields)
        close = difflib.get_close_matches(loc[-1], valid, n=2, cutoff=0.5)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        message = f"unknown key{hint}; valid keys: {', '.join(valid)}"
    elif err["type"] == "missing":
        hint = f" ({field.description})" if field is not None and field.description else ""
        message = f"required key missing{hint}"
    else:
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] not in ("value_error", "assertion_error"):
            message += f" (got {err['input']!r})"
    return f"{where(dotted)}: {dotted or 'top level'}: {message}"


def _model_at(loc: tuple) -> type[BaseModel]:
    model: type[BaseModel] = Experiment
    for part in loc:
        if isinstance(part, str):
            field = model.model_fields.get(part)
            model = (_submodel(field.annotation) if field else None) or model
    return model


def _field_at(loc: tuple) -> Any:
    names = [part for part in loc if isinstance(part, str)]
    if not names:
        return None
    return _model_at(tuple(names[:-1])).model_fields.get(names[-1])


def _submodel(annotation: Any) -> type[BaseModel] | None:
    for kind in (annotation, *get_args(annotation)):
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return kind
    return None


def experiment_root(loaded: LoadedExperiment, root: str | None = None) -> Path:
    """The folder of the run directories: ``root`` (--root), else the file's root, else runs/<name>."""
    spec = loaded.spec
    return Path(root or spec.root or os.path.join("runs", spec.name)).expanduser().absolute()


def plan(loaded: LoadedExperiment, root: str | None = None) -> list[Run]:
    """The runs of an experiment, seed by seed (every variant of seed 0 first) so that a partly
    finished experiment already compares all variants."""
    spec = loaded.spec
    base = experiment_root(loaded, root)
    plugins = tuple(arg for module in imported_modules() for arg in ("--import", module))  # for a plugin backbone
    runs = []
    for seed in spec.seeds:
        for variant in spec.variants:
            logdir = base / variant.name / f"seed{seed}"
            train = ("train", *plugins, "--task", variant.task or spec.task, "--backbone", spec.backbone,
                     *(("--size", spec.size) if spec.size else ()), "--steps", str(spec.steps), "--logdir", str(logdir), "--seed", str(seed),
                     "--eval-every", str(spec.eval.every), "--eval-episodes", str(spec.eval.episodes),
                     *(f"--{item}" for item in [*spec.overrides, *variant.overrides]))
            evaluate = ("eval", "--logdir", str(logdir), "--episodes", str(spec.eval.final_episodes),
                        "--json", str(logdir / "eval" / "final.json"),
                        *(("--policy", spec.eval.policy) if spec.eval.policy else ()))
            runs.append(Run(variant.name, seed, logdir, train, evaluate))
    return runs


def train_config(run: Run) -> Any:
    """The config ``cardreamer train`` builds from a run's train command."""
    from cardreamer.cli import CommandParser  # its subcommands take --import, as the run's do

    parser = CommandParser(prog="cardreamer", plugin_option=False)
    register_train_commands(parser.add_subparsers(dest="command"))
    args, extra = parser.parse_known_args(list(run.train))
    args.overrides = extra
    return config_from_args(args)


def check_runs(loaded: LoadedExperiment, runs: list[Run]) -> None:
    """Resolve each variant's train command to its config as ``cardreamer train`` would, and build
    its env config and observation handlers (without a world); raise every problem at once."""
    problems: dict[str, list[int]] = {}  # problem -> the variants that have it, in order
    for index, variant in enumerate(loaded.spec.variants):
        try:
            _check_env(train_config(next(r for r in runs if r.variant == variant.name)))
        except (KeyError, TypeError, ValueError) as error:  # ConfigError, ObservationConfigError too
            text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
            for line in text.splitlines():
                if line.strip() and not line.startswith("invalid configuration ("):
                    problems.setdefault(_tidy(line), []).append(index)
    if problems:
        names = [v.name for v in loaded.spec.variants]
        raise ExperimentError([f"{loaded.where(f'variants.{found[0]}')}: variant{'s' * (len(found) > 1)} "
                               f"{', '.join(repr(names[i]) for i in found)}: {problem}"
                               for problem, found in problems.items()])


def _tidy(line: str, limit: int = 300) -> str:
    """A problem line without pydantic's 'Value error, ', without the task file position the env
    config reports (the cause is the experiment's override) and without an echo of a long input."""
    line = re.sub(r"^\S+:\d+:\d+: ", "", line.strip().replace("Value error, ", ""))
    echo = line.find(" (got ")
    return line[:echo] if len(line) > limit and echo > 0 else line


def _check_env(config: Any) -> None:
    import gymnasium as gym

    if config.env.task in gym.registry and not config.env.overrides:
        return
    from cardreamer.env import build_config
    from cardreamer.observer import Observer

    env_config, _ = build_config(config.env.task, list(config.env.overrides))
    Observer(env_config.env.observation, env_config.env.observation["enabled"])


# ----------------------------------------------------------------------------- running

def command(arguments: tuple[str, ...]) -> list[str]:
    """The process that runs ``cardreamer <arguments>``, with this interpreter."""
    return [sys.executable, "-m", "cardreamer.cli", *arguments]


def _child_env() -> dict[str, str]:
    """This environment, unbuffered, with the project this module came from first on the path so
    that the children run the code that validated their configs."""
    import cardreamer

    project = str(Path(cardreamer.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join([project, path] if path else [project])}


class _Job:
    """A run's stages (train, then eval), each a subprocess writing to ``<logdir>/<stage>.log``."""

    def __init__(self, run: Run, env: dict[str, str]):
        self.run, self.env = run, env
        self.stages = [("train", run.train), ("eval", run.evaluate)]
        self.stage = ""
        self.log_path = run.logdir / "train.log"
        self.process: subprocess.Popen | None = None

    def start_next(self) -> None:
        self.stage, arguments = self.stages.pop(0)
        (self.run.logdir / "eval").mkdir(parents=True, exist_ok=True)
        self.log_path = self.run.logdir / f"{self.stage}.log"
        with open(self.log_path, "a") as log:  # the child keeps its own copy of the descriptor
            log.write(f"$ {shlex.join(command(arguments))}\n")
            log.flush()
            self.process = subprocess.Popen(command(arguments), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.env)

    def last_log_line(self) -> str:
        text = self.log_path.read_text(errors="replace").replace("\r", "\n")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def execute(runs: list[Run], parallel: int, say: Callable[[str], None] = print, poll: float = 0.5) -> list[Run]:
    """Train and evaluate ``runs``, ``parallel`` at a time; returns those that failed. A failed
    process ends only its own run. Ctrl-C stops every child (their runs resume next time)."""
    env = _child_env()
    queue = collections.deque(runs)
    active: list[_Job] = []
    failed: list[Run] = []
    try:
        while queue or active:
            while queue and len(active) < parallel:
                job = _Job(queue.popleft(), env)
                state = job.run.state()
                job.start_next()
                active.append(job)
                state = "resuming" if state == "resume" else state
                say(f"{job.run.name}: training ({state}), log {job.log_path}")
            time.sleep(poll)
            for job in list(active):
                status = job.process.poll()
                if status is None:
                    continue
                if status == 0 and job.stages:
                    job.start_next()
                    say(f"{job.run.name}: evaluating the final checkpoint, log {job.log_path}")
                    continue
                active.remove(job)
                if status == 0:
                    say(f"{job.run.name}: done, {_brief(job.run.final_json)}")
                else:
                    failed.append(job.run)
                    say(f"{job.run.name}: FAILED: {job.stage} exited with status {status} "
                        f"({job.last_log_line()}); see {job.log_path}")
    except KeyboardInterrupt:
        for job in active:
            job.process.terminate()
        for job in active:
            job.process.wait()
        raise
    return failed


def _brief(final_json: Path) -> str:
    result = json.loads(final_json.read_text())
    parts = [f"{result['episodes']} episodes"]
    for key in ("success_rate", "collision_rate"):
        if result.get(key) is not None:
            parts.append(f"{key.split('_')[0]} {result[key]:.0%}")
    return ", ".join(parts)


# ----------------------------------------------------------------------------- report

@dataclass(frozen=True)
class RunResult:
    run: Run
    final: dict[str, Any]
    curve: list[tuple[int, float]]  # (env steps, eval success rate)

    def steps_to_target(self) -> int | None:
        return next((step for step, success in self.curve if success >= SUCCESS_TARGET), None)


def success_curve(scores_path: Path) -> list[tuple[int, float]]:
    """(step, eval/success_rate) rows of a scores.jsonl, sorted by step; of rows repeated after a
    resume the last counts; unreadable lines (a process killed mid-write) are skipped."""
    by_step: dict[int, float] = {}
    if scores_path.is_file():
        for line in scores_path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("eval/success_rate"), (int, float)):
                by_step[int(row["step"])] = float(row["eval/success_rate"])
    return sorted(by_step.items())


def collect(runs: list[Run]) -> dict[str, list[RunResult]]:
    """The finished runs' results by variant (variants in the file's order, none left out)."""
    results: dict[str, list[RunResult]] = {}
    for run in sorted(runs, key=lambda r: r.seed):
        results.setdefault(run.variant, [])
        if run.final_json.is_file():
            try:
                final = json.loads(run.final_json.read_text())
                problem = "" if isinstance(final, dict) else f"a JSON {type(final).__name__}, not an object"
            except json.JSONDecodeError as error:
                problem = f"invalid JSON: {error}"
            if problem:
                raise ExperimentError([(f"{run.final_json}: not a summary of `cardreamer eval --json` ({problem}); "
                                       "delete it to evaluate the run again")])
            results[run.variant].append(RunResult(run, final, success_curve(run.logdir / "scores.jsonl")))
    return results


def mean_and_error(values: list[float]) -> tuple[float, float | None]:
    """Mean and standard error of the mean (sample std / sqrt(n); None for one value)."""
    mean = float(np.mean(values))
    return mean, (float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None)


def _cell(values: list[float], scale: float, digits: int, unit: str = "") -> str:
    if not values:
        return "n/a"
    mean, error = mean_and_error([v * scale for v in values])
    text = f"{mean:.{digits}f}{unit}"
    return text if error is None else f"{text} ± {error:.{digits}f}{unit}"


METRICS = (("success rate", "success_rate", 100.0, 1, "%"), ("collision rate", "collision_rate", 100.0, 1, "%"),
           ("route completion", "route_completion", 100.0, 1, "%"), ("mean speed (m/s)", "mean_speed", 1.0, 2, ""))


def report_markdown(loaded: LoadedExperiment, results: dict[str, list[RunResult]], plot_name: str) -> str:
    spec = loaded.spec
    target = f"{SUCCESS_TARGET:.0%}"
    header = ["variant", "seeds", *(m[0] for m in METRICS), f"env steps to {target} success"]
    lines = [f"# Experiment `{spec.name}`", ""]
    if spec.description:
        lines += [spec.description, ""]
    policy = f", {spec.eval.policy} actions" if spec.eval.policy else ""
    lines += [(f"From `{loaded.path}`: task `{spec.task}`, backbone `{spec.backbone}`, size `{spec.size}`, "
              f"{spec.steps} env steps, seeds {', '.join(map(str, spec.seeds))}; evaluations every {spec.eval.every} "
              f"steps on {spec.eval.episodes} episodes, the final checkpoint on {spec.eval.final_episodes} "
              f"episodes{policy}. Mean ± standard error over the seeds whose final evaluation exists; "
              f"env steps to {target} success: the first evaluation while training at or above it."), "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant in spec.variants:
        found = results.get(variant.name, [])
        cells = [variant.name, f"{len(found)}/{len(spec.seeds)}"]
        for _, key, scale, digits, unit in METRICS:
            cells.append(_cell([r.final[key] for r in found if r.final.get(key) is not None], scale, digits, unit))
        reached = [float(s) for s in (r.steps_to_target() for r in found) if s is not None]
        if not reached:
            cells.append("not reached" if found else "n/a")
        else:
            some = f" ({len(reached)}/{len(found)} seeds; not reached by the others)"
            cells.append(_cell(reached, 1.0, 0) + ("" if len(reached) == len(found) else some))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Variants:", ""]
    for variant in spec.variants:
        task = f" task `{variant.task}`;" if variant.task else ""
        settings = ", ".join(f"`{o}`" for o in [*spec.overrides, *variant.overrides]) or "no overrides"
        about = f" {variant.description}." if variant.description else ""
        lines.append(f"- `{variant.name}`:{about}{task} {settings}")
    return "\n".join(lines) + f"\n\n![eval success rate vs env steps]({plot_name})\n"


PALETTE = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
           (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]  # BGR


def plot_success(curves: dict[str, list[list[tuple[int, float]]]], title: str) -> np.ndarray:
    """A PNG-ready BGR image: eval success rate vs env steps, the mean over seeds per variant
    (thick) and each seed's (step, success) curve (thin), with the target drawn dashed."""
    width, height, left, right, top, bottom = 1080, 580, 80, 330, 75, 60
    image = np.full((height, width, 3), 255, np.uint8)
    steps = [s for runs in curves.values() for curve in runs for s, _ in curve]
    x_max = max(steps, default=1) or 1

    def point(step: float, value: float) -> tuple[int, int]:
        return (round(left + step / x_max * (width - left - right)),
                round(height - bottom - value * (height - top - bottom)))

    font, grey = cv2.FONT_HERSHEY_SIMPLEX, (200, 200, 200)
    for tick in np.linspace(0, 1, 6):
        cv2.line(image, point(0, tick), point(x_max, tick), grey, 1)
        x, y = point(0, tick)
        cv2.putText(image, f"{tick:.0%}", (x - 55, y + 5), font, 0.5, (60, 60, 60), 1, cv2.LINE_AA)
    for tick in np.linspace(0, x_max, 6):
        x, y = point(tick, 0)
        cv2.line(image, (x, y), (x, y + 6), (60, 60, 60), 1)
        label = f"{tick / 1000:g}k" if x_max >= 1000 and tick else f"{tick:g}"
        cv2.putText(image, label, (x - 15, y + 24), font, 0.5, (60, 60, 60), 1, cv2.LINE_AA)
    for x in range(left, width - right, 16):  # the target, dashed
        y = point(0, SUCCESS_TARGET)[1]
        cv2.line(image, (x, y), (min(x + 8, width - right), y), (120, 120, 120), 1)
    cv2.rectangle(image, point(0, 1), point(x_max, 0), (60, 60, 60), 1)
    cv2.putText(image, "env steps", (left + (width - left - right) // 2 - 40, height - 12), font, 0.55, (0, 0, 0), 1,
                cv2.LINE_AA)
    cv2.putText(image, "eval success rate", (8, top - 16), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, title, (left, 28), font, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
    for index, (name, runs) in enumerate(curves.items()):
        color = PALETTE[index % len(PALETTE)]
        light = tuple(int(c + (255 - c) * 0.6) for c in color)
        by_step: dict[int, list[float]] = collections.defaultdict(list)
        for curve in runs:
            if len(curve) > 1:
                cv2.polylines(image, [np.array([point(s, v) for s, v in curve], np.int32)], False, light, 1,
                              cv2.LINE_AA)
            for step, value in curve:
                by_step[step].append(value)
        mean = [point(step, float(np.mean(values))) for step, values in sorted(by_step.items())]
        if len(mean) > 1:
            cv2.polylines(image, [np.array(mean, np.int32)], False, color, 3, cv2.LINE_AA)
        for p in mean:
            cv2.circle(image, p, 4, color, -1, cv2.LINE_AA)
        y = top + 10 + 26 * index
        cv2.line(image, (width - right + 20, y), (width - right + 50, y), color, 3, cv2.LINE_AA)
        label = f"{name} ({len(runs)} seed{'s' * (len(runs) != 1)})"
        cv2.putText(image, label, (width - right + 58, y + 5), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return image


# ----------------------------------------------------------------------------- commands

def cmd_run(args: argparse.Namespace) -> int:
    loaded = load_experiment(args.file)
    runs = plan(loaded, args.root)
    check_runs(loaded, runs)
    states = {run: run.state() for run in runs}
    todo = [run for run in runs if states[run] != "finished"]
    if args.dry_run:
        for run in runs:
            print(f"# {run.name}: {states[run]}" + (" (skipped)" if states[run] == "finished" else ""))
            if states[run] != "finished":
                print(shlex.join(command(run.train)))
                print(shlex.join(command(run.evaluate)))
        print(f"# {len(runs)} runs, {len(todo)} to train and evaluate")
        return 0
    for run in runs:
        if states[run] == "finished":
            print(f"{run.name}: finished already ({run.final_json}), skipped")
    failed = execute(todo, args.parallel)
    print(f"{len(runs)} runs: {len(runs) - len(todo)} skipped, {len(todo) - len(failed)} trained and evaluated, "
          f"{len(failed)} failed" + (f" ({', '.join(r.name for r in failed)})" if failed else ""))
    return 1 if failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    loaded = load_experiment(args.file)
    root = experiment_root(loaded, args.root)
    runs = plan(loaded, args.root)
    results = collect(runs)
    if not any(results.values()):
        print(f"cardreamer experiment: nothing to report: no run under {root} has its final evaluation yet; "
              f"run `cardreamer experiment run {args.file}` first", file=sys.stderr)
        return 1
    plot_path, report_path = root / "success_curve.png", root / "report.md"
    ok, png = cv2.imencode(".png", plot_success({name: [r.curve for r in runs] for name, runs in results.items()},
                                            f"{loaded.spec.name}: eval success vs env steps"))
    if not ok:
        raise RuntimeError("OpenCV could not encode the plot as PNG")
    text = report_markdown(loaded, results, plot_path.name)
    unfinished = [r.name for r in runs if not r.final_json.is_file()]
    if unfinished:
        text += f"\nRuns without a final evaluation yet: {', '.join(unfinished)}.\n"
    write_atomic(plot_path, png.tobytes())
    write_atomic(report_path, text.encode())
    print(text)
    print(f"wrote {report_path} and {plot_path}")
    return 0


def _user_errors(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Bad input as one line per problem on stderr and exit status 2."""

    def guarded(args: argparse.Namespace) -> int:
        try:
            stray = getattr(args, "overrides", [])
            if stray:
                raise ExperimentError([(f"{args.file}: `cardreamer experiment` takes no config overrides "
                                       f"(got {' '.join(stray)}); put them in the file's overrides list")])
            return func(args)
        except ExperimentError as error:
            for line in error.lines:
                print(f"cardreamer experiment: error: {line}", file=sys.stderr)
            return 2

    return guarded


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of runs at once, at least 1; got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    experiment = subparsers.add_parser("experiment", help="train, evaluate and report a study (variants x seeds)",
                                       description=__doc__.split("\n\n")[0])
    actions = experiment.add_subparsers(dest="experiment_command", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="train and evaluate every (variant, seed) not finished yet")
    run.add_argument("file", help="the experiment .yaml")
    run.add_argument("--root", help="folder of the run directories (default: the file's root, else runs/<name>)")
    run.add_argument("--parallel", type=_positive, default=1, metavar="K", help="runs at once (default 1)")
    run.add_argument("--dry-run", action="store_true", help="validate and print the commands without running them")
    run.set_defaults(func=_user_errors(cmd_run))
    report = actions.add_parser("report", help="write <root>/report.md and <root>/success_curve.png")
    report.add_argument("file", help="the experiment .yaml")
    report.add_argument("--root", help="folder of the run directories (default: the file's root, else runs/<name>)")
    report.set_defaults(func=_user_errors(cmd_report))
