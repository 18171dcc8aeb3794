"""Real sockets on loopback: a publisher process, the server process, and viewer clients."""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Viewer, rss_mb

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for memory")

# A publisher process: publishes COUNT frames of SIZE² at up to RATE per second, then prints how long
# its publish calls took and how its memory changed.
PUBLISHER = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[6])
from conftest import camera_frame, rss_mb
from visualization.publisher import make_publisher

url, run, count, size, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
publisher = make_publisher(url, None, run, max_fps=1000)
assert publisher.wait_connected(10), "publisher could not connect"
rng = np.random.default_rng(0)
# Noisy frames make large JPEGs (about 70 kB at 512x512), so any backlog would show in memory.
frames = [np.clip(camera_frame(k / 10, size).astype(int) + rng.integers(-20, 20, (size, size, 3)), 0, 255)
          .astype(np.uint8) for k in range(8)]
before = rss_mb()
call_times = []
next_time = time.monotonic()
for i in range(count):
    start = time.perf_counter()
    publisher.publish_frame("camera", frames[i % len(frames)])
    call_times.append(time.perf_counter() - start)
    next_time += 1.0 / rate
    time.sleep(max(0.0, next_time - time.monotonic()))
print(json.dumps({"rss_growth_mb": rss_mb() - before, "max_call_ms": 1000 * max(call_times),
                  "mean_call_ms": 1000 * sum(call_times) / len(call_times), "sent": publisher.frames_sent}))
publisher.close()
"""


def run_publisher(server, run, count, size, rate):
    here = str(Path(__file__).parent)
    result = subprocess.run([sys.executable, "-c", PUBLISHER, server["url"], run, str(count), str(size), str(rate),
                             here], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_slow_viewer_gets_fewer_but_newest_frames(server):
    slow = Viewer(server["base"], "live", ack_delay=0.25)
    fast = Viewer(server["base"], "live")
    report = run_publisher(server, "live", count=600, size=128, rate=200)  # 3 s
    time.sleep(0.3)
    slow.close()
    fast.close()
    slow_frames = [(d, received) for e, d, received in slow.received if e == "frame"]
    fast_frames = fast.frames()
    assert 6 <= len(slow_frames) <= 16, len(slow_frames)
    # A slow viewer never works through a backlog: each frame it gets was the newest when sent.
    ages = [received - d["t"] for d, received in slow_frames[1:]]
    assert statistics.median(ages) < 0.1, ages
    seqs = [d["seq"] for d, _ in slow_frames]
    assert seqs == sorted(seqs) and max(b - a for a, b in itertools.pairwise(seqs)) > 10
    # The slow viewer does not hold back the fast one (capped at the server's 30 fps per stream).
    assert len(fast_frames) >= 45, len(fast_frames)
    # Publishing never waits for the network (the maximum allows for the OS scheduler on a busy machine).
    assert report["mean_call_ms"] < 1.0 and report["max_call_ms"] < 100, report


def test_memory_stays_bounded_with_no_viewer_and_with_a_slow_viewer(server):
    run_publisher(server, "warmup", count=100, size=512, rate=1000)
    server_before = rss_mb(server["pid"])
    alone = run_publisher(server, "memory", count=2000, size=512, rate=1000)
    server_alone = rss_mb(server["pid"])
    slow = Viewer(server["base"], "memory", ack_delay=0.5)
    watched = run_publisher(server, "memory", count=2000, size=512, rate=1000)
    server_watched = rss_mb(server["pid"])
    slow.close()
    # 2,000 frames of ~70 kB are ~140 MB encoded and 1.5 GB raw: a backlog anywhere would show.
    # Frames keep flowing (how many depends on how busy the CPU is: the encoder drops the oldest).
    assert alone["sent"] > 100 and watched["sent"] > 100, (alone, watched)
    assert alone["rss_growth_mb"] < 40 and watched["rss_growth_mb"] < 40, (alone, watched)
    assert server_alone - server_before < 40, (server_before, server_alone)
    assert server_watched - server_before < 50, (server_before, server_alone, server_watched)
    assert len(slow.frames()) < 20
