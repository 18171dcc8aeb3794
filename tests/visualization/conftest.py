"""Shared fixtures for the visualization tests: a server subprocess, viewers, and synthetic scenes."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from visualization.cli import start_server_subprocess
from visualization.protocol import VIEW_NAMESPACE
from visualization.viewer import OrderedClient


def birdeye_frame(t: float, size: int = 128) -> np.ndarray:
    """A bird's-eye-view-like RGB frame: a two-lane road, a route, the ego and a moving car."""
    image = np.zeros((size, size, 3), np.uint8)
    image[:] = (24, 28, 36)
    s = size / 128
    cv2.rectangle(image, (int(44 * s), 0), (int(84 * s), size), (70, 74, 82), -1)
    for y in range(int(-16 * s + (t * 40 * s) % (16 * s)), size, int(16 * s)):
        cv2.line(image, (int(64 * s), y), (int(64 * s), y + int(8 * s)), (210, 210, 210), max(1, int(s)))
    route = np.array([[74 * s, size], [74 * s, 60 * s], [74 * s - 20 * s * math.sin(t), 0]], np.int32)
    cv2.polylines(image, [route], False, (60, 150, 255), max(1, int(2 * s)))
    cv2.rectangle(image, (int(69 * s), int(84 * s)), (int(79 * s), int(102 * s)), (80, 220, 120), -1)
    y = int((t * 30 * s) % size)
    cv2.rectangle(image, (int(49 * s), y), (int(59 * s), y + int(18 * s)), (240, 90, 80), -1)
    return image


