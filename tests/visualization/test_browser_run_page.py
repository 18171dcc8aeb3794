"""The run page in Debian Chromium (Playwright): curves, overlays, episodes, dream, both widths.

Set CARDREAMER_VIS_SCREENSHOTS=folder to keep one full-page screenshot per view (the docs' images).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import birdeye_frame, camera_frame, wait_until, write_training_run

from visualization.publisher import make_publisher

CHROMIUM = "/usr/bin/chromium"
LOADED_MS = 60_000  # deadline of a wait for something the page does (CI machines and this one are loaded)
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium at /usr/bin/chromium"),
]
VIEWPORTS = {"desktop": (1440, 900), "phone": (390, 844)}
RUN = "wpt-dreamerv3-seed0"
SERIES_COLOR = (0x5C, 0xC8, 0xFF)  # the first run's colour (PALETTE[0] in app.js)


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture(params=list(VIEWPORTS))
def page(request, browser):
    width, height = VIEWPORTS[request.param]
    page = browser.new_page(viewport={"width": width, "height": height})
    page.view_name = request.param
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    page.close()
    assert not errors, errors


def screenshot(page, name: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{name}-{page.view_name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000
    if os.environ.get("CARDREAMER_VIS_SCREENSHOTS"):
        shutil.copy(path, Path(os.environ["CARDREAMER_VIS_SCREENSHOTS"]) / path.name)
    return path


def no_sideways_scroll(page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide in a {widths[1]} px window"
    overflowing = page.evaluate("""[...document.querySelectorAll('.chart-card, .card-title, .section-head')]
        .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.className + ' ' + e.textContent.slice(0, 40))""")
    assert not overflowing, overflowing


def chart(page, title: str) -> str:
    return f'.chart-card[data-title="{title}"]'


def series_of(page, title: str) -> list[str]:
    return json.loads(page.get_attribute(chart(page, title), "data-series"))


def chart_png(page, title: str) -> str:
    return page.eval_on_selector(chart(page, title) + " canvas", "c => c.toDataURL()")


def colored_pixels(page, title: str, rgb=SERIES_COLOR) -> int:
    """Pixels of the chart's canvas within a small distance of ``rgb``."""
    return page.eval_on_selector(chart(page, title) + " canvas", """(c, rgb) => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let p = 0; p < d.length; p += 4)
          if (Math.abs(d[p] - rgb[0]) + Math.abs(d[p + 1] - rgb[1]) + Math.abs(d[p + 2] - rgb[2]) < 40) n++;
        return n; }""", list(rgb))


def wait_redrawn(page, since: int) -> None:
    page.wait_for_function("n => (window.visStats.redraws || 0) > n", arg=since, timeout=LOADED_MS)
    time.sleep(0.1)


