"""The run log: ``<logdir>/train.log``, what a training run says as it goes, for people and the page.

One line per event, appended (a resumed run continues the file)::

    2026-12-04T03:16:32Z INFO    start: dreamerv3 (cpu) on wpt, 100000 env steps, fresh
    2026-12-04T03:18:40Z INFO    compiling the train step at 1,024 env steps
    2026-12-04T03:19:02Z WARNING env reset: the world was lost; recovering the world in 10 s (1 of 5)
    2026-12-04T03:40:11Z ERROR   RuntimeError: ...

Each line is written with one ``write`` on a file opened for appending, so lines of several
threads never interleave and a reader never sees half a line but the last one being written.
While a run trains, :meth:`RunLog.capture` also sends this process's log records (warnings of
every library, the project's own info lines) and Python warnings to the file. Lines go to the
visualizer too (``publish_log``), for a server whose log directory does not hold the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterator
from typing import Any

LOG_FILE = "train.log"
LEVELS = ("INFO", "WARNING", "ERROR")


class RunLog:
    """Appends lines to ``<logdir>/train.log`` and hands them to the publisher's optional ``publish_log``."""

    def __init__(self, logdir: str, publisher: Any = None):
        self.path = os.path.join(logdir, LOG_FILE)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.publish = getattr(publisher, "publish_log", None)  # optional publisher method

    def write(self, level: str, message: str) -> None:
        """One line per line of ``message``, each stamped with the time (UTC) and ``level``."""
        if level not in LEVELS:
            raise ValueError(f"run log level {level!r}: expected one of {', '.join(LEVELS)}")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lines = [f"{stamp} {level:<7} {text}" for text in message.rstrip("\n").splitlines() or [""]]
        try:
            for line in lines:
                os.write(self.fd, (line + "\n").encode("utf-8", "replace"))
        except OSError as error:  # os.write names no file: a full disk must say which one
            raise OSError(error.errno, error.strerror, self.path) from None
        if self.publish:
            self.publish(lines)

    def info(self, message: str) -> None:
        self.write("INFO", message)

    def warning(self, message: str) -> None:
        """A warning for the log and, as ``cardreamer: warning: ...``, for stderr."""
        print(f"cardreamer: warning: {message}", file=sys.stderr)
        self.write("WARNING", message)

    def error(self, error: BaseException, brief: bool = False) -> None:
        """An error that ends the run: with its traceback, or ``brief``, one line (a user's mistake)."""
        self.write("ERROR", f"{type(error).__name__}: {error}" if brief else "".join(traceback.format_exception(error)))

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        """While active, log records that reach the root logger and Python warnings go to the log too."""
        handler = _Handler(self)
        root = logging.getLogger()
        root.addHandler(handler)
        logging.captureWarnings(True)
        try:
            yield
        finally:
            logging.captureWarnings(False)
            root.removeHandler(handler)

    def close(self) -> None:
        os.close(self.fd)


class _Handler(logging.Handler):
    """Writes log records (INFO and above) to a run log."""

    def __init__(self, run_log: RunLog):
        super().__init__(logging.INFO)
        self.run_log = run_log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = "ERROR" if record.levelno >= logging.ERROR else "WARNING" if record.levelno >= logging.WARNING else "INFO"
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + "".join(traceback.format_exception(*record.exc_info))
            self.run_log.write(level, message)
        except Exception:  # noqa: BLE001 - logging must never break the run (the logging idiom)
            self.handleError(record)
