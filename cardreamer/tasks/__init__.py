"""Built-in driving tasks: one YAML definition each, and the parts, reward terms and terminal
settings they use beyond the core ones.

Importing this package registers its parts (``lead_vehicle``, ``traffic_rules``,
``random_approach``) and their terms and settings by name; the task files name them.
"""
from cardreamer.tasks import lead_vehicle, random_approach, traffic_rules  # noqa: F401