@contextlib.contextmanager
def live_env(publisher) -> Iterator[None]:
    """Publish a bird's-eye frame and step info every 50 ms, as an env does, until the block ends."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(0.05):
            publisher.publish_frame("birdeye_wpt", birdeye_frame(time.time(), 128))
            publisher.publish_step({"speed": 5.0, "reward": 0.3, "r_speed": 0.25, "r_lane": -0.05})

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def test_curves_overlay_and_smoothing(server, page, tmp_path):
    logdir = server["logdir"]
    write_training_run(logdir / RUN)
    write_training_run(logdir / "wpt-dreamerv3-seed1", steps=45, seed=7)
    for seed in range(3):
        write_training_run(logdir / "exp" / "base" / f"seed{seed}", steps=40, seed=10 + seed)
    page.goto(server["url"] + f"&run={RUN}")
    page.wait_for_selector(chart(page, "success rate") + " canvas", timeout=LOADED_MS)
    titles = page.eval_on_selector_all("#charts-headline .chart-card", "cs => cs.map(c => c.dataset.title)")
    assert titles == ["success rate", "collision rate", "route completion", "episode return", "episode length",
                      "speed (episode mean, m/s)"]
    assert series_of(page, "success rate") == ["train", "eval"]
    # Grouped panels are collapsed and bookkeeping counters get no chart.
    assert page.locator("details.chart-group[open]").count() == 0
    page.click("summary:has-text('World model')")
    page.wait_for_selector(chart(page, "train/loss/image"), timeout=LOADED_MS)
    page.click("summary:has-text('System')")
    page.wait_for_selector(chart(page, "fps/env"), timeout=LOADED_MS)
    every = page.eval_on_selector_all(".chart-card", "cs => cs.map(c => c.dataset.title)")
    assert not {"next_eval", "env_steps", "episodes", "updates", "replay/steps"} & set(every)

    # Log scale, per chart.
    before = chart_png(page, "train/loss/image")
    page.click(chart(page, "train/loss/image") + " .log-toggle input")
    time.sleep(0.2)
    assert chart_png(page, "train/loss/image") != before
    assert chart_png(page, "train/loss/reward") and page.is_checked(chart(page, "train/loss/reward") + " input") is False

    # Smoothing changes the drawn path.
    redraws = page.evaluate("window.visStats.redraws")
    smoothed = chart_png(page, "episode return")
    page.eval_on_selector("#smoothing", "s => { s.value = '0'; s.dispatchEvent(new Event('input')); }")
    wait_redrawn(page, redraws)
    assert chart_png(page, "episode return") != smoothed

    # Hover readout: the step and each line's value.
    page.locator(chart(page, "episode return")).scroll_into_view_if_needed()
    box = page.locator(chart(page, "episode return") + " .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    readout = page.locator(chart(page, "episode return") + " .readout").inner_text()
    assert "step " in readout and "train" in readout and "eval" in readout

    # Two runs overlay: one colour per run; then an experiment's seeds as mean ± sd.
    redraws = page.evaluate("window.visStats.redraws")
    page.check('li.run[data-run="wpt-dreamerv3-seed1"] .compare')
    page.wait_for_function("() => document.querySelector('.chart-card[data-title=\"success rate\"]')"
                           ".dataset.series.includes('seed1')", timeout=LOADED_MS)
    assert series_of(page, "success rate") == [f"{RUN} · train", f"{RUN} · eval", "wpt-dreamerv3-seed1 · train",
                                               "wpt-dreamerv3-seed1 · eval"]
    assert "compare=wpt-dreamerv3-seed1" in page.url
    page.check('li.group[data-group="exp/base"] input')
    page.wait_for_function("() => document.querySelector('.chart-card[data-title=\"episode return\"]')"
                           ".dataset.series.includes('exp/base (mean ± sd)')", timeout=LOADED_MS)
    time.sleep(0.4)
    assert " ± " in page.locator(chart(page, "episode return") + " .readout").inner_text()
    page.mouse.move(0, 0)
    no_sideways_scroll(page)
    screenshot(page, "curves", tmp_path)


def test_one_point_series_are_drawn(server, page):
    run_dir = server["logdir"] / "first-eval"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 5000, "train/openloop/birdeye_wpt_mse": 0.02}) + "\n")
    (run_dir / "scores.jsonl").write_text(json.dumps({"step": 5000, "eval/episodes": 2, "eval/success_rate": 0.5,
                                                      "eval/return": 12.0}) + "\n")
    page.goto(server["url"] + "&run=first-eval")
    page.wait_for_selector(chart(page, "success rate") + " canvas", timeout=LOADED_MS)
    time.sleep(0.3)
    assert series_of(page, "success rate") == ["eval"]
    assert colored_pixels(page, "success rate") >= 12, "the only evaluation is not drawn"
    page.click("summary:has-text('World model')")
    page.wait_for_selector(chart(page, "train/openloop/birdeye_wpt_mse") + " canvas", timeout=LOADED_MS)
    time.sleep(0.3)
    assert colored_pixels(page, "train/openloop/birdeye_wpt_mse") >= 12


def test_episodes_one_row_each_and_recorded_videos_play(server, page, tmp_path):
    """A trainer writes each training episode to scores.jsonl and publishes it live; one row each.
    Rows with a recorded video play it: an evaluation's (by its step) and a recorded training
    episode's (run.train_video_every: by its step and number)."""
    logdir = server["logdir"]
    run_dir = logdir / RUN
    write_training_run(run_dir, steps=12, eval_every=5000)
    frames = np.stack([birdeye_frame(t / 10, 64) for t in range(20)])
    iio.imwrite(run_dir / "videos" / "eval-birdeye_wpt-0000010000.mp4", frames, extension=".mp4", fps=10)
    publisher = make_publisher(server["url"], None, RUN)
    assert publisher.wait_connected(LOADED_MS / 1000)
    try:
        page.goto(server["url"] + f"&run={RUN}")
        page.wait_for_selector("#episode-rows tr", timeout=LOADED_MS)
        files = [json.loads(line) for line in (run_dir / "scores.jsonl").read_text().splitlines()]
        assert page.locator("#episode-rows tr").count() == len(files)
        # New episodes, published live (with the env) and appended to the file (with the step); the
        # trainer recorded the second one, and wrote its video before its row.
        iio.imwrite(run_dir / "videos" / "train-birdeye_wpt-0000013001-ep41.mp4", frames[::-1][:, :, :48],
                    extension=".mp4", fps=10)
        for k in range(3):
            episode = {"return": 50.0 + k, "length": 200 + k, "success": 1.0, "collision": 0.0, "number": 40 + k}
            publisher.publish_episode(episode, env_index=k)
            with open(run_dir / "scores.jsonl", "a") as f:
                f.write(json.dumps({"step": 13_000 + k, **{f"episode/{key}": v for key, v in episode.items()}}) + "\n")
        page.wait_for_function("n => window.visStats.episodes === n", arg=len(files) + 3, timeout=LOADED_MS)
        assert wait_until(lambda: page.locator("#episode-rows tr").first.inner_text().split("\t")[2:4]
                          == ["13002", "2"], timeout=LOADED_MS / 1000), page.locator("#episode-rows tr").first.inner_text()
        assert page.locator("#episode-rows tr").count() == len(files) + 3
        assert page.locator("#episode-rows tr.eval").count() == 2
        assert page.locator("#episode-rows tr.eval").first.inner_text().startswith("eval ×4\t—\t10000")
        page.wait_for_selector("#episode-rows tr.train.has-video", timeout=LOADED_MS)
        assert page.locator("#episode-rows tr.has-video").count() == 3  # both evaluations and episode #41
        assert page.locator("#episode-rows tr.train.has-video").inner_text().startswith("train\t#41\t13001\t1\t")

        for row, src, title, width in [
                ("tr.eval.has-video >> nth=0", "eval-birdeye_wpt-0000010000.mp4", "eval episode at step 10,000", 64),
                ("tr.train.has-video", "train-birdeye_wpt-0000013001-ep41.mp4", "train episode #41 at step 13,001", 48)]:
            page.click(f"#episode-rows {row}")
            page.wait_for_selector("#episode-video:not([hidden])")
            page.wait_for_function("src => document.querySelector('#episode-video video').src.includes(src) && "
                                   "document.querySelector('#episode-video video').readyState >= 1", arg=src,
                                   timeout=LOADED_MS)
            assert page.get_attribute("#episode-video video", "src").startswith(f"/runs/{RUN}/videos/{src}")
            assert page.inner_text("#episode-video .video-title") == title
            assert page.inner_text("#episode-video .video-streams") == "birdeye_wpt"
            size = page.eval_on_selector("#episode-video video", "v => [v.videoWidth, v.getBoundingClientRect().width]")
            assert size[0] == width and 0 < size[1] <= page.viewport_size["width"]
            no_sideways_scroll(page)
        page.wait_for_function("() => document.querySelector('#episode-video video').currentTime > 0.3",
                               timeout=LOADED_MS)  # it plays
        screenshot(page, "episodes", tmp_path)
    finally:
        publisher.close()


