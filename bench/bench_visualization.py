"""Benchmark the visualizer: frames/s delivered per stream and publish-to-display latency.

A publisher process streams two image streams (``camera`` as JPEG, ``birdeye`` as PNG) of one size
at a source rate above the server's cap; 1 or 4 viewer processes (Socket.IO clients that decode
each frame with OpenCV, as a browser would, then acknowledge it) measure the frames they get and
how old each frame is on arrival. ``--browser`` also opens the real page in Chromium and reads the
age of each frame when it is drawn. Everything runs on loopback on this machine.

    python bench/bench_visualization.py                 # 128² and 512², 1 and 4 viewers, 6 s each
    python bench/bench_visualization.py --browser       # plus the page in Chromium

Targets: >= 20 frames/s per stream at 128², >= 10 at 512², latency < 100 ms.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STREAMS = ("camera", "birdeye")


def synthetic_frames(size: int, count: int = 16) -> dict[str, list[np.ndarray]]:
    """Camera-like and bird's-eye-like RGB frames, varied so that every frame is different."""
    import cv2

    rng = np.random.default_rng(0)
    frames: dict[str, list[np.ndarray]] = {"camera": [], "birdeye": []}
    for k in range(count):
        sky = np.linspace(170, 70, size // 2)[:, None, None] * np.array([0.55, 0.75, 1.0])
        camera = np.zeros((size, size, 3), np.uint8)
        camera[: size // 2] = sky.astype(np.uint8)
        camera[size // 2:] = (70, 70, 76)
        camera = np.clip(camera.astype(int) + rng.integers(-6, 6, camera.shape), 0, 255).astype(np.uint8)
        cv2.rectangle(camera, (size // 2 - size // 10 + k, size * 3 // 5), (size // 2 + size // 10 + k, size * 7 // 10),
                      (200, 40, 40), -1)
        birdeye = np.full((size, size, 3), (24, 28, 36), np.uint8)
        cv2.rectangle(birdeye, (size * 3 // 8, 0), (size * 5 // 8, size), (70, 74, 82), -1)
        cv2.rectangle(birdeye, (size // 2, (k * size // count)), (size // 2 + size // 16, (k * size // count) + size // 8),
                      (240, 90, 80), -1)
        frames["camera"].append(camera)
        frames["birdeye"].append(birdeye)
    return frames


def publish(url: str, run: str, size: int, seconds: float, rate: float, ready, start) -> None:
    from visualization.publisher import make_publisher

    frames = synthetic_frames(size)
    publisher = make_publisher(url, None, run, max_fps=1000)
    assert publisher.wait_connected(10)
    ready.set()
    start.wait()
    end = time.monotonic() + seconds
    next_time = time.monotonic()
    i = 0
    while time.monotonic() < end:
        for stream in STREAMS:
            publisher.publish_frame(stream, frames[stream][i % len(frames[stream])])
        i += 1
        next_time += 1.0 / rate
        time.sleep(max(0.0, next_time - time.monotonic()))
    publisher.close()


def view(base_url: str, run: str, seconds: float, results, ready, start) -> None:
    import cv2

    from visualization.viewer import OrderedClient

    received: list[tuple[str, float, float]] = []
    client = OrderedClient(reconnection=False)
    measuring = {"on": False}

    def on_frame(data):
        arrival = time.time()
        cv2.imdecode(np.frombuffer(data["data"], np.uint8), cv2.IMREAD_COLOR)
        if measuring["on"]:
            received.append((data["stream"], arrival, arrival - data["t"]))
        if client.connected:
            client.emit("ack", {"key": data["key"]}, namespace="/view")

    client.on("frame", on_frame, namespace="/view")
    client.connect(base_url, namespaces=["/view"], transports=["websocket"])
    client.emit("join", {"run": run}, namespace="/view")
    ready.set()
    start.wait()
    time.sleep(1.0)  # warm-up
    measuring["on"] = True
    time.sleep(seconds - 1.5)
    measuring["on"] = False
    results.put(received)
    # Stop the stream before disconnecting, so no frame is cut in half by the disconnection.
    client.emit("watch", {"envs": []}, namespace="/view")
    time.sleep(0.3)
    client.disconnect()


def summarize(samples: list[tuple[str, float, float]], duration: float) -> dict[str, dict[str, float]]:
    summary = {}
    for stream in STREAMS:
        ages = [age for s, _, age in samples if s == stream]
        summary[stream] = {
            "fps": len(ages) / duration,
            "latency_median_ms": 1000 * statistics.median(ages) if ages else float("nan"),
            "latency_p95_ms": 1000 * float(np.percentile(ages, 95)) if ages else float("nan"),
        }
    return summary


def run_case(url: str, size: int, viewers: int, seconds: float, rate: float) -> dict:
    ctx = mp.get_context("spawn")
    base = url.split("/?")[0]
    run = f"bench-{size}-{viewers}"
    results = ctx.Queue()
    start = ctx.Event()
    readies = [ctx.Event() for _ in range(viewers + 1)]
    processes = [ctx.Process(target=view, args=(base, run, seconds, results, readies[i], start))
                 for i in range(viewers)]
    processes.append(ctx.Process(target=publish, args=(url, run, size, seconds, rate, readies[-1], start)))
    for process in processes:
        process.start()
    for ready in readies:
        ready.wait(60)
    start.set()
    per_viewer = [summarize(results.get(timeout=seconds + 60), seconds - 1.5) for _ in range(viewers)]
    for process in processes:
        process.join(30)
    return {"size": size, "viewers": viewers, "per_viewer": per_viewer}


def browser_case(url: str, size: int, seconds: float, rate: float) -> dict:
    from playwright.sync_api import sync_playwright

    ctx = mp.get_context("spawn")
    run = f"bench-browser-{size}"
    ready, start = ctx.Event(), ctx.Event()
    publisher = ctx.Process(target=publish, args=(url, run, size, seconds + 3, rate, ready, start))
    publisher.start()
    ready.wait(60)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}&run={run}")
        start.set()
        page.wait_for_function("() => (window.visStats.frames['0/camera'] || 0) > 3", timeout=30_000)
        time.sleep(1.0)
        first = page.evaluate("({...window.visStats.frames})")
        ages: dict[str, list[float]] = {s: [] for s in STREAMS}
        began = time.monotonic()
        while time.monotonic() - began < seconds - 1.5:
            latest = page.evaluate("window.visStats.latencyMs")
            for stream in STREAMS:
                ages[stream].append(latest.get(f"0/{stream}", float("nan")))
            time.sleep(0.05)
        elapsed = time.monotonic() - began
        last = page.evaluate("({...window.visStats.frames})")
        browser.close()
    publisher.join(30)
    return {"size": size, "browser": {s: {
        "fps": (last[f"0/{s}"] - first[f"0/{s}"]) / elapsed,
        "latency_median_ms": statistics.median(ages[s]),
        "latency_p95_ms": float(np.percentile(ages[s], 95))} for s in STREAMS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--viewers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rate", type=float, default=60.0, help="frames/s the publisher offers per stream")
    parser.add_argument("--max-fps", type=float, default=30.0, help="the server's cap per stream and viewer")
    parser.add_argument("--browser", action="store_true", help="also measure the page in Chromium")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    from visualization.cli import start_server_subprocess

    process, url = start_server_subprocess(tempfile.mkdtemp(prefix="vis-bench-"), max_fps=args.max_fps,
                                           announce=False)
    results = []
    try:
        print(f"{'size':>5} {'viewers':>8} {'stream':>8} {'fps/stream':>11} {'latency p50':>12} {'p95':>8}")
        for size in args.sizes:
            for viewers in args.viewers:
                case = run_case(url, size, viewers, args.seconds, args.rate)
                results.append(case)
                for stream in STREAMS:
                    fps = [v[stream]["fps"] for v in case["per_viewer"]]
                    p50 = [v[stream]["latency_median_ms"] for v in case["per_viewer"]]
                    p95 = [v[stream]["latency_p95_ms"] for v in case["per_viewer"]]
                    print(f"{size:>5} {viewers:>8} {stream:>8} {min(fps):>11.1f} {max(p50):>10.1f}ms "
                          f"{max(p95):>6.1f}ms", flush=True)
            if args.browser:
                case = browser_case(url, size, args.seconds, args.rate)
                results.append(case)
                for stream in STREAMS:
                    r = case["browser"][stream]
                    print(f"{size:>5} {'browser':>8} {stream:>8} {r['fps']:>11.1f} {r['latency_median_ms']:>10.1f}ms "
                          f"{r['latency_p95_ms']:>6.1f}ms", flush=True)
    finally:
        process.terminate()
        process.wait(10)
    print("fps: the slowest viewer's frames/s per stream; latency: publish call to arrival (to drawing in the "
          "browser rows), worst viewer")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
