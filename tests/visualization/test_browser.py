"""The page in a real browser: Debian Chromium driven by Playwright.

Set CARDREAMER_VIS_SCREENSHOT=path.png to keep the screenshot of the full page.
"""

from __future__ import annotations

import math
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FakeDrivingEnv, birdeye_frame, camera_frame, write_history

from visualization.drive import drive
from visualization.publisher import make_publisher

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium at /usr/bin/chromium"),
]


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    page.close()
    assert not errors, errors


class FakeTraining:
    """Publishes what a training run would: two camera-like streams, step info, episodes, a dream."""

    def __init__(self, url: str, run: str):
        self.publisher = make_publisher(url, None, run)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        assert self.publisher.wait_connected(5)
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join()
        self.publisher.close()

    def _loop(self):
        start = time.monotonic()
        while not self.stop.wait(0.04):
            t = time.monotonic() - start
            self.publisher.publish_frame("camera", camera_frame(t, 192))
            self.publisher.publish_frame("birdeye_wpt", birdeye_frame(t, 128))
            self.publisher.publish_frame("camera", camera_frame(t + 3, 96), env_index=1)
            self.publisher.publish_step({
                "speed": np.float32(6 + math.sin(t)), "reward": 0.31 + 0.05 * math.sin(t),
                "r_speed": np.float64(0.28), "r_waypoint": 0.12, "r_lane": -0.04 * (1 + math.sin(t)),
                "r_steer": -0.02, "r_collision": 0.0, "terminal_reason": None, "lane_offset": 0.3 * math.sin(t)})
            if int(t / 0.04) % 50 == 1:
                real = np.stack([camera_frame(t + k / 10, 64) for k in range(16)])
                drift = np.linspace(0, 40, 16)[:, None, None, None]
                imagined = np.clip(real.astype(float) * (1 - drift / 120) + drift, 0, 255).astype(np.uint8)
                self.publisher.publish_dream(real, imagined, step=40_000)


def canvas_png(page, key):
    return page.eval_on_selector(f'.panel[data-key="{key}"] canvas', "c => c.toDataURL()")


def test_page_shows_live_frames_curves_episodes_and_saves_a_video(server, page, tmp_path):
    run = "right_turn-dreamerv3-seed0"
    write_history(server["logdir"] / run)
    write_history(server["logdir"] / "lane_merge-random", steps=8)
    with FakeTraining(server["url"], run) as training:
        page.goto(server["url"] + f"&run={run}")
        page.wait_for_function("() => (window.visStats.frames['0/camera'] || 0) >= 3", timeout=10_000)
        first = canvas_png(page, "0/camera")
        page.wait_for_function("n => window.visStats.frames['0/camera'] >= n", arg=page.evaluate(
            "window.visStats.frames['0/camera']") + 5, timeout=10_000)
        assert canvas_png(page, "0/camera") != first, "the live frame did not change"
        page.wait_for_function("() => window.visStats.chartPoints > 0 && document.querySelectorAll("
                               "'.uplot canvas').length >= 3", timeout=10_000)
        page.click("summary:has-text('World model')")
        page.wait_for_selector('.chart-card[data-title="train/loss/image"] canvas', timeout=5_000)
        assert page.eval_on_selector_all('#charts-world .chart-card', 'cs => cs.map(c => c.dataset.title)') == [
            "train/loss/image", "train/loss/reward"]  # train/loss/policy is in the actor-critic panel
        assert page.locator("#episode-rows tr").count() == 20
        assert page.locator("#speed").inner_text() != "—"
        assert page.locator(".term").count() == 5
        page.wait_for_selector("#dream-view:not([hidden])", timeout=10_000)
        training.publisher.publish_metrics(41_000, {"train/loss/image": 0.2})
        training.publisher.publish_episode({"step": 41_000, "return": 61.0, "length": 120, "success": True,
                                            "collision": False, "terminal_reason": "destination reached"})
        page.wait_for_function("() => window.visStats.episodes === 21", timeout=5_000)
        time.sleep(1.0)  # let the curves redraw and the latency labels settle
        screenshot = tmp_path / "visualizer.png"
        page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.stat().st_size > 50_000
        if os.environ.get("CARDREAMER_VIS_SCREENSHOT"):
            shutil.copy(screenshot, os.environ["CARDREAMER_VIS_SCREENSHOT"])
        latency = page.evaluate("window.visStats.latencyMs['0/camera']")
        assert latency < 500, f"frame shown {latency:.0f} ms after it was published"

        # Hiding a stream removes its panel and the server stops sending it.
        page.click(".chip:text('birdeye_wpt')")
        assert page.locator('.panel[data-key="0/birdeye_wpt"]').count() == 0
        time.sleep(0.3)
        hidden_count = page.evaluate("window.visStats.frames['0/birdeye_wpt']")
        time.sleep(0.5)
        assert page.evaluate("window.visStats.frames['0/birdeye_wpt']") == hidden_count
        page.click(".chip:text('birdeye_wpt')")
        # A second env gets a tab of its own.
        page.click(".tab:text('env 1')")
        page.wait_for_function("() => (window.visStats.frames['1/camera'] || 0) >= 2", timeout=5_000)
        assert page.locator(".panel").count() == 1
        page.click(".tab:text('env 0')")

        page.click("#record-btn")
        page.wait_for_selector("#record-status.ok", timeout=20_000)
        saved = page.locator("#record-status").inner_text()
    videos = list((server["logdir"] / run / "videos").glob("*.mp4"))
    assert {v.name for v in videos} == {n.split("/")[-1] for n in saved.removeprefix("Saved ").split(", ")}
    assert len(videos) == 2


