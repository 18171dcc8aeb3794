"""The page in a real browser: Debian Chromium driven by Playwright.

Set CARDREAMER_VIS_SCREENSHOT=path.png to keep the screenshot of the full page.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FakeDrivingEnv, birdeye_frame, camera_frame, wait_until, write_history

from visualization.drive import drive
from visualization.publisher import make_publisher

CHROMIUM = "/usr/bin/chromium"
LOADED_MS = 60_000  # deadline of a wait for something the page does (CI machines and this one are loaded)
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
        assert self.publisher.wait_connected(LOADED_MS / 1000)
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


def wait_drawn(page, key: str, n: int) -> None:
    """Wait until the page has drawn ``n`` more frames of slot ``key``."""
    page.wait_for_function("([key, n]) => (window.visStats.frames[key] || 0) >= n", timeout=LOADED_MS,
                           arg=[key, page.evaluate("key => window.visStats.frames[key] || 0", key) + n])


def assert_no_frame_backlog(page, key: str, frames: int = 16) -> None:
    """The frames drawn next are fresh: a frame's age when drawn (the page's clock minus the time
    the publisher stamped into it, one machine's clock) is, in the median, at most three frame
    intervals as the page draws them. Flow control keeps one frame per stream in flight, so the
    age is one or two round trips however loaded the machine is; a backlog of k frames makes it k."""
    wait_drawn(page, key, frames)
    recent = page.evaluate("([key, n]) => window.visStats.recent[key].slice(-n)", [key, frames])
    ages = [drawn - published for drawn, published in recent]
    intervals = [b[0] - a[0] for a, b in itertools.pairwise(recent)]
    print(f"{key}: median age {np.median(ages):.0f} ms, median interval {np.median(intervals):.0f} ms")
    assert np.median(ages) <= 3 * np.median(intervals), (
        f"frames shown {np.median(ages):.0f} ms after they were published, {np.median(intervals):.0f} ms apart: "
        "they queue up on their way to the page")


def canvas_png(page, key):
    return page.eval_on_selector(f'.panel[data-key="{key}"] canvas', "c => c.toDataURL()")


def test_page_shows_live_frames_curves_episodes_and_saves_a_video(server, page, tmp_path):
    run = "right_turn-dreamerv3-seed0"
    write_history(server["logdir"] / run)
    write_history(server["logdir"] / "lane_merge-random", steps=8)
    with FakeTraining(server["url"], run) as training:
        page.goto(server["url"] + f"&run={run}")
        page.wait_for_function("() => (window.visStats.frames['0/camera'] || 0) >= 3", timeout=LOADED_MS)
        first = canvas_png(page, "0/camera")
        wait_drawn(page, "0/camera", 5)
        assert canvas_png(page, "0/camera") != first, "the live frame did not change"
        page.wait_for_function("() => window.visStats.chartPoints > 0 && document.querySelectorAll("
                               "'.uplot canvas').length >= 3", timeout=LOADED_MS)
        page.click("summary:has-text('World model')")
        page.wait_for_selector('.chart-card[data-title="train/loss/image"] canvas', timeout=LOADED_MS)
        assert page.eval_on_selector_all('#charts-world .chart-card', 'cs => cs.map(c => c.dataset.title)') == [
            "train/loss/image", "train/loss/reward"]  # train/loss/policy is in the actor-critic panel
        assert page.locator("#episode-rows tr").count() == 20
        assert page.locator("#speed").inner_text() != "—"
        assert page.locator(".term").count() == 5
        page.wait_for_selector("#dream-view:not([hidden])", timeout=LOADED_MS)
        training.publisher.publish_metrics(41_000, {"train/loss/image": 0.2})
        training.publisher.publish_episode({"step": 41_000, "return": 61.0, "length": 120, "success": True,
                                            "collision": False, "terminal_reason": "destination reached"})
        page.wait_for_function("() => window.visStats.episodes === 21", timeout=LOADED_MS)
        time.sleep(1.0)  # let the curves redraw and the latency labels settle
        screenshot = tmp_path / "visualizer.png"
        page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.stat().st_size > 50_000
        if os.environ.get("CARDREAMER_VIS_SCREENSHOT"):
            shutil.copy(screenshot, os.environ["CARDREAMER_VIS_SCREENSHOT"])
        assert_no_frame_backlog(page, "0/camera")

        # Hiding a stream removes its panel and the server stops sending it, while the others go on.
        page.click(".chip:text('birdeye_wpt')")
        assert page.locator('.panel[data-key="0/birdeye_wpt"]').count() == 0
        wait_drawn(page, "0/camera", 3)  # the watch message went before these frames' acks
        hidden_count = page.evaluate("window.visStats.received['0/birdeye_wpt']")
        wait_drawn(page, "0/camera", 5)
        assert page.evaluate("window.visStats.received['0/birdeye_wpt']") == hidden_count
        page.click(".chip:text('birdeye_wpt')")
        # A second env gets a tab of its own.
        page.click(".tab:text('env 1')")
        page.wait_for_function("() => (window.visStats.frames['1/camera'] || 0) >= 2", timeout=LOADED_MS)
        assert page.locator(".panel").count() == 1
        page.click(".tab:text('env 0')")

        page.click("#record-btn")
        page.wait_for_selector("#record-status.ok", timeout=LOADED_MS)
        saved = page.locator("#record-status").inner_text()
    videos = list((server["logdir"] / run / "videos").glob("*.mp4"))
    assert {v.name for v in videos} == {n.split("/")[-1] for n in saved.removeprefix("Saved ").split(", ")}
    assert len(videos) == 2


def test_empty_server_explains_what_to_do(server, page):
    page.goto(server["url"])
    page.wait_for_selector(".conn.ok", timeout=LOADED_MS)
    assert page.locator("#welcome").is_visible()
    assert "No runs yet" in page.locator("#welcome").inner_text()
    assert "cardreamer serve --logdir" in page.locator("#welcome").inner_text()


def test_run_without_live_data_says_so(server, page):
    write_history(server["logdir"] / "finished-run", steps=4)
    page.goto(server["url"])
    page.wait_for_selector("#live-empty:not([hidden])", timeout=LOADED_MS)
    assert "Nothing is streaming for this run" in page.locator("#live-empty").inner_text()
    page.wait_for_function("() => window.visStats.chartPoints > 0", timeout=LOADED_MS)


class StopDriving(Exception):
    """Raised by the env's step to end the test's driving loop."""


def test_keyboard_drives_the_env_from_the_page(server, page):
    env = FakeDrivingEnv(episode_length=10_000)
    stop = threading.Event()
    step = env.step

    def step_until_stopped(action):
        if stop.is_set():
            raise StopDriving
        return step(action)

    def drive_until_stopped():
        with contextlib.suppress(StopDriving):
            drive(env, server["url"], run="drive-fake", hz=50.0)

    env.step = step_until_stopped
    loop = threading.Thread(target=drive_until_stopped)
    loop.start()
    try:
        page.goto(server["url"] + "&run=drive-fake")
        page.wait_for_selector("#drive-card:not([hidden])", timeout=LOADED_MS)
        page.wait_for_function("() => (window.visStats.frames['0/birdeye_wpt'] || 0) >= 2", timeout=LOADED_MS)
        page.keyboard.down("ArrowUp")
        page.keyboard.down("d")
        page.wait_for_function("() => document.querySelector('kbd[data-key=\"up\"]').classList.contains('down')")
        assert wait_until(lambda: any(a[0] > 0 and a[1] > 0 for a in env.actions), timeout=LOADED_MS / 1000), (
            "pressing the up arrow and D never reached the env")
        page.keyboard.up("ArrowUp")
        page.keyboard.up("d")
        driven = [a for a in env.actions if a[0] > 0 and a[1] > 0]
        np.testing.assert_allclose(driven[0], [3.0, 0.48], rtol=1e-5)  # full throttle, 0.6 of right lock
        assert wait_until(lambda: np.allclose(env.actions[-1], [0.0, 0.0]), timeout=LOADED_MS / 1000), (
            "keys released in the page must release the car's controls")
        released = len(env.actions)
        assert wait_until(lambda: len(env.actions) >= released + 25, timeout=LOADED_MS / 1000)
        assert np.allclose(env.actions[released:], 0.0), "the released controls did not stay released"
    finally:
        stop.set()
        loop.join(timeout=LOADED_MS / 1000)
