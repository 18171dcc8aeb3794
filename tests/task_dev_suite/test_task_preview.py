"""`cardreamer task preview`: the scene PNG, and the live page that re-renders on edits."""
from __future__ import annotations

import json
import os
import time
import urllib.request

import cv2
import numpy as np
import pytest

from cardreamer.cli import main
from task_dev_suite.preview import EGO, ERROR, FLOW_COLOURS, PreviewServer, preview_task

SPEC = """\
task:
  name: preview_me
  map: intersection
  ego:
    spawn: {x: 70, y: -5.2}
    route: [[-60, -5.2]]
  traffic:
    flows:
      - spawn: {x: 5.2, y: 90}
        route: [[5.2, -60]]
  stop_signs: [[40, -5.2]]
"""


def colour_pixels(image: np.ndarray, colour) -> np.ndarray:
    return np.argwhere(np.all(image == np.array(colour, np.uint8), axis=-1))


def test_preview_draws_spawns_routes_and_labels(tmp_path, capsys):
    spec = tmp_path / "scene.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "scene.png"
    assert main(["task", "preview", str(spec), "-o", str(out)]) == 0
    image = cv2.imread(str(out))
    assert image is not None and image.shape[1] >= 1000
    rendered, _report = preview_task(spec)
    assert np.array_equal(rendered, image)   # the PNG is lossless and rendering is deterministic
    ego = colour_pixels(image, EGO)
    flow = colour_pixels(image, FLOW_COLOURS[0])
    assert len(ego) > 50 and len(flow) > 50
    # the ego spawn (x = 70 east of the centre) is right of the flow's route (x = 5.2)
    assert np.median(ego[:, 1]) > np.median(flow[:, 1])
    assert len(colour_pixels(image, ERROR)) == 0


def test_preview_of_a_broken_spec_marks_the_problems(tmp_path):
    spec = tmp_path / "scene.yaml"
    spec.write_text(SPEC.replace("{x: 5.2, y: 90}", "{x: 40, y: 60}"))
    image, report = preview_task(spec)
    assert not report.ok
    assert len(colour_pixels(image, ERROR)) > 100  # the cross at the off-road spawn and the footer
    assert main(["task", "preview", str(spec), "-o", str(tmp_path / "x.png")]) == 1
    assert (tmp_path / "x.png").is_file()


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def test_live_preview_rerenders_when_the_file_changes(tmp_path):
    spec = tmp_path / "scene.yaml"
    spec.write_text(SPEC)
    server = PreviewServer(spec, interval=0.05)
    try:
        page = fetch(server.url).decode()
        assert "scene.yaml" in page and "preview.png" in page
        first = json.loads(fetch(server.url + "version"))
        assert first["status"] == "valid"
        png_before = fetch(server.url + "preview.png")
        spec.write_text(SPEC.replace("name: preview_me", "name: edited").replace("{x: 5.2, y: 90}", "{x: 40, y: 60}"))
        deadline = time.monotonic() + 10
        while json.loads(fetch(server.url + "version"))["version"] == first["version"]:
            assert time.monotonic() < deadline, "the preview did not re-render"
            time.sleep(0.05)
        now = json.loads(fetch(server.url + "version"))
        assert now["status"].startswith("INVALID")
        png_after = fetch(server.url + "preview.png")
        assert png_after != png_before
        assert cv2.imdecode(np.frombuffer(png_after, np.uint8), cv2.IMREAD_COLOR) is not None
    finally:
        server.close()


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="needs Debian chromium at /usr/bin/chromium")
def test_live_preview_in_chromium(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    spec = tmp_path / "scene.yaml"
    spec.write_text(SPEC)
    server = PreviewServer(spec, interval=0.05)
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
            page = browser.new_page()
            page.goto(server.url)
            page.wait_for_function("document.getElementById('scene').naturalWidth > 0", timeout=10000)
            assert "valid" in page.inner_text("#status")
            spec.write_text(SPEC.replace("{x: 5.2, y: 90}", "{x: 40, y: 60}"))
            page.wait_for_function("document.getElementById('status').textContent.includes('INVALID')", timeout=10000)
            page.wait_for_function("document.getElementById('scene').naturalWidth > 0", timeout=10000)
            browser.close()
    finally:
        server.close()