def test_empty_server_explains_what_to_do(server, page):
    page.goto(server["url"])
    page.wait_for_selector(".conn.ok", timeout=10_000)
    assert page.locator("#welcome").is_visible()
    assert "No runs yet" in page.locator("#welcome").inner_text()
    assert "cardreamer serve --logdir" in page.locator("#welcome").inner_text()


def test_run_without_live_data_says_so(server, page):
    write_history(server["logdir"] / "finished-run", steps=4)
    page.goto(server["url"])
    page.wait_for_selector("#live-empty:not([hidden])", timeout=10_000)
    assert "Nothing is streaming for this run" in page.locator("#live-empty").inner_text()
    page.wait_for_function("() => window.visStats.chartPoints > 0", timeout=10_000)


def test_keyboard_drives_the_env_from_the_page(server, page):
    env = FakeDrivingEnv(episode_length=10_000)
    stop_after = 150  # 3 s at 50 Hz
    loop = threading.Thread(target=drive, args=(env, server["url"]), kwargs={"run": "drive-fake", "hz": 50.0,
                                                                            "max_steps": stop_after})
    loop.start()
    page.goto(server["url"] + "&run=drive-fake")
    page.wait_for_selector("#drive-card:not([hidden])", timeout=10_000)
    page.wait_for_function("() => (window.visStats.frames['0/birdeye_wpt'] || 0) >= 2", timeout=10_000)
    page.keyboard.down("ArrowUp")
    page.keyboard.down("d")
    page.wait_for_function("() => document.querySelector('kbd[data-key=\"up\"]').classList.contains('down')")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not any(a[0] > 0 and a[1] > 0 for a in env.actions):
        time.sleep(0.02)
    page.keyboard.up("ArrowUp")
    page.keyboard.up("d")
    loop.join(timeout=10)
    driven = [a for a in env.actions if a[0] > 0 and a[1] > 0]
    assert driven, "pressing the up arrow and D never reached the env"
    np.testing.assert_allclose(driven[0], [3.0, 0.48], rtol=1e-5)  # full throttle, 0.6 of right lock
    assert np.allclose(env.actions[-1], [0.0, 0.0]), "keys released in the page must release the car's controls"
