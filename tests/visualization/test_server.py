"""Server logic through Flask-SocketIO's test client: auth, rooms, binary frames, history, controls."""

from __future__ import annotations

import json
import time

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import camera_frame

from visualization.protocol import PUBLISH_NAMESPACE as PUB
from visualization.protocol import VIEW_NAMESPACE as VIEW
from visualization.publisher import encode_image
from visualization.server import VisualizationServer, is_loopback


@pytest.fixture
def vis(tmp_path):
    server = VisualizationServer(tmp_path, token="secret", max_fps=200)
    server.start_background()
    yield server
    server.stop_background()


def publisher(server, run="run-a", token="secret", interactive=False):
    return server.socketio.test_client(server.app, namespace=PUB,
                                       auth={"token": token, "run": run, "interactive": interactive})


def viewer(server, run=None, auth=None):
    client = server.socketio.test_client(server.app, namespace=VIEW, auth=auth)
    if run is not None:
        client.emit("join", {"run": run}, namespace=VIEW)
    return client


class Inbox:
    """Accumulates what a test client receives; waits for events sent by the dispatcher thread."""

    def __init__(self, client):
        self.client = client
        self.events: list[tuple[str, dict]] = []

    def pump(self):
        for message in self.client.get_received(VIEW):
            self.events.append((message["name"], message["args"][0]))

    def wait(self, name, count=1, timeout=3.0, where=lambda data: True):
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            found = [d for n, d in self.events if n == name and where(d)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.01)


def send_frame(pub, data=b"\xff\xd8jpeg-bytes", env=0, stream="camera"):
    return pub.emit("frame", {"env": env, "stream": stream, "fmt": "jpeg", "data": data, "t": time.time()},
                    namespace=PUB, callback=True)


def test_publisher_needs_the_token(vis):
    assert not publisher(vis, token="wrong").is_connected(PUB)
    assert not vis.socketio.test_client(vis.app, namespace=PUB, auth={"run": "x"}).is_connected(PUB)
    assert not publisher(vis, run="../etc").is_connected(PUB)
    assert publisher(vis).is_connected(PUB)


def test_viewer_token_only_required_off_loopback(tmp_path):
    open_server = VisualizationServer(tmp_path, token="secret")
    assert viewer(open_server).is_connected(VIEW)
    guarded = VisualizationServer(tmp_path, token="secret", viewer_token_required=True)
    assert not viewer(guarded).is_connected(VIEW)
    assert not viewer(guarded, auth={"token": "nope"}).is_connected(VIEW)
    assert viewer(guarded, auth={"token": "secret"}).is_connected(VIEW)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")


def test_binary_frames_arrive_intact_and_rooms_isolate_runs(vis):
    pub_a, pub_b = publisher(vis, "run-a"), publisher(vis, "run-b")
    inbox_a, inbox_b = Inbox(viewer(vis, "run-a")), Inbox(viewer(vis, "run-b"))
    payload = bytes(range(256)) * 40
    assert send_frame(pub_a, payload) is True
    assert send_frame(pub_b, b"other", stream="birdeye") is True
    frame_a = inbox_a.wait("frame")[0]
    assert frame_a["data"] == payload and frame_a["run"] == "run-a" and frame_a["key"] == "0/camera"
    frames_b = inbox_b.wait("frame")
    assert [f["data"] for f in frames_b] == [b"other"]
    assert all(f["run"] == "run-a" for f in inbox_a.wait("frame", count=2, timeout=0.3))


def test_slow_viewer_gets_only_newest_frame(vis):
    pub = publisher(vis)
    inbox = Inbox(viewer(vis, "run-a"))
    send_frame(pub, b"first")
    assert inbox.wait("frame")[0]["data"] == b"first"
    for i in range(20):
        send_frame(pub, f"frame {i}".encode())
    time.sleep(0.2)
    assert len(inbox.wait("frame", count=2, timeout=0.2)) == 1  # nothing more until the viewer acks
    inbox.client.emit("ack", {"key": "0/camera"}, namespace=VIEW)
    frames = inbox.wait("frame", count=2)
    assert [f["data"] for f in frames] == [b"first", b"frame 19"]


def test_step_info_and_bad_messages(vis):
    pub = publisher(vis)
    inbox = Inbox(viewer(vis, "run-a"))
    assert pub.emit("step", {"env": 1, "info": {"speed": 3.5, "r_speed": 0.2, "terminal_reason": None}},
                    namespace=PUB, callback=True) is True
    step = inbox.wait("step")[0]
    assert step["env"] == 1 and step["info"] == {"speed": 3.5, "r_speed": 0.2, "terminal_reason": None}
    assert pub.emit("frame", {"env": 0, "stream": "camera", "fmt": "gif", "data": b"x"}, namespace=PUB,
                    callback=True) is False
    assert pub.emit("frame", {"env": -1, "stream": "camera", "fmt": "png", "data": b"x"}, namespace=PUB,
                    callback=True) is False
    assert pub.emit("step", {"info": {}}, namespace=PUB, callback=True) is False
    assert pub.emit("metrics", {"step": "later", "metrics": {}}, namespace=PUB, callback=True) is False


