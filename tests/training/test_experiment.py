"""``cardreamer experiment``: validation of experiment files, the runner (subprocesses, skip,
crash isolation) and the report (mean ± standard error over seeds, steps to 80% success, plot)."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cardreamer.config import build_config
from cardreamer.observer.birdeye import BirdeyeConfig
from cardreamer.cli import main
from cardreamer.training.envs import make_task_env
from cardreamer.training.experiment import PALETTE, load_experiment, plan, train_config

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "experiments").glob("*.yaml"))

TINY = """\
name: tiny
task: right_turn_simple
backbone: random
description: the random backbone, which has no size presets
steps: 200
seeds: [0, 1]
eval: {every: 100, episodes: 1, final_episodes: 2}
overrides:
  - task.terminal.time_limit=40
variants:
  - name: turn
  - name: wpt
    task: wpt
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _expected_cell(values: list[float], scale: float, digits: int, unit: str) -> str:
    """The report's 'mean ± s.e.' cell, computed here independently: s.e. = sample std / sqrt(n)."""
    values = [v * scale for v in values]
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}{unit}"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.{digits}f}{unit} ± {std / math.sqrt(len(values)):.{digits}f}{unit}"


def _row(report: str, variant: str) -> list[str]:
    line = next(line for line in report.splitlines() if line.startswith(f"| {variant} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def _metric_cells(finals: list[dict]) -> list[str]:
    return [_expected_cell([f["success_rate"] for f in finals], 100, 1, "%"),
            _expected_cell([f["collision_rate"] for f in finals], 100, 1, "%"),
            _expected_cell([f["route_completion"] for f in finals], 100, 1, "%"),
            _expected_cell([f["mean_speed"] for f in finals], 1, 2, "")]


@pytest.mark.slow
def test_run_trains_skips_survives_a_crash_and_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CARDREAMER_ALLOCATOR", "system")  # no re-exec under another allocator: faster starts
    path = _write(tmp_path, "tiny.yaml", TINY)
    root = tmp_path / "runs"
    runs = {run.name: run for run in plan(load_experiment(path), str(root))}
    assert [r.logdir for r in runs.values()] == [root / "turn" / "seed0", root / "wpt" / "seed0",
                                                 root / "turn" / "seed1", root / "wpt" / "seed1"]
    broken = runs["wpt/seed1"]  # an unreadable checkpoint: its train process fails
    (broken.logdir / "checkpoints" / "000000000100").mkdir(parents=True)
    (broken.logdir / "checkpoints" / "000000000100" / "counters.json").write_text("{")

    assert main(["experiment", "run", str(path), "--root", str(root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "# wpt/seed1: resume" in out and "# turn/seed0: new" in out
    assert not (root / "turn" / "seed0").exists()  # a dry run runs nothing

    assert main(["experiment", "run", str(path), "--root", str(root), "--parallel", "2"]) == 1
    out = capsys.readouterr().out
    assert "wpt/seed1: FAILED: train exited with status 2" in out and str(broken.logdir / "train.log") in out
    assert "no readable checkpoint" in out  # the failed run's own one-line reason
    assert "3 trained and evaluated, 1 failed (wpt/seed1)" in out
    good = [run for run in runs.values() if run is not broken]
    for run in good:
        result = json.loads(run.final_json.read_text())
        assert result["episodes"] == 2 and result["checkpoint"].endswith("000000000200")
        assert "trained 200 env steps" in (run.logdir / "train.log").read_text()
    assert not broken.final_json.exists()

    shutil.rmtree(broken.logdir / "checkpoints")
    before = {run.name: (run.final_json.stat().st_mtime_ns, (run.logdir / "train.log").stat().st_size) for run in good}
    assert main(["experiment", "run", str(path), "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.count("finished already") == 3 and "3 skipped, 1 trained and evaluated, 0 failed" in out
    assert before == {run.name: (run.final_json.stat().st_mtime_ns, (run.logdir / "train.log").stat().st_size)
                      for run in good}
    assert broken.final_json.is_file()

    assert main(["experiment", "report", str(path), "--root", str(root)]) == 0
    report = (root / "report.md").read_text()
    for variant in ("turn", "wpt"):
        seeds = [runs[f"{variant}/seed{k}"] for k in (0, 1)]
        finals = [json.loads(run.final_json.read_text()) for run in seeds]
        curves = [[json.loads(line) for line in (run.logdir / "scores.jsonl").read_text().splitlines()] for run in seeds]
        evals = [row["eval/success_rate"] for rows in curves for row in rows if "eval/success_rate" in row]
        assert len(evals) == 4 and max(evals) < 0.8  # a random policy: never 80%
        assert _row(report, variant) == [variant, "2/2", *_metric_cells(finals), "not reached"]
    assert finals[0]["route_completion"] != finals[1]["route_completion"]  # the numbers are not all alike
    image = cv2.imread(str(root / "success_curve.png"))
    assert image is not None and image.shape == (580, 1080, 3)


def _fake_run(run, final: dict | None, successes: list[tuple[int, float]]) -> None:
    """A run directory as training and `cardreamer eval` leave it: scores.jsonl and eval/final.json."""
    (run.logdir / "eval").mkdir(parents=True)
    rows = [json.dumps({"step": step, "episode/return": 1.0}) + "\n" for step, _ in successes]
    rows += [json.dumps({"step": step, "eval/episodes": 10, "eval/success_rate": s}) + "\n" for step, s in successes]
    (run.logdir / "scores.jsonl").write_text("".join(rows) + '{"step": 9')  # ends in a half-written row
    if final is not None:
        run.final_json.write_text(json.dumps({"episodes": 50, **final}))


def test_report_means_standard_errors_steps_to_target_and_plot(tmp_path, capsys):
    path = _write(tmp_path, "study.yaml", TINY.replace("seeds: [0, 1]", "seeds: [0, 1, 2]")
                  .replace("name: turn", "name: fast").replace("name: wpt", "name: slow"))
    runs = {run.name: run for run in plan(load_experiment(path), str(tmp_path / "runs"))}
    finals = {"fast": [{"success_rate": 0.9, "collision_rate": 0.1, "route_completion": 0.95, "mean_speed": 5.0},
                       {"success_rate": 0.8, "collision_rate": 0.0, "route_completion": 0.9, "mean_speed": 5.5},
                       {"success_rate": 1.0, "collision_rate": 0.0, "route_completion": 1.0, "mean_speed": 6.1}],
              "slow": [{"success_rate": 0.84, "collision_rate": 0.1, "route_completion": 0.8, "mean_speed": 4.0},
                       {"success_rate": 0.2, "collision_rate": 0.5, "route_completion": 0.3, "mean_speed": 2.0}]}
    curves = {"fast/seed0": [(10_000, 0.1), (20_000, 0.8), (30_000, 0.9)],
              "fast/seed1": [(10_000, 0.5), (20_000, 0.7), (30_000, 0.85)],
              "fast/seed2": [(10_000, 0.85), (20_000, 1.0), (30_000, 1.0)],
              "slow/seed0": [(10_000, 0.0), (20_000, 0.0), (20_000, 0.3), (30_000, 0.8)],  # 20k again after a resume
              "slow/seed1": [(10_000, 0.1), (20_000, 0.2), (30_000, 0.2)],
              "slow/seed2": [(10_000, 0.0)]}  # interrupted: no final evaluation
    for name, curve in curves.items():
        variant, seed = name.split("/seed")
        _fake_run(runs[name], finals[variant][int(seed)] if int(seed) < len(finals[variant]) else None, curve)

    assert main(["experiment", "report", str(path), "--root", str(tmp_path / "runs")]) == 0
    report = (tmp_path / "runs" / "report.md").read_text()
    assert capsys.readouterr().out.startswith(report)
    assert _row(report, "fast") == ["fast", "3/3", *_metric_cells(finals["fast"]),
                                    _expected_cell([20_000, 30_000, 10_000], 1, 0, "")]
    assert _row(report, "slow") == ["slow", "2/3", *_metric_cells(finals["slow"]),
                                    "30000 (1/2 seeds; not reached by the others)"]
    assert "Runs without a final evaluation yet: slow/seed2." in report
    assert "![eval success rate vs env steps](success_curve.png)" in report

    image = cv2.imread(str(tmp_path / "runs" / "success_curve.png"))
    plot_area = image[75:520, 80:750]
    for color in PALETTE[:2]:  # each variant's mean curve is drawn in its colour inside the axes
        assert np.all(plot_area == color, axis=-1).sum() > 200


def test_report_without_finished_runs_or_with_a_damaged_one_says_so(tmp_path, capsys):
    path = _write(tmp_path, "tiny.yaml", TINY)
    assert main(["experiment", "report", str(path), "--root", str(tmp_path / "none")]) == 1
    assert "nothing to report" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
    run = plan(load_experiment(path), str(tmp_path / "runs"))[0]
    _fake_run(run, None, [(100, 0.5)])
    run.final_json.write_text("[]")
    assert main(["experiment", "report", str(path), "--root", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err == (f"cardreamer experiment: error: {run.final_json}: not a summary of "
                                       "`cardreamer eval --json` (a JSON list, not an object); delete it to "
                                       "evaluate the run again\n")
    assert not (tmp_path / "runs" / "report.md").exists()


BAD = {
    "unknown key": ("colour: red\n", "tiny.yaml:14:1: colour: unknown key"),
    "bad type": (TINY.replace("steps: 200", "steps: 200k"), "tiny.yaml:5:1: steps: Input should be a valid integer"),
    "missing base task": (TINY.replace("task: right_turn_simple\n", ""), "tiny.yaml: task: required key missing"),
    "duplicate variant names": (TINY.replace("name: wpt", "name: turn"),
                                "tiny.yaml:12:5: variants.1.name: duplicate variant name 'turn'"),
    "unknown task": (TINY.replace("task: wpt", "task: wtp"), "variant 'wpt': unknown task 'wtp' (did you mean 'wpt'?)"),
    "unknown config key": (TINY.replace("time_limit=40", "time_limt=40"), "variants 'turn', 'wpt': "),
    "unknown observation": ("    overrides:\n      - env.observation.enabled=[camra]\n",
                            "tiny.yaml:12:5: variant 'wpt': "),
    "reserved key": ("    overrides:\n      - run.steps=10\n",
                     "tiny.yaml:15:9: variants.1.overrides.0: run.steps is set by the experiment"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_file_gets_one_line_and_exit_2(case, tmp_path, capsys):
    text, expected = BAD[case]
    text = TINY + text if not text.startswith("name:") else text
    path = _write(tmp_path, "tiny.yaml", text)
    assert main(["experiment", "run", str(path), "--root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"cardreamer experiment: error: {tmp_path}/") and expected in err, err
    assert "Traceback" not in err and not (tmp_path / "runs").exists()


def test_every_problem_of_a_file_is_its_own_line(tmp_path, capsys):
    text = TINY.replace("description: the random backbone, which has no size presets", "size: huge").replace("seeds: [0, 1]", "seeds: [0, 0]") + "colour: red\n"
    path = _write(tmp_path, "tiny.yaml", text.replace("name: wpt", "name: turn"))
    assert main(["experiment", "report", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[3] for line in lines] == ["size", "seeds", "colour", "variants.1.name"]


def test_stray_overrides_and_missing_files_are_errors(tmp_path, capsys):
    assert main(["experiment", "run", str(SHIPPED[0]), "--model.lr=1e-3"]) == 2
    assert "takes no config overrides (got --model.lr=1e-3)" in capsys.readouterr().err
    assert main(["experiment", "run", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err == f"cardreamer experiment: error: {tmp_path / 'nope.yaml'}: no such experiment file\n"


def test_shipped_experiments_validate_and_dry_run_every_variant_and_seed(tmp_path, capsys):
    assert {p.name for p in SHIPPED} == {"observation_modality.yaml", "observability.yaml", "intention_sharing.yaml"}
    for path in SHIPPED:
        spec = load_experiment(path).spec
        assert (spec.size, spec.steps, len(spec.seeds), spec.eval.every, spec.eval.episodes,
                spec.eval.final_episodes) == ("cpu", 100_000, 2, 10_000, 10, 50)
        for variant in spec.variants:  # every bird's-eye view a study trains on draws 1 s motion trails
            config, _ = build_config(variant.task or spec.task, list(variant.overrides))
            for name in config.env.observation["enabled"]:
                entry = config.env.observation[name]
                if entry.get("handler", name) == "birdeye":
                    assert BirdeyeConfig.model_validate(entry).motion_trail == 1.0, (path.name, variant.name, name)
        assert main(["experiment", "run", str(path), "--dry-run", "--root", str(tmp_path / path.stem)]) == 0
        lines = capsys.readouterr().out.splitlines()
        trains = [line for line in lines if line.startswith(f"{sys.executable} -m cardreamer.cli train ")]
        evals = [line for line in lines if line.startswith(f"{sys.executable} -m cardreamer.cli eval ")]
        assert len(trains) == len(evals) == len(spec.variants) * len(spec.seeds) == 6
        for variant in spec.variants:
            for seed in spec.seeds:
                logdir = tmp_path / path.stem / variant.name / f"seed{seed}"
                assert sum(f"--logdir {logdir} --seed {seed} " in line for line in trains) == 1
                assert sum(f"--json {logdir}/eval/final.json" in line for line in evals) == 1
        assert not (tmp_path / path.stem).exists()


def test_shipped_variants_build_their_env_and_step(tmp_path):
    """Each shipped variant's env as its train run would build it: reset and one step."""
    for path in SHIPPED:
        loaded = load_experiment(path)
        for run in plan(loaded, str(tmp_path))[:len(loaded.spec.variants)]:
            config = train_config(run)
            enabled = next(o for o in config.env.overrides if o.startswith("env.observation.enabled="))
            env = make_task_env(config.env.task, list(config.env.overrides), config.seed)
            try:
                obs, _ = env.reset(seed=0)
                obs, *_ = env.step(env.action_space.sample())
            finally:
                env.close()
            names = enabled.split("=", 1)[1].strip("[]").split(",")
            assert set(names) <= set(obs), (run.name, sorted(obs))
            assert all(np.asarray(obs[name]).any() for name in names), run.name  # something drawn
    assert os.listdir(tmp_path) == []


def test_the_documented_example_file_is_valid(tmp_path, capsys):
    doc = (REPO / "docs" / "experiments.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = _write(tmp_path, "example.yaml", example)
    assert main(["experiment", "run", str(path), "--dry-run", "--root", str(tmp_path / "runs")]) == 0
    assert capsys.readouterr().out.count(" -m cardreamer.cli train ") == 4
