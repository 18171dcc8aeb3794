"""`map build / validate / show` through an argparse parser, as the cardreamer CLI wires them."""

import argparse

import cv2
import pytest

from task_dev_suite.builtin_maps import MAPS_DIR
from task_dev_suite.map_cli import register


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cardreamer")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_build_then_validate(tmp_path, capsys):
    out = tmp_path / "stop.xodr"
    assert run(["map", "build", str(MAPS_DIR / "stop_sign.yaml"), "-o", str(out), "--grid-step", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "PASSED" in printed and "[ok] landmarks" in printed
    assert out.read_bytes() == (MAPS_DIR / "stop_sign.xodr").read_bytes()
    assert run(["map", "validate", str(out), "--grid-step", "2"]) == 0


def test_build_reports_spec_errors(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\nroads: 3\n")
    assert run(["map", "build", str(spec), "-o", str(tmp_path / "bad.xodr")]) == 2
    printed = capsys.readouterr().out
    assert str(spec) in printed and "roads" in printed
    assert not (tmp_path / "bad.xodr").exists()


def test_validate_fails_on_malformed_file(tmp_path, capsys):
    bad = tmp_path / "bad.xodr"
    bad.write_text("<OpenDRIVE><road")
    assert run(["map", "validate", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {bad}: not well-formed XML")


def test_show_draws_lanes_and_signals(tmp_path):
    out = tmp_path / "intersection.png"
    assert run(["map", "show", str(MAPS_DIR / "intersection.xodr"), "-o", str(out)]) == 0
    image = cv2.imread(str(out))
    assert image.shape[0] > 400 and image.shape[1] > 400
    red = (image[:, :, 2] > 200) & (image[:, :, 1] < 80) & (image[:, :, 0] < 80)
    assert red.sum() > 4 * 10  # four traffic lights
    assert (image < 250).any(axis=2).mean() > 0.01  # lanes drawn


def test_map_command_required():
    with pytest.raises(SystemExit):
        run(["map"])
