"""Errors of the CARLA server backend; all are WorldErrors, so the CLI reports them as one line."""
from __future__ import annotations

from cardreamer.world.api import WorldError, WorldLost


class CarlaConnectionError(WorldError):
    """No CARLA server answered at the configured host and port."""


class CarlaServerLost(WorldLost):
    """The server stopped answering mid-run (crashed or timed out).

    The env catches it, calls ``world.recover()`` (``reconnect``) and ends the episode as truncated,
    so training goes on with a fresh episode.
    """


class CarlaLaunchError(WorldError):
    """A CARLA server could not be started, or did not answer in time after starting."""


class SensorTimeout(WorldError):
    """A sensor's reading for the current frame did not arrive in time."""


class CarlaVersionWarning(UserWarning):
    """The client package and the server report different CARLA versions."""


LOST_MARKERS = (
    "time-out",                                  # rpclib: no answer within the client timeout
    "timeout",
    "connection",                                # asio: connection refused / reset by peer / closed
    "closed",
    "broken pipe",
    "end of file",                               # asio: the server closed the socket mid-call
    "failed to connect to newly created map",    # load_world: the new episode never came up
    "expired episode",                           # an object of an episode the server no longer runs
)
"""Fragments of the RuntimeError messages libcarla raises when the server (or its episode) is gone."""


def is_server_lost(exc: BaseException) -> bool:
    """Whether a libcarla RuntimeError means the server or its episode is unreachable (not a refused request)."""
    return isinstance(exc, RuntimeError) and not isinstance(exc, WorldError) and any(
        marker in str(exc).lower() for marker in LOST_MARKERS)
