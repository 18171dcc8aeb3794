"""The publisher: validation, never blocking its caller, bounded memory, delivery, reconnection."""

from __future__ import annotations

import json
import logging
import time
import tracemalloc
import urllib.request

import numpy as np
import pytest
import socketio
from conftest import Viewer, birdeye_frame, camera_frame, decode, wait_until, write_training_run

from visualization.cli import free_port, start_server_subprocess
from visualization.protocol import VIEW_NAMESPACE
from visualization.publisher import NullPublisher, SocketPublisher, make_publisher


def test_make_publisher_arguments():
    assert isinstance(make_publisher(None, None, "run"), NullPublisher)
    with pytest.raises(ValueError, match="token is required"):
        make_publisher("http://127.0.0.1:1", None, "run")
    with pytest.raises(ValueError, match="must look like"):
        make_publisher("127.0.0.1:9000", "t", "run")
    with pytest.raises(ValueError, match="invalid run name"):
        make_publisher("http://127.0.0.1:1", "t", "exp/../name")
    publisher = make_publisher("http://127.0.0.1:1/?token=abc", None, "run")
    assert isinstance(publisher, SocketPublisher) and publisher.token == "abc"
    publisher.close()


def test_null_publisher_accepts_everything():
    with NullPublisher() as publisher:
        publisher.publish_frame("camera", np.zeros((4, 4, 3), np.uint8))
        publisher.publish_step({"speed": 1.0})
        publisher.publish_metrics(1, {"loss": 1.0})
        assert publisher.poll_control() is None


def test_bad_frames_are_refused_in_the_callers_thread():
    with make_publisher("http://127.0.0.1:1", "t", "run") as publisher:
        with pytest.raises(ValueError, match="stream 'camera'.*HxWx3 uint8.*float64"):
            publisher.publish_frame("camera", np.zeros((8, 8, 3)))
        with pytest.raises(ValueError, match=r"shape \(8, 8\)"):
            publisher.publish_frame("camera", np.zeros((8, 8), np.uint8))
        with pytest.raises(ValueError, match="invalid stream name"):
            publisher.publish_frame("my camera", np.zeros((8, 8, 3), np.uint8))
        with pytest.raises(ValueError, match="env_index"):
            publisher.publish_frame("camera", np.zeros((8, 8, 3), np.uint8), env_index=-1)
        with pytest.raises(ValueError, match="differ in shape"):
            publisher.publish_dream(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((3, 8, 8, 3), np.uint8))


def test_no_server_costs_the_caller_nothing(caplog):
    """With nothing listening, publishing is a cheap no-op: fast, quiet, and no memory kept."""
    frame = camera_frame(0.0, 512)
    with caplog.at_level(logging.INFO, logger="visualization"):
        publisher = make_publisher(f"http://127.0.0.1:{free_port()}", "t", "nobody-home")
        tracemalloc.start()
        start = time.perf_counter()
        for i in range(2000):
            publisher.publish_frame("camera", frame)
            publisher.publish_step({"speed": np.float32(i)})
        for i in range(3000):
            publisher.publish_metrics(i, {"loss": 1.0})
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        publisher.close()
    assert elapsed < 0.5, f"5,000 publish calls took {elapsed:.2f} s"
    assert peak < 2_000_000, f"publishing with no server kept {peak / 1e6:.1f} MB"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("visualization")]


