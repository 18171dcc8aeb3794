"""The CARLA server backend: the World interface on a running CARLA 0.9.x server.

``CarlaWorld`` is the world; ``CarlaProcessWorld`` runs it in a worker process (the default,
``env.world.carla.isolate``); ``choose_backend`` resolves ``env.world.backend: auto``; ``start_server``
runs a headless server (``cardreamer carla start``). See docs/carla.md.
"""
from cardreamer.world.carla_backend.connection import choose_backend, client_version, connect
from cardreamer.world.carla_backend.errors import (
                                                   CarlaConnectionError,
                                                   CarlaLaunchError,
                                                   CarlaServerLost,
                                                   CarlaVersionWarning,
                                                   SensorTimeout,
)
from cardreamer.world.carla_backend.launcher import start_server
from cardreamer.world.carla_backend.worker import CarlaProcessWorld
from cardreamer.world.carla_backend.world import CarlaWorld

__all__ = [
                                                   "CarlaConnectionError",
                                                   "CarlaLaunchError",
                                                   "CarlaProcessWorld",
                                                   "CarlaServerLost",
                                                   "CarlaVersionWarning",
                                                   "CarlaWorld",
                                                   "SensorTimeout",
                                                   "choose_backend",
                                                   "client_version",
                                                   "connect",
                                                   "start_server",
]
