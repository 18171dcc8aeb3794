"""Built-in driving tasks: one YAML definition each, plus Python modules for task-specific logic.

Importing this package registers the tasks' own reward terms, terminal conditions and task logic
by name (the YAML files refer to them by those names).
"""
from tasks import lead_vehicle, random_approach, traffic_rules  # noqa: F401
