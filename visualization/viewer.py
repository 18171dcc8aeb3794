"""A Socket.IO client for watching runs from Python (tests, benchmarks, scripts).

python-socketio's client handles each incoming Engine.IO message in a new thread, so the parts of
a message with binary data (a header, then each attachment) can be processed out of order when
frames arrive quickly, and the client then fails to decode them. :class:`OrderedClient` handles
messages one at a time, in arrival order, on the client's reading thread.
"""

from __future__ import annotations

from typing import Any

import engineio
import socketio


class _InOrderEngineIOClient(engineio.Client):
    def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "message":
            kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)


class OrderedClient(socketio.Client):
    """``socketio.Client`` that processes incoming messages in order (handlers must not block long)."""

    def _engineio_client_class(self) -> type[engineio.Client]:
        return _InOrderEngineIOClient
