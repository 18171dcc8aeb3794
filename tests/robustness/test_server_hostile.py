"""The visualization server under hostile clients, on real sockets: a server subprocess, and
python-socketio viewers and publishers that flood it with invented runs, metric keys and
malformed messages. Nothing may grow without bound, and every bad message gets one problem line."""

from __future__ import annotations

import json
import logging
import queue
import time
import urllib.request
from pathlib import Path

import pytest
import socketio

from visualization.cli import start_server_subprocess
from visualization.history import MAX_METRIC_KEYS, MAX_SERIES_POINTS
from visualization.protocol import PUBLISH_NAMESPACE as PUB
from visualization.protocol import VIEW_NAMESPACE as VIEW
from visualization.publisher import make_publisher
from visualization.server import MAX_PROBLEM_CHARS


@pytest.fixture
def server(tmp_path):
    """A server subprocess serving ``tmp_path/runs``."""
    logdir = tmp_path / "runs"
    process, url = start_server_subprocess(logdir, announce=False)
    try:
        yield {"url": url, "base": url.split("/?")[0], "token": url.split("token=")[1], "logdir": logdir}
    finally:
        process.terminate()
        process.wait(timeout=10)
    log = (logdir / "visualizer.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def stats(server: dict) -> dict:
    with urllib.request.urlopen(server["base"] + "/healthz", timeout=5) as response:
        return json.load(response)


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def write_metrics(run_dir: Path, steps: range) -> None:
    run_dir.mkdir(parents=True)
    with open(run_dir / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps({"step": step, "loss": step / 10}) + "\n" for step in steps)


class Client:
    """A viewer or publisher client that queues the events it receives, to wait for them in order."""

    def __init__(self, base: str, namespace: str, auth: dict | None = None):
        self.namespace = namespace
        self.inbox: queue.Queue[tuple[str, dict]] = queue.Queue()
        self.client = socketio.Client(reconnection=False)
        for event in ("problem", "history", "metrics"):
            self.client.on(event, self._collector(event), namespace=namespace)
        self.client.connect(base, namespaces=[namespace], transports=["websocket"], auth=auth or {})

    def _collector(self, event: str):
        return lambda data=None: self.inbox.put((event, data))

    def next(self, timeout: float = 10.0) -> tuple[str, dict]:
        return self.inbox.get(timeout=timeout)

    def next_of(self, event: str, timeout: float = 10.0) -> dict:
        while True:
            name, data = self.next(timeout)
            if name == event:
                return data

    def close(self) -> None:
        self.client.disconnect()


def test_joins_of_invented_runs_are_refused_and_keep_nothing(server):
    write_metrics(server["logdir"] / "real-run", range(0, 500, 10))
    viewer = Client(server["base"], VIEW)
    names = [f"invented-{i:05d}" for i in range(2000)]
    for name in names:
        viewer.client.emit("join", {"run": name}, namespace=VIEW)
    replies = [viewer.next() for _ in names]
    assert {event for event, _ in replies} == {"problem"}
    assert {data["event"] for _, data in replies} == {"join"}
    assert {data["message"].split("'")[1] for _, data in replies} == set(names)  # one reply per name
    assert "no run 'invented-00000' in" in replies[0][1]["message"]
    assert stats(server)["histories"] == 0

    # A run in the logdir does get its history; once nobody watches it, it is dropped, and a later
    # join reads it again from its file, whole.
    viewer.client.emit("join", {"run": "real-run"}, namespace=VIEW)
    history = viewer.next_of("history")
    assert [m["step"] for m in history["metrics"]] == list(range(0, 500, 10))
    assert stats(server)["histories"] == 1
    viewer.client.emit("join", {"run": "invented-again"}, namespace=VIEW)
    assert wait_for(lambda: stats(server)["histories"] == 0, timeout=5)
    viewer.client.emit("join", {"run": "real-run"}, namespace=VIEW)
    assert viewer.next_of("history")["metrics"] == history["metrics"]
    viewer.close()


def test_a_viewer_waiting_for_a_run_gets_its_history_once_it_starts(server):
    viewer = Client(server["base"], VIEW)
    viewer.client.emit("join", {"run": "later"}, namespace=VIEW)
    assert viewer.next_of("problem")["event"] == "join"
    write_metrics(server["logdir"] / "later", range(3))
    assert [m["step"] for m in viewer.next_of("history")["metrics"]] == [0, 1, 2]
    viewer.close()


def test_a_history_only_published_live_outlives_its_publisher(server):
    publisher = Client(server["base"], PUB, auth={"token": server["token"], "run": "drive-session"})
    assert publisher.client.call("episode", {"env": 0, "metrics": {"return": 4.0}}, namespace=PUB) is True
    publisher.close()
    time.sleep(2.5)  # two polls of the logdir: a history in the logdir would be dropped by now
    viewer = Client(server["base"], VIEW)
    viewer.client.emit("join", {"run": "drive-session"}, namespace=VIEW)
    assert viewer.next_of("history")["episodes"] == [{"return": 4.0, "env": 0, "kind": "train", "id": 0}]
    viewer.close()


def test_metric_key_flood_is_capped_and_reported_to_the_publisher(server):
    publisher = Client(server["base"], PUB, auth={"token": server["token"], "run": "keys"})
    for step in range(5):  # 5 x 400 distinct keys
        metrics = {f"flood/key{step * 400 + k:04d}": float(k) for k in range(400)}
        assert publisher.client.call("metrics", {"step": step, "metrics": metrics}, namespace=PUB) is True
        problem = publisher.next_of("problem")
        assert problem["event"] == "metrics"
        assert f"at most {MAX_METRIC_KEYS} metric keys" in problem["message"]
    assert stats(server)["metric_points"] == MAX_METRIC_KEYS
    viewer = Client(server["base"], VIEW)
    viewer.client.emit("join", {"run": "keys"}, namespace=VIEW)
    records = viewer.next_of("history")["metrics"]
    keys = {key for record in records for key in record} - {"step"}
    assert keys == {f"flood/key{k:04d}" for k in range(MAX_METRIC_KEYS)}  # the first keys are kept
    # Known keys still update; new ones stay out.
    assert publisher.client.call("metrics", {"step": 9, "metrics": {"flood/key0000": 1.5}}, namespace=PUB)
    assert viewer.next_of("metrics")["records"][0]["flood/key0000"] == 1.5
    publisher.close()
    viewer.close()


def test_the_publisher_warns_once_about_dropped_keys(server, caplog):
    publisher = make_publisher(server["url"], None, "keys-publisher")
    assert publisher.wait_connected(5)
    with caplog.at_level(logging.DEBUG, logger="visualization"):
        for step in range(3):
            publisher.publish_metrics(step, {f"k{step}-{i}": 1.0 for i in range(MAX_METRIC_KEYS + 1)})
        assert wait_for(lambda: sum("metric key" in r.getMessage() for r in caplog.records) == 3)
        publisher.close()
    warnings = [r for r in caplog.records if "metric key" in r.getMessage() and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "keys-publisher" in warnings[0].getMessage()


def test_a_long_series_stays_within_its_cap_and_spans_the_run(server):
    steps = range(0, 200_000, 10)  # 20,000 points, 5 times the cap
    write_metrics(server["logdir"] / "long", steps)
    viewer = Client(server["base"], VIEW)
    viewer.client.emit("join", {"run": "long"}, namespace=VIEW)
    records = viewer.next_of("history")["metrics"]
    assert records[0]["step"] == steps[0] and records[-1]["step"] == steps[-1]
    assert all(r["loss"] == r["step"] / 10 for r in records)
    assert MAX_SERIES_POINTS // 2 <= stats(server)["metric_points"] <= MAX_SERIES_POINTS
    viewer.close()


HUGE = "x" * 1_000_000
MALFORMED_VIEWER_MESSAGES = [
    ("join", None), ("join", "run-a"), ("join", ("run-a", "extra")), ("join", {}), ("join", {"run": 5}),
    ("join", {"run": HUGE}), ("join", {"run": "../etc"}), ("join", [1, 2]),
    ("watch", {"envs": "all"}), ("watch", {"envs": list(range(5000))}), ("watch", {"streams": [1]}),
    ("watch", {"envs": [True]}), ("ack", {}), ("ack", {"key": 3}), ("ack", None),
    ("control", {"run": "r", "keys": "up"}), ("control", {"run": "r", "env": 10**30}), ("control", None),
    ("record", {}), ("record", {"run": "r", "env": "0"}),
]


def test_every_malformed_viewer_message_gets_one_problem_line(server):
    write_metrics(server["logdir"] / "run-a", range(3))
    viewer = Client(server["base"], VIEW)
    for event, data in MALFORMED_VIEWER_MESSAGES:
        if data is None:
            viewer.client.emit(event, namespace=VIEW)
        else:
            viewer.client.emit(event, data, namespace=VIEW)
        name, reply = viewer.next(timeout=5)
        assert (name, reply["event"]) == ("problem", event), (event, data, reply)
        assert "\n" not in reply["message"] and len(reply["message"]) <= MAX_PROBLEM_CHARS, reply
    assert viewer.inbox.empty()
    viewer.client.emit("join", {"run": "run-a"}, namespace=VIEW)  # the connection still works
    assert [m["step"] for m in viewer.next_of("history")["metrics"]] == [0, 1, 2]
    assert stats(server)["histories"] == 1
    viewer.close()


MALFORMED_PUBLISHER_MESSAGES = [
    ("frame", None), ("frame", {"env": 0, "stream": "camera", "fmt": "jpeg"}),
    ("frame", {"env": 0, "stream": "camera", "fmt": "jpeg", "data": b"x", "w": float("inf")}),
    ("step", {"env": 0, "info": [1, 2]}), ("step", "info"), ("episode", {"env": 0, "metrics": {"notes": HUGE}}),
    ("metrics", {"step": "later", "metrics": {}}), ("metrics", {"step": float("inf"), "metrics": {}}),
    ("metrics", {"step": 1, "metrics": [1]}), ("dream", {"fmt": "png"}),
]


def test_every_malformed_publisher_message_is_refused_with_one_problem_line(server):
    publisher = Client(server["base"], PUB, auth={"token": server["token"], "run": "pub"})
    for event, data in MALFORMED_PUBLISHER_MESSAGES:
        args = () if data is None else (data,)
        assert publisher.client.call(event, *args, namespace=PUB, timeout=10) is False, (event, data)
        name, reply = publisher.next(timeout=5)
        assert (name, reply["event"]) == ("problem", event), (event, data, reply)
        assert len(reply["message"]) <= MAX_PROBLEM_CHARS, reply
    assert publisher.client.call("metrics", {"step": 1, "metrics": {"loss": 1.0}}, namespace=PUB) is True
    assert publisher.inbox.empty()
    publisher.close()
