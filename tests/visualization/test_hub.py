"""Flow control of the live hub, driven with an explicit clock (no sockets, no threads)."""

import pytest

from visualization.hub import LiveHub


def make_hub(max_fps=10.0, ack_timeout=5.0):
    return LiveHub(lambda *args: None, max_fps=max_fps, ack_timeout=ack_timeout)


def frame(hub, n, env=0, stream="camera", run="r"):
    hub.put(run, env, stream, "frame", {"n": n})


def sent(sends):
    return [(payload["key"], payload["n"]) for _, payload, _ in sends]


def test_viewer_gets_newest_frame_only_after_ack():
    hub = make_hub()
    hub.add_viewer("v")
    hub.join("v", "r")
    frame(hub, 1)
    sends, _ = hub.due(100.0)
    assert sent(sends) == [("0/camera", 1)]
    frame(hub, 2)
    frame(hub, 3)
    assert hub.due(101.0)[0] == []  # no ack yet
    hub.ack("v", "0/camera")
    assert sent(hub.due(101.0)[0]) == [("0/camera", 3)]  # frame 2 was superseded


def test_rate_limit_and_next_wakeup():
    hub = make_hub(max_fps=10.0)
    hub.add_viewer("v")
    hub.join("v", "r")
    frame(hub, 1)
    hub.due(100.0)
    hub.ack("v", "0/camera")
    frame(hub, 2)
    sends, wake = hub.due(100.05)
    assert sends == [] and wake == pytest.approx(100.1)
    assert sent(hub.due(100.1)[0]) == [("0/camera", 2)]


def test_lost_ack_is_retried_after_timeout():
    hub = make_hub(ack_timeout=2.0)
    hub.add_viewer("v")
    hub.join("v", "r")
    frame(hub, 1)
    hub.due(10.0)
    frame(hub, 2)
    assert hub.due(11.0)[0] == []
    assert sent(hub.due(12.5)[0]) == [("0/camera", 2)]


def test_runs_and_watch_filter_isolate_viewers():
    hub = make_hub()
    for sid, run in [("a", "run-a"), ("b", "run-b")]:
        hub.add_viewer(sid)
        hub.join(sid, run)
    frame(hub, 1, run="run-a")
    frame(hub, 2, run="run-b", env=1, stream="birdeye")
    frame(hub, 3, run="run-b", env=0, stream="camera")
    hub.watch("b", envs={1}, streams=None)
    by_viewer = {}
    for _, payload, sid in hub.due(5.0)[0]:
        by_viewer.setdefault(sid, []).append((payload["run"], payload["key"]))
    assert by_viewer == {"a": [("run-a", "0/camera")], "b": [("run-b", "1/birdeye")]}


def test_step_info_passes_stream_filter():
    hub = make_hub()
    hub.add_viewer("v")
    hub.join("v", "r")
    hub.watch("v", envs={0}, streams={"birdeye"})
    hub.put("r", 0, "@step", "step", {"n": 1})
    frame(hub, 2, stream="camera")
    assert [p["key"] for _, p, _ in hub.due(1.0)[0]] == ["0/@step"]


def test_summary_lists_streams_and_controls():
    hub = make_hub()
    hub.add_publisher("p", "r", interactive=True)
    frame(hub, 1, env=2, stream="lidar")
    hub.put("r", 2, "@step", "step", {})
    summary = hub.summary()["r"]
    assert summary["live"] and summary["interactive"]
    assert summary["envs"] == {"2": ["lidar"]}
    assert hub.controllers("r") == ["p"]
    hub.remove_publisher("p")
    assert not hub.summary()["r"]["live"]


def test_rejects_non_positive_fps():
    with pytest.raises(ValueError, match="max_fps"):
        make_hub(max_fps=0)


def test_active_runs_and_viewers_awaiting_a_run():
    hub = make_hub()
    hub.add_publisher("p", "published", interactive=False)
    hub.add_viewer("v")
    hub.join("v", "future", awaiting=True)
    assert hub.active_runs() == {"published", "future"}
    assert hub.awaiting() == [("v", "future")]
    hub.arrived("v", "other")  # the viewer watches another run: still awaiting
    assert hub.awaiting() == [("v", "future")]
    hub.arrived("v", "future")
    assert hub.awaiting() == []
    hub.remove_publisher("p")
    assert hub.active_runs() == {"future"} and hub.has_run("published") and not hub.has_run("future")