def test_frames_steps_episodes_and_metrics_reach_a_viewer(server):
    publisher = make_publisher(server["url"], None, "run-x")
    assert publisher.wait_connected(5)
    viewer = Viewer(server["base"], "run-x")
    received_episodes = []
    viewer.client.on("episodes", lambda data: received_episodes.extend(data["records"]), namespace="/view")
    bev, cam = birdeye_frame(0.5, 96), camera_frame(0.5, 160)
    publisher.publish_frame("birdeye", bev, env_index=1)
    publisher.publish_frame("camera", cam, env_index=1)
    publisher.publish_step({"speed": np.float32(4.5), "r_speed": np.float64(0.25), "terminal_reason": None,
                            "position": np.array([1.0, 2.0])}, env_index=1)
    publisher.publish_episode({"return": np.float32(3.5), "length": np.int64(20), "success": np.bool_(True)},
                              env_index=1)
    assert wait_until(lambda: viewer.frames("1/birdeye") and viewer.frames("1/camera") and received_episodes)
    np.testing.assert_array_equal(decode(viewer.frames("1/birdeye")[0]), bev)  # PNG: lossless
    assert np.abs(decode(viewer.frames("1/camera")[0]).astype(int) - cam).mean() < 4  # JPEG: close
    assert wait_until(viewer.steps)
    step = viewer.steps()[0]
    assert step["info"] == {"speed": 4.5, "r_speed": 0.25, "terminal_reason": None, "position": [1.0, 2.0]}
    assert received_episodes == [{"return": 3.5, "length": 20, "success": True, "env": 1, "kind": "train", "id": 0}]
    publisher.close()
    viewer.close()


def test_every_phase_change_reaches_a_viewer_in_order(server):
    """Phases that last less than one send (a two-episode evaluation) are not coalesced away;
    counter updates within a phase may be, but the newest one arrives last."""
    viewer = Viewer(server["base"], "run-phases")
    statuses = []
    viewer.client.on("status", statuses.append, namespace="/view")
    publisher = make_publisher(server["url"], None, "run-phases")
    assert publisher.wait_connected(5)
    phases = ["filling", "training", "evaluating", "training", "saving", "training", "evaluating", "done"]
    for phase in phases:
        for step in range(50):
            publisher.publish_status({"phase": phase, "env_steps": step})
    assert wait_until(lambda: statuses and statuses[-1]["phase"] == "done" and statuses[-1]["env_steps"] == 49)
    publisher.close()
    viewer.close()
    seen = [s["phase"] for s in statuses]
    changes = [p for i, p in enumerate(seen) if i == 0 or seen[i - 1] != p]
    assert changes == phases, seen


def test_wrong_token_is_reported_once_and_never_connects(server, caplog):
    with caplog.at_level(logging.WARNING, logger="visualization"):
        publisher = make_publisher(server["base"], "not-the-token", "run")
        assert wait_until(lambda: any("refused" in r.getMessage() for r in caplog.records), timeout=10)
        time.sleep(0.5)  # further refusals are not reported again
        assert not publisher.connected
        publisher.close()
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1 and "invalid or missing token" in refusals[0]


def test_publisher_reconnects_after_server_restart(tmp_path):
    port = free_port()
    process, url = start_server_subprocess(tmp_path, port=port, announce=False)
    publisher = make_publisher(url, None, "restart")
    try:
        assert publisher.wait_connected(5)
        process.terminate()
        process.wait(10)
        assert wait_until(lambda: not publisher.connected)
        token = url.split("token=")[1]
        process, _ = start_server_subprocess(tmp_path, port=port, token=token, announce=False)
        assert wait_until(lambda: publisher.connected, timeout=15)
        viewer = Viewer(url.split("/?")[0], "restart")
        deadline = time.monotonic() + 5
        while not viewer.frames() and time.monotonic() < deadline:
            publisher.publish_frame("camera", camera_frame(time.monotonic(), 64))
            time.sleep(0.05)
        assert viewer.frames("0/camera")
        viewer.close()
    finally:
        publisher.close()
        process.terminate()
        process.wait(10)


