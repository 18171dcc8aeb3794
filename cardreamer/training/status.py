"""What a training run is doing now, for the progress bar and the visualizer page's header.

A :class:`RunStatus` holds the run's phase (filling the replay, compiling the train step,
training, evaluating...), its counters and its recent rates, and hands a status record to the
publisher's optional ``publish_status`` whenever the phase changes and at most once a second
otherwise. The record::

    {"phase": "compiling", "label": "compiling the train step", "detail": "", "since": 1733270000.0,
     "env_steps": 1024, "updates": 0, "steps": 100000, "fps": 31.5, "ups": 0.0, "eta": 3140.0}

``since`` is when the phase began (seconds since the epoch): the page counts from it, so a
phase that blocks the trainer for minutes (the first jit) still shows a moving clock.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

PHASES = {
    "filling": "filling the replay",
    "pretraining": "pre-training on the dataset",
    "compiling": "compiling the train step",
    "training": "training",
    "reporting": "writing the open-loop report",
    "evaluating": "evaluating",
    "saving": "saving a checkpoint",
    "done": "done",
}
BUSY = ("pretraining", "compiling", "reporting", "evaluating", "saving")  # phases the run log times
RATE_WINDOW = 60.0  # seconds of counters the rates are measured over
PUBLISH_INTERVAL = 1.0  # seconds between status records within one phase


class RunStatus:
    """The phase, counters and rates of a run, published to ``publisher`` and shown on ``bar`` (a
    tqdm bar, once set). ``log`` gets a line when the replay starts filling, when training starts,
    when the run is done, and when each busy phase (compiling, evaluating...) ends, with its duration."""

    def __init__(self, publisher: Any, counters: dict[str, int], total_steps: int, name: str, bar: Any = None,
                 log: Callable[[str], None] | None = None):
        self.publish = getattr(publisher, "publish_status", None)  # optional publisher method
        self.bar, self.counters, self.total_steps, self.name, self.log = bar, counters, total_steps, name, log
        self.trained = False  # whether the training phase was entered
        self.phase, self.detail, self.since = "", "", time.time()
        self.samples: collections.deque[tuple[float, int, int]] = collections.deque()
        self.published_at = 0.0

    def set(self, phase: str, detail: str = "") -> None:
        """Enter ``phase`` (a key of PHASES) and publish at once; the same phase only updates ``detail``."""
        if phase not in PHASES:
            raise ValueError(f"unknown run phase {phase!r}; expected one of {', '.join(PHASES)}")
        if phase != self.phase:
            self._log_change(phase)
            self.phase, self.since = phase, time.time()
            label = self.name if phase == "training" else f"{self.name} · {PHASES[phase]}…"
            if self.bar is not None:
                self.bar.set_description_str(label, refresh=True)
        self.detail = detail
        self._publish()

    def _log_change(self, phase: str) -> None:
        if self.log is None:
            return
        at = f"at {self.counters['env_steps']:,} env steps"
        if self.phase in BUSY:
            detail = f" ({self.detail})" if self.detail else ""
            self.log(f"{PHASES[self.phase]}{detail}: {time.time() - self.since:.1f} s, {at}")
        if phase in ("filling", "done") or (phase == "training" and not self.trained):
            self.log(f"{PHASES[phase]} {at}")
        self.trained |= phase == "training"

    @contextlib.contextmanager
    def during(self, phase: str, detail: str = "", then: str | None = None) -> Iterator[None]:
        """Be in ``phase`` for the body, then in ``then`` (default: the phase before, if there was one)."""
        after = then or self.phase
        self.set(phase, detail)
        try:
            yield
        finally:
            if after:
                self.set(after)

    def tick(self) -> None:
        """Publish if the last record is a second old (called from the training loop)."""
        if time.time() - self.published_at >= PUBLISH_INTERVAL:
            self._publish()

    def rates(self) -> tuple[float, float]:
        """Env steps/s and updates/s over the last RATE_WINDOW seconds (0 until measurable)."""
        now = time.time()
        self.samples.append((now, self.counters["env_steps"], self.counters["updates"]))
        while len(self.samples) > 2 and now - self.samples[1][0] >= RATE_WINDOW:
            self.samples.popleft()
        start, steps, updates = self.samples[0]
        elapsed = now - start
        if elapsed <= 0:
            return 0.0, 0.0
        return (self.counters["env_steps"] - steps) / elapsed, (self.counters["updates"] - updates) / elapsed

    def record(self) -> dict[str, Any]:
        """The status record (see the module docstring); ``eta`` is None while no rate is known."""
        fps, ups = self.rates()
        left = max(self.total_steps - self.counters["env_steps"], 0)
        return {"phase": self.phase, "label": PHASES[self.phase], "detail": self.detail, "since": self.since,
                "env_steps": int(self.counters["env_steps"]), "updates": int(self.counters["updates"]),
                "steps": int(self.total_steps), "fps": fps, "ups": ups, "eta": left / fps if fps > 0 else None}

    def _publish(self) -> None:
        self.published_at = time.time()
        record = self.record()
        if self.publish:
            self.publish(record)