def test_dream_strips_and_live_view(server, page, tmp_path):
    """Two replay samples of 12 frames stacked vertically, 5 of them observed (from config.yaml)."""
    run_dir = server["logdir"] / RUN
    write_training_run(run_dir, steps=20)
    (run_dir / "config.yaml").write_text("model:\n  report_context: 5\n")
    publisher = make_publisher(server["url"], None, RUN)
    assert publisher.wait_connected(LOADED_MS / 1000)
    with contextlib.ExitStack() as stack:
        stack.callback(publisher.close)
        real = np.stack([np.concatenate([birdeye_frame(t / 4, 32), camera_frame(t / 4, 32)]) for t in range(12)])
        drift = np.linspace(0, 60, 12)[:, None, None, None]
        imagined = np.clip(real * (1 - drift / 150) + drift * (np.arange(12) >= 5)[:, None, None, None], 0, 255)
        page.goto(server["url"] + f"&run={RUN}")
        page.wait_for_selector(chart(page, "success rate") + " canvas", timeout=LOADED_MS)
        with open(run_dir / "scores.jsonl", "a") as f:  # the episode the first sample replays has ended
            f.write(json.dumps({"step": 19_500, "episode/number": 37, "episode/return": 12.5, "episode/length": 60,
                                "episode/success": 0.0, "episode/collision": 1.0}) + "\n")
        samples = [{"env": 1, "env_steps": [12_340, 12_362], "episodes": [{"number": 37, "steps": [40, 51]}]},
                   {"env": 0, "env_steps": [18_001, 18_023], "episodes": [{"number": 41, "steps": [93, 99]},
                                                                          {"number": 44, "steps": [0, 4]}]}]
        publisher.publish_dream(real, imagined.astype(np.uint8), step=20_000, rows=2, samples=samples)
        stack.enter_context(live_env(publisher))
        page.wait_for_selector("#dream-view:not([hidden])", timeout=LOADED_MS)
        strips = page.evaluate("""['dream-real', 'dream-imagined', 'dream-error'].map(id => {
            const c = document.getElementById(id), r = c.getBoundingClientRect();
            return [c.width, c.height, r.width, r.height, getComputedStyle(c).imageRendering]; })""")
        for width, height, shown_w, shown_h, rendering in strips:
            assert (width, height) == (12 * 32, 32)  # one sample: 12 frames of 32x32 side by side
            assert abs(shown_w / shown_h - 12) < 0.1, "the strip is not shown at its aspect ratio"
            assert shown_w >= 12 * 40 - 1 and rendering == "pixelated"
        assert strips[0][2] == strips[1][2] == strips[2][2]  # real and imagined frames line up
        mark = page.eval_on_selector(".context-mark", "m => m.getBoundingClientRect().width")
        assert abs(mark - strips[0][2] * 5 / 12) < 3
        assert page.locator("#dream-context-label").inner_text() == "observed 5 · imagined 7"
        assert page.locator("#dream-samples .tab").count() == 2
        origin = page.locator("#dream-origin")
        assert origin.inner_text() == "env 1 · episode #37, its steps 40–51 · collected at env steps 12,340–12,362"
        page.wait_for_selector("#episode-rows tr.dreamed", timeout=LOADED_MS)  # once the server read the file
        assert page.locator("#episode-rows tr.dreamed").count() == 1
        assert page.locator("#episode-rows tr.dreamed").inner_text().startswith("train\t#37\t19500")
        first = page.eval_on_selector("#dream-real", "c => c.toDataURL()")
        page.click("#dream-samples .tab:text('sample 2')")
        assert page.eval_on_selector("#dream-real", "c => c.toDataURL()") != first
        assert origin.inner_text() == ("env 0 · episodes #41 (steps 93–99), #44 (0–4) · collected at env steps "
                                       "18,001–18,023")
        assert page.locator("#episode-rows tr.dreamed").count() == 0  # neither episode has ended
        page.wait_for_function("() => (window.visStats.frames['0/birdeye_wpt'] || 0) >= 1", timeout=LOADED_MS)
        panel = page.eval_on_selector('.panel[data-key="0/birdeye_wpt"]', "p => p.getBoundingClientRect().width")
        main = page.eval_on_selector("main", "m => m.clientWidth")
        if page.view_name == "phone":
            assert panel >= main - 40, f"the live view is {panel:.0f} px of {main} px"
        no_sideways_scroll(page)
        time.sleep(0.5)
        screenshot(page, "live-dream", tmp_path)