def test_a_run_outside_the_servers_logdir_is_read_where_its_publisher_says(server, tmp_path):
    """The publisher announces its run's directory: the server on this machine reads the run's
    files there, so viewers get what it logged before connecting; a viewer already waiting for the
    run gets that history too. A directory that is not the publisher's (another machine's) is not read."""
    run_dir = tmp_path / "elsewhere" / "wpt-seed0"
    write_training_run(run_dir, steps=20, eval_every=5000)
    logged = len((run_dir / "scores.jsonl").read_text().splitlines())
    waiting = Viewer(server["base"], "wpt-seed0")
    histories, live = [], []
    waiting.client.on("history", histories.append, namespace=VIEW_NAMESPACE)
    waiting.client.on("metrics", lambda data: live.extend(data["records"]), namespace=VIEW_NAMESPACE)
    with make_publisher(server["url"], None, "wpt-seed0", run_dir=str(run_dir)) as publisher:
        assert publisher.wait_connected(30)
        assert wait_until(lambda: histories, timeout=30)
        assert len(histories[-1]["episodes"]) == logged and len(histories[-1]["metrics"]) == 20
        publisher.publish_metrics(21_000, {"train/loss/image": 0.5})
        assert wait_until(lambda: any(r["step"] == 21_000 for r in live), timeout=30)
        joined = Viewer(server["base"], "wpt-seed0")
        assert [r["step"] for r in joined.history["metrics"]] == [1000 * i for i in range(1, 22)]
    try:
        assert len(joined.history["episodes"]) == logged
        videos = json.loads(urllib.request.urlopen(f"{server['base']}/api/videos?run=wpt-seed0").read())
        assert sorted(videos["eval"]) == ["10000", "15000", "20000", "5000"]
        assert not (server["logdir"] / "wpt-seed0").exists()
    finally:
        joined.close()
        waiting.close()

    # Another machine's directory of that path: the server sees another device and inode.
    other = socketio.Client(reconnection=False)
    other.connect(server["base"], namespaces=["/publish"], transports=["websocket"],
                  auth={"token": server["token"], "run": "other-seed0", "run_dir": str(run_dir), "run_dir_id": [0, 0]})
    try:
        viewer = Viewer(server["base"], "other-seed0")
        assert viewer.history == {"run": "other-seed0", "metrics": [], "episodes": [], "log": []}
        viewer.close()
    finally:
        other.disconnect()
    refused, reasons = socketio.Client(reconnection=False), []
    refused.on("connect_error", lambda data=None: reasons.append(data), namespace="/publish")
    with pytest.raises(socketio.exceptions.ConnectionError):
        refused.connect(server["base"], namespaces=["/publish"], transports=["websocket"],
                        auth={"token": server["token"], "run": "r", "run_dir": "relative/run", "run_dir_id": [1, 2]})
    assert reasons == [{"message": "run_dir must be an absolute path sent with its run_dir_id [device, inode], "
                                   "got 'relative/run' and [1, 2]"}]


def test_viewers_of_a_run_get_its_files_once_its_directory_is_announced(server, tmp_path):
    """A run first published without its directory (live data only) is watched; once a publisher
    announces the directory, the viewer is sent the history its files hold."""
    run_dir = tmp_path / "elsewhere" / "wpt-seed0"
    write_training_run(run_dir, steps=20)
    with make_publisher(server["url"], None, "wpt-seed0") as live_only:
        assert live_only.wait_connected(30)
        viewer = Viewer(server["base"], "wpt-seed0")
        histories, live = [], []
        viewer.client.on("history", histories.append, namespace=VIEW_NAMESPACE)
        viewer.client.on("metrics", lambda data: live.extend(data["records"]), namespace=VIEW_NAMESPACE)
        live_only.publish_metrics(500, {"train/loss/image": 2.0})
        assert wait_until(lambda: live, timeout=30)
        assert viewer.history["metrics"] == [] and [r["step"] for r in live] == [500]
        with make_publisher(server["url"], None, "wpt-seed0", run_dir=str(run_dir)) as announcing:
            assert announcing.wait_connected(30)
            assert wait_until(lambda: histories, timeout=30)
    viewer.close()
    assert [r["step"] for r in histories[-1]["metrics"]] == [1000 * i for i in range(1, 21)]
    assert len(histories[-1]["episodes"]) == len((run_dir / "scores.jsonl").read_text().splitlines())