def test_history_replays_files_and_live_records_on_join(vis, tmp_path):
    run_dir = tmp_path / "run-a"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (1, 2)))
    (run_dir / "scores.jsonl").write_text(json.dumps({"step": 2, "return": 5.0}) + "\n")
    pub = publisher(vis)
    assert pub.emit("metrics", {"step": 3, "metrics": {"loss": 0.25}}, namespace=PUB, callback=True)
    assert pub.emit("metrics", {"step": 2, "metrics": {"loss": 0.5}}, namespace=PUB, callback=True)  # duplicate
    assert pub.emit("episode", {"env": 0, "metrics": {"step": 3, "return": 7.0}}, namespace=PUB, callback=True)
    late = Inbox(viewer(vis, "run-a"))
    history = late.wait("history")[0]
    assert [m["step"] for m in history["metrics"]] == [1, 2, 3]
    assert [e["return"] for e in history["episodes"]] == [5.0, 7.0]
    # Lines appended to the files later reach joined viewers too.
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 4, "loss": 0.1}) + "\n")
    assert late.wait("metrics", timeout=4.0)[0]["records"] == [{"step": 4, "loss": 0.1}]
    assert pub.emit("episode", {"env": 1, "metrics": {"step": 9, "return": 1.0}}, namespace=PUB, callback=True)
    assert late.wait("episodes")[0]["records"] == [{"step": 9, "return": 1.0, "env": 1, "kind": "train", "id": 2}]


def test_runs_list_merges_logdir_and_live_publishers(vis, tmp_path):
    (tmp_path / "old-run").mkdir()
    (tmp_path / "old-run" / "scores.jsonl").write_text("")
    pub = publisher(vis, "live-run", interactive=True)
    send_frame(pub, stream="spectator", env=2)
    inbox = Inbox(viewer(vis))
    listed = inbox.wait("runs", where=lambda d: any(r["envs"] for r in d["runs"]))  # skip older broadcasts
    runs = {r["name"]: r for r in listed[-1]["runs"]}
    assert runs["old-run"]["on_disk"] and not runs["old-run"]["live"]
    assert runs["live-run"]["live"] and runs["live-run"]["interactive"]
    assert runs["live-run"]["envs"] == {"2": ["spectator"]}
    pub.disconnect(namespace=PUB)
    updated = inbox.wait("runs", where=lambda d: not {r["name"]: r for r in d["runs"]}["live-run"]["live"])
    assert updated


def test_controls_reach_only_the_interactive_publisher_of_the_run(vis):
    driver = publisher(vis, "drive", interactive=True)
    passive = publisher(vis, "drive", interactive=False)
    other = publisher(vis, "other", interactive=True)
    page = viewer(vis, "drive")
    page.emit("control", {"run": "drive", "env": 0, "keys": {"up": True, "left": 1}, "reset": True},
              namespace=VIEW)
    received = driver.get_received(PUB)
    assert [m["name"] for m in received] == ["control"]
    control = received[0]["args"][0]
    assert control["keys"] == {"up": True, "down": False, "left": True, "right": False} and control["reset"]
    assert passive.get_received(PUB) == [] and other.get_received(PUB) == []


def test_dream_is_replayed_to_late_viewers(vis):
    pub = publisher(vis)
    frames = [encode_image(camera_frame(t, 32), "png") for t in range(3)]
    message = {"real": b"".join(frames), "real_sizes": [len(f) for f in frames], "imagined": b"".join(frames),
               "imagined_sizes": [len(f) for f in frames], "fmt": "png", "step": 7}
    assert pub.emit("dream", message, namespace=PUB, callback=True) is True
    assert pub.emit("dream", {**message, "real_sizes": [1, 2]}, namespace=PUB, callback=True) is False
    dream = Inbox(viewer(vis, "run-a")).wait("dream")[0]
    assert dream["real"] == message["real"] and dream["real_sizes"] == message["real_sizes"] and dream["step"] == 7
    assert dream["rows"] == 1 and dream["context"] is None  # the run has no config.yaml


