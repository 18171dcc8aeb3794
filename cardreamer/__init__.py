"""CarDreamer: world-model-based autonomous driving on an embedded simulator or CARLA."""
from cardreamer.task_registry import register_envs

register_envs()

__version__ = "0.1.0"
