"""The run log, <logdir>/train.log: what a training run does (start, phases with their durations,
evaluations, the end), the warnings said while it trains, the error that ends it; whole lines only."""

from __future__ import annotations

import logging
import re
import threading
import warnings

import pytest
from small_envs import ReachEnv

from cardreamer.training import make_config, register_backbone, train
from cardreamer.training.random_backbone import RandomBackbone
from cardreamer.training.runlog import RunLog

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (INFO   |WARNING|ERROR  ) (.*)$")


def _config(tmp_path, steps, *extra):
    return make_config(None, [f"logdir={tmp_path}", "backbone=random", f"run.steps={steps}", "run.train_fill=100",
                              "run.progress=false", "run.eval_every=200", "run.eval_episodes=2", *extra])


def _messages(tmp_path) -> list[tuple[str, str]]:
    lines = (tmp_path / "train.log").read_text().splitlines()
    matches = [LINE.match(line) for line in lines]
    assert all(matches), [line for line, m in zip(lines, matches) if not m]
    return [(m.group(1).strip(), m.group(2)) for m in matches]


def test_a_run_logs_its_phases_evaluations_warnings_and_end_and_a_resume_appends(tmp_path):
    class Warns(RandomBackbone):
        def train(self, batch, state):
            if self.updates == 3:
                logging.getLogger("some.library").warning("a library's warning")
                warnings.warn("a Python warning", UserWarning, stacklevel=1)
            return super().train(batch, state)

    register_backbone("test_warns", Warns)
    train(_config(tmp_path, 400, "backbone=test_warns"), env_fn=ReachEnv)
    messages = _messages(tmp_path)
    texts = [text for _, text in messages]
    assert texts[0] == "start: test_warns, 400 env steps, fresh"
    assert texts[1] == "filling the replay at 0 env steps"
    assert re.fullmatch(r"compiling the train step: \d+\.\d s, at \d+ env steps", texts[2])
    assert ("WARNING", "a library's warning") in messages
    assert any(level == "WARNING" and "UserWarning: a Python warning" in text for level, text in messages)
    evaluations = [t for t in texts if t.startswith("evaluation at")]
    assert len(evaluations) == 2 and re.fullmatch(r"evaluation at 200 env steps: 2 episodes, return -?\d+\.\d ± "
                                                  r"\d+\.\d, success \d+%, collisions \d+%, route \d+%", evaluations[0])
    assert texts[-1] == "done at 400 env steps"
    train(_config(tmp_path, 600, "backbone=test_warns"), env_fn=ReachEnv)  # resumes: the log goes on
    texts = [text for _, text in _messages(tmp_path)]
    assert texts[len(messages)] == "start: test_warns, 600 env steps, resumed at 400 env steps"
    assert texts[-1] == "done at 600 env steps"


def test_the_error_that_ends_a_run_is_logged_with_its_traceback(tmp_path):
    class Breaks(RandomBackbone):
        def train(self, batch, state):
            raise RuntimeError("the update broke")

    register_backbone("test_breaks", Breaks)
    with pytest.raises(RuntimeError, match="the update broke"):
        train(_config(tmp_path, 400, "backbone=test_breaks"), env_fn=ReachEnv)
    errors = [text for level, text in _messages(tmp_path) if level == "ERROR"]
    assert errors[0] == "Traceback (most recent call last):" and errors[-1] == "RuntimeError: the update broke"
    assert any("in train" in line for line in errors)


def test_lines_of_many_threads_stay_whole(tmp_path):
    log = RunLog(str(tmp_path))
    published = []
    log.publish = published.extend
    def write(k):
        for i in range(300):
            log.info(f"thread {k} line {i} " + "x" * 200)
    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    texts = [text for _, text in _messages(tmp_path)]
    assert len(texts) == 1200 and all(re.fullmatch(r"thread \d line \d+ x{200}", t) for t in texts)
    assert len(published) == 1200