def camera_frame(t: float, size: int = 128) -> np.ndarray:
    """A camera-like RGB frame: sky gradient, a road in perspective, a lead vehicle."""
    h = w = size
    sky = np.linspace(150, 60, h // 2, dtype=np.float32)[:, None, None] * np.array([0.55, 0.75, 1.0])
    image = np.zeros((h, w, 3), np.uint8)
    image[: h // 2] = np.broadcast_to(sky, (h // 2, w, 3)).astype(np.uint8)
    image[h // 2:] = (54, 62, 50)
    road = np.array([[w * 0.45, h / 2], [w * 0.55, h / 2], [w * 0.95, h], [w * 0.05, h]], np.int32)
    cv2.fillPoly(image, [road], (80, 80, 86))
    phase = (t * 2) % 1
    for k in range(4):
        d = (k + phase) / 4
        y0, y1 = int(h / 2 + d * d * h / 2), int(h / 2 + (d + 0.1) ** 2 * h / 2)
        cv2.line(image, (w // 2, y0), (w // 2, min(y1, h - 1)), (230, 230, 230), max(1, size // 128))
    car_w = int(w * (0.12 + 0.03 * math.sin(t)))
    cv2.rectangle(image, (w // 2 - car_w // 2, int(h * 0.58)), (w // 2 + car_w // 2, int(h * 0.58) + car_w // 2),
                  (190, 40, 40), -1)
    return image


def write_history(run_dir: Path, steps: int = 40) -> None:
    """Write metrics.jsonl and scores.jsonl the way a trainer does."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(run_dir / "metrics.jsonl", "w") as f:
        for i in range(1, steps + 1):
            step = i * 1000
            f.write(json.dumps({
                "step": step,
                "train/loss/image": 3.0 * math.exp(-i / 12) + 0.2 + 0.05 * rng.random(),
                "train/loss/reward": 0.8 * math.exp(-i / 8) + 0.05 + 0.02 * rng.random(),
                "train/loss/policy": 0.3 + 0.1 * math.sin(i / 4),
                "episode/return_mean": 40 * (1 - math.exp(-i / 15)) + 3 * rng.standard_normal(),
                "fps/env": 300 + 20 * rng.standard_normal(),
                "fps/train": 18 + rng.standard_normal(),
            }) + "\n")
    with open(run_dir / "scores.jsonl", "w") as f:
        for i in range(1, steps // 2 + 1):
            success = bool(rng.random() < i / (steps / 2))
            f.write(json.dumps({
                "step": i * 2000, "return": round(45 * (i / 20) + 5 * rng.standard_normal(), 2),
                "length": int(100 + rng.integers(0, 60)), "success": success,
                "collision": (not success) and bool(rng.random() < 0.5),
                "terminal_reason": "destination reached" if success else "collision",
            }) + "\n")


def wait_until(condition, timeout: float = 5.0) -> bool:
    """Whether ``condition()`` became true within ``timeout`` seconds (polled every 10 ms)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def decode(frame: dict) -> np.ndarray:
    """The RGB image of a received ``frame`` event."""
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(frame["data"], np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process in MB (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@pytest.fixture
def server(tmp_path):
    """A visualization server subprocess on a free port, serving ``tmp_path/runs``."""
    logdir = tmp_path / "runs"
    process, url = start_server_subprocess(logdir, announce=False)
    try:
        yield {"url": url, "base": url.split("/?")[0], "token": url.split("token=")[1], "logdir": logdir,
               "pid": process.pid}
    finally:
        process.terminate()
        process.wait(timeout=10)


class Viewer:
    """A Python viewer on real sockets that records what it receives and can ack frames slowly.

    Joining a run that does not exist yet is answered with a ``problem`` (kept in ``problems``)
    instead of a history; the run's history and live data follow once it starts.
    """

    def __init__(self, base_url: str, run: str, ack_delay: float = 0.0, auth: dict | None = None):
        self.received: list[tuple[str, dict, float]] = []
        self.ack_delay = ack_delay
        self.client = OrderedClient(reconnection=False)
        self.history: dict | None = None
        self.problems: list[dict] = []
        for event in ("frame", "step"):
            self.client.on(event, self._make_handler(event), namespace=VIEW_NAMESPACE)
        self.client.on("history", self._on_history, namespace=VIEW_NAMESPACE)
        self.client.on("problem", self._on_problem, namespace=VIEW_NAMESPACE)
        self._joined = threading.Event()
        self.client.connect(base_url, namespaces=[VIEW_NAMESPACE], transports=["websocket"], auth=auth or {})
        self.client.emit("join", {"run": run}, namespace=VIEW_NAMESPACE)
        if not self._joined.wait(5):
            raise TimeoutError(f"no reply from {base_url} after joining run {run!r}")

    def _on_history(self, data):
        self.history = data
        self._joined.set()

    def _on_problem(self, data):
        self.problems.append(data)
        if data.get("event") == "join":
            self._joined.set()

    def _make_handler(self, event):
        def handler(data):
            self.received.append((event, data, time.time()))
            if self.ack_delay:
                time.sleep(self.ack_delay)
            if self.client.connected:
                self.client.emit("ack", {"key": data["key"]}, namespace=VIEW_NAMESPACE)
        return handler

    def frames(self, key: str | None = None) -> list[dict]:
        return [d for e, d, _ in self.received if e == "frame" and (key is None or d["key"] == key)]

    def steps(self) -> list[dict]:
        return [d for e, d, _ in self.received if e == "step"]

    def close(self) -> None:
        # Stop the streams first so that no frame is cut in half by the disconnection; then
        # disconnect in the background (the client waits ~3 s for a close frame werkzeug never sends).
        if self.client.connected:
            self.client.emit("watch", {"envs": []}, namespace=VIEW_NAMESPACE)
            time.sleep(0.1)
        threading.Thread(target=self.client.disconnect, daemon=True).start()


class FakeDrivingEnv:
    """A small Gymnasium env for the driving loop: a car on a road that the actions move.

    Observations are a dict with an RGB bird's-eye image and a state vector; the info carries speed,
    ``r_*`` terms and a terminal reason, like the project's envs. Every action taken is recorded.
    """

    def __new__(cls, discrete: bool = False, episode_length: int = 30):
        import gymnasium as gym

        class _Env(gym.Env):
            metadata: ClassVar[dict] = {"render_modes": []}

            def __init__(self):
                self.observation_space = gym.spaces.Dict({
                    "birdeye_wpt": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
                    "state": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
                })
                if discrete:
                    self.discrete_actions = [(a, s) for a in (-2.0, 0.0, 2.0) for s in (-0.5, 0.0, 0.5)]
                    self.action_space = gym.spaces.Discrete(len(self.discrete_actions))
                else:
                    self.action_space = gym.spaces.Box(np.array([-3.0, -0.8], np.float32),
                                                       np.array([3.0, 0.8], np.float32))
                self.actions: list = []
                self.resets = 0

            def _control(self, action):
                if discrete:
                    return self.discrete_actions[int(action)]
                return float(action[0]), float(action[1])

            def _obs(self):
                image = birdeye_frame(self.x / 5.0, 64)
                return {"birdeye_wpt": image, "state": np.array([self.x, self.y, self.speed], np.float32)}

            def reset(self, *, seed=None, options=None):
                super().reset(seed=seed)
                self.x = self.y = self.speed = 0.0
                self.t = 0
                self.resets += 1
                return self._obs(), {"speed": 0.0}

            def step(self, action):
                self.actions.append(action)
                acceleration, steering = self._control(action)
                self.speed = max(0.0, self.speed + 0.1 * acceleration)
                self.x += 0.1 * self.speed
                self.y += 0.1 * self.speed * steering
                self.t += 1
                truncated = self.t >= episode_length
                info = {"speed": np.float32(self.speed), "r_speed": np.float64(0.1 * self.speed),
                        "r_steer": -abs(steering) * 0.1, "terminal_reason": "time limit" if truncated else None}
                return self._obs(), float(info["r_speed"] + info["r_steer"]), False, truncated, info

        return _Env()


def write_training_run(run_dir: Path, steps: int = 60, seed: int = 0, log_every: int = 1000,
                       eval_every: int = 10_000, episode_length: int = 400) -> None:
    """Write a run directory the way dreamerv3_backbone's trainer does: metrics.jsonl with losses,
    rates and counters (and ``eval/*`` summaries), scores.jsonl with ``episode/*`` training
    episodes and ``eval/*`` evaluation rows, and one eval video name per evaluation."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "videos").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    metrics, scores = [], []
    skill = lambda step: 1 - math.exp(-step / (steps * log_every / 3))
    next_episode, episodes = episode_length, 0
    for i in range(1, steps + 1):
        step = i * log_every
        while next_episode <= step:
            episodes += 1
            p = skill(next_episode)
            success = bool(rng.random() < p)
            scores.append({"step": next_episode, "episode/return": round(200 * p + 20 * rng.standard_normal(), 2),
                           "episode/length": int(episode_length * (0.6 + 0.4 * rng.random())),
                           "episode/success": float(success),
                           "episode/collision": float(not success and rng.random() < 0.6),
                           "episode/route_completion": round(min(1.0, p + 0.1 * rng.random()), 3),
                           "episode/mean_speed": round(4 + 3 * p + rng.random(), 2)})
            next_episode += int(episode_length * (0.6 + 0.4 * rng.random()))
        row = {"train/loss/image": 900 * math.exp(-i / 12) + 40 + 5 * rng.random(),
               "train/loss/reward": 0.8 * math.exp(-i / 8) + 0.05 + 0.02 * rng.random(),
               "train/loss/dyn": 2 + math.exp(-i / 20), "train/loss/policy": 0.3 + 0.1 * math.sin(i / 4),
               "train/loss/value": 1.5 * math.exp(-i / 30) + 0.1 * rng.random(), "train/grad_norm": 10 + rng.random(),
               "fps/env": 300 + 20 * rng.standard_normal(), "fps/updates": 18 + rng.standard_normal(),
               "replay/steps": step, "env_steps": step, "updates": i * 30, "episodes": episodes,
               "next_eval": (step // eval_every + 1) * eval_every, "episode/return_recent": 200 * skill(step)}
        if step % eval_every == 0:
            p = skill(step)
            evaluation = {"eval/episodes": 4, "eval/return": 210 * p, "eval/return_std": 15.0, "eval/length": 300.0,
                          "eval/success_rate": round(min(1.0, p + 0.05), 2), "eval/collision_rate": round(0.5 * (1 - p), 2),
                          "eval/route_completion": round(min(1.0, p + 0.1), 2), "eval/mean_speed": 5 + 2 * p}
            scores.append({"step": step, **evaluation})
            row.update(evaluation)
            (run_dir / "videos" / f"eval-birdeye_wpt-{step:010d}.mp4").write_bytes(b"")
        metrics.append({"step": step, **row})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    (run_dir / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in scores))
