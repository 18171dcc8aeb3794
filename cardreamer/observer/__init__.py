"""Observations: the Observer, the handler protocol and registry, and the built-in handlers.

Importing this package registers the built-in handlers: birdeye, spectator, camera, lidar,
collision, message, state. ``DEFAULT_OBSERVATIONS`` holds the default configs of the named
observation variants (birdeye_wpt, camera, lidar, ...).
"""
from cardreamer.observer import birdeye, camera, collision, lidar, message, state  # noqa: F401 (registration)
from cardreamer.observer.defaults import DEFAULT_OBSERVATIONS
from cardreamer.observer.handler import (
                                         HANDLERS,
                                         Handler,
                                         HandlerConfig,
                                         ObservationConfigError,
                                         build_handler,
                                         get_handler,
                                         register_handler,
                                         registered_handlers,
)
from cardreamer.observer.observer import Observer

__all__ = ["DEFAULT_OBSERVATIONS", "HANDLERS", "Handler", "HandlerConfig", "ObservationConfigError", "Observer",
           "build_handler", "get_handler", "register_handler", "registered_handlers"]