def test_header_says_what_the_trainer_is_doing(server, page, tmp_path):
    """During the first jit the trainer blocks for minutes: the header's clock keeps counting."""
    publisher = make_publisher(server["url"], None, RUN)
    assert publisher.wait_connected(LOADED_MS / 1000)
    try:
        counters = {"detail": "", "env_steps": 1024, "updates": 0, "steps": 100_000, "fps": 40.0, "ups": 0.0}
        publisher.publish_status({"phase": "compiling", "label": "compiling the train step",
                                  "since": time.time() - 65, "eta": None, **counters})
        page.goto(server["url"] + f"&run={RUN}")
        page.wait_for_selector("#run-status:not([hidden])", timeout=LOADED_MS)
        phase = page.locator("#run-phase")
        assert wait_until(lambda: phase.inner_text().startswith("compiling the train step… 1:0"), timeout=5)
        first = phase.inner_text()
        assert wait_until(lambda: phase.inner_text() != first, timeout=3), "the clock stopped"
        assert page.inner_text("#run-status-text") == "1024 / 100.0k env steps · 0 updates · 40.0 env steps/s"
        assert "compiling" in page.inner_text(f'li.run[data-run="{RUN}"] .run-meta')
        no_sideways_scroll(page)
        screenshot(page, "status-compiling", tmp_path)
        publisher.publish_status({"phase": "training", "label": "training", "since": time.time(), "eta": 7380.0,
                                  **counters, "env_steps": 52_300, "updates": 1600, "fps": 6.4, "ups": 0.2})
        assert wait_until(lambda: phase.inner_text() == "training", timeout=5)
        text = page.inner_text("#run-status-text")
        assert text == "52.3k / 100.0k env steps · 1600 updates · 6.4 env steps/s · 0.20 updates/s · ETA 2 h 3 min"
        width = page.eval_on_selector("#run-progress", "e => e.getBoundingClientRect().width / e.parentElement.getBoundingClientRect().width")
        assert abs(width - 0.523) < 0.01
        no_sideways_scroll(page)
    finally:
        publisher.close()
    # Once the trainer is gone, the header does not claim it is still at work.
    page.wait_for_selector("#run-status", state="hidden", timeout=LOADED_MS)