def test_dream_context_comes_from_the_publisher_or_the_run_config(vis, tmp_path):
    (tmp_path / "run-a").mkdir()
    (tmp_path / "run-a" / "config.yaml").write_text("model:\n  report_context: 5\n")
    pub = publisher(vis)
    frames = [encode_image(camera_frame(t, 16), "png") for t in range(4)]
    message = {"real": b"".join(frames), "real_sizes": [len(f) for f in frames], "imagined": b"".join(frames),
               "imagined_sizes": [len(f) for f in frames], "fmt": "png", "step": 7}
    page = Inbox(viewer(vis, "run-a"))
    assert pub.emit("dream", {**message, "stride": 2}, namespace=PUB, callback=True) is True
    assert page.wait("dream")[0]["context"] == 3  # 5 frames observed, every second one sent
    assert pub.emit("dream", {**message, "context": 2, "rows": 2}, namespace=PUB, callback=True) is True
    assert page.wait("dream", count=2)[1]["context"] == 2
    assert pub.emit("dream", {**message, "rows": 0}, namespace=PUB, callback=True) is False


def test_http_gives_histories_for_overlays_and_episode_videos(vis, tmp_path):
    run_dir = tmp_path / "exp" / "base" / "seed0"
    (run_dir / "videos").mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 5, "train/loss/image": 0.5}) + "\n")
    (run_dir / "scores.jsonl").write_text(json.dumps({"step": 5, "eval/return": 3.0}) + "\n")
    (run_dir / "videos" / "eval-camera-0000000005.mp4").write_bytes(b"mp4 bytes")
    http = vis.app.test_client()
    reply = http.get("/api/history?run=exp/base/seed0").get_json()
    assert reply["metrics"] == [{"step": 5, "train/loss/image": 0.5}]
    assert [(e["kind"], e["return"]) for e in reply["episodes"]] == [("eval", 3.0)]
    (run_dir / "videos" / "train-camera-0000000004-ep2.mp4").write_bytes(b"")
    assert http.get("/api/videos?run=exp/base/seed0").get_json() == {
        "eval": {"5": ["/runs/exp/base/seed0/videos/eval-camera-0000000005.mp4"]},
        "train": {"4/2": ["/runs/exp/base/seed0/videos/train-camera-0000000004-ep2.mp4"]}}
    assert http.get("/runs/exp/base/seed0/videos/eval-camera-0000000005.mp4").data == b"mp4 bytes"
    assert http.get("/api/history?run=../etc").status_code == 400
    assert http.get("/api/history?run=nothing-here").status_code == 404
    assert http.get("/runs/exp/base/seed0/videos/..%2Fmetrics.jsonl").status_code == 404
    guarded = VisualizationServer(tmp_path, token="secret", viewer_token_required=True).app.test_client()
    assert guarded.get("/api/history?run=exp/base/seed0").status_code == 403
    assert guarded.get("/api/history?run=exp/base/seed0&token=secret").status_code == 200


def test_record_saves_the_episode_as_mp4(vis, tmp_path):
    pub = publisher(vis)
    page = Inbox(viewer(vis, "run-a"))
    page.client.emit("record", {"run": "run-a", "env": 0}, namespace=VIEW)
    assert "no frames recorded" in page.wait("recorded")[0]["error"]
    start = time.time()
    for i in range(12):
        pub.emit("frame", {"env": 0, "stream": "camera", "fmt": "jpeg", "t": start + i / 10,
                           "data": encode_image(camera_frame(i / 10, 96), "jpeg")}, namespace=PUB)
    page.client.emit("record", {"run": "run-a", "env": 0}, namespace=VIEW)
    result = page.wait("recorded", count=2, timeout=20)[1]
    assert result["ok"], result
    [name] = result["files"]
    frames = list(iio.imiter(tmp_path / name, plugin="FFMPEG"))
    assert len(frames) == 12 and frames[0].shape == (96, 96, 3)
    expected = camera_frame(0.0, 96)
    assert np.abs(frames[0].astype(int) - expected.astype(int)).mean() < 12
    assert not [p for p in (tmp_path / "run-a" / "videos").iterdir() if p.name.startswith(".")]  # no temp left


def test_run_status_reaches_viewers_late_joiners_and_the_run_list(vis):
    pub = publisher(vis)
    page = Inbox(viewer(vis, "run-a"))
    status = {"phase": "compiling", "label": "compiling the train step", "detail": "", "since": 100.0,
              "env_steps": 1024, "updates": 0, "steps": 5000, "fps": 30.5, "ups": 0.0, "eta": 130.0}
    assert pub.emit("status", status, namespace=PUB, callback=True) is True
    received = page.wait("status")[0]
    assert {k: received[k] for k in status} == status and received["run"] == "run-a"
    assert [r["phase"] for r in vis.runs() if r["name"] == "run-a"] == ["compiling"]
    assert page.wait("runs", where=lambda d: any(r.get("phase") == "compiling" for r in d["runs"]))
    late = Inbox(viewer(vis, "run-a")).wait("status")
    assert late and late[0]["phase"] == "compiling"  # a page opened mid-compile says so at once
    assert pub.emit("status", {"env_steps": 3}, namespace=PUB, callback=True) is False
    assert pub.emit("status", {"phase": "x" * 5000}, namespace=PUB, callback=True) is False