def test_log_panel_streams_the_run_log(server, page, tmp_path):
    """The trainer's train.log, in the Log panel: lines coloured by level, new lines as they are appended,
    warnings and errors only on request; a run outside the server's logdir sends its lines live."""
    run_dir = server["logdir"] / RUN
    write_training_run(run_dir, steps=10)
    lines = ["2026-12-04T03:00:00Z INFO    start: dreamerv3 (cpu) on wpt, 100,000 env steps, fresh",
             "2026-12-04T03:00:01Z INFO    filling the replay at 0 env steps",
             "2026-12-04T03:02:11Z INFO    compiling the train step: 68.2 s, at 1,024 env steps",
             "2026-12-04T03:02:11Z INFO    training at 1,024 env steps"]
    (run_dir / "train.log").write_text("".join(line + "\n" for line in lines))
    page.goto(server["url"] + f"&run={RUN}")
    page.wait_for_function("() => window.visStats.logLines === 4", timeout=LOADED_MS)
    assert page.locator("#log-lines .log-line").all_inner_texts() == lines
    more = ["2026-12-04T03:05:40Z WARNING env reset: the world was lost; recovering the world in 10 s (1 of 5)",
            "2026-12-04T03:10:00Z INFO    evaluation at 10,000 env steps: 4 episodes, return 41.0 ± 3.2, success 75%",
            "2026-12-04T03:12:00Z ERROR   Traceback (most recent call last):",
            "2026-12-04T03:12:00Z ERROR   RuntimeError: the update broke"]
    with open(run_dir / "train.log", "a") as f:
        f.write("".join(line + "\n" for line in more))
    page.wait_for_function("() => window.visStats.logLines === 8", timeout=LOADED_MS)
    assert page.locator("#log-lines .log-line.warning").all_inner_texts() == more[:1]
    assert page.locator("#log-lines .log-line.error").count() == 2
    assert page.inner_text("#log-summary") == "8 lines · 1 warning · 2 errors"
    colors = page.eval_on_selector_all("#log-lines .log-line", "ls => ls.map(l => getComputedStyle(l).color)")
    assert len({colors[0], colors[4], colors[6]}) == 3  # info, warning and error lines look different
    page.check("#log-problems")
    assert page.locator("#log-lines .log-line").count() == 3
    no_sideways_scroll(page)
    page.locator("#log-card").scroll_into_view_if_needed()
    screenshot(page, "log", tmp_path)
    page.uncheck("#log-problems")

    # A run whose directory this server does not hold: its trainer's lines arrive live.
    publisher = make_publisher(server["url"], None, "elsewhere")
    assert publisher.wait_connected(LOADED_MS / 1000)
    try:
        page.goto(server["url"] + "&run=elsewhere")
        page.wait_for_selector("#log-empty:not([hidden])", timeout=LOADED_MS)
        publisher.publish_log(lines[:2])
        page.wait_for_function("() => window.visStats.logLines === 2", timeout=LOADED_MS)
        assert page.locator("#log-lines .log-line").all_inner_texts() == lines[:2]
    finally:
        publisher.close()
