"""Built-in driving tasks: one YAML definition each, plus Python modules for task-specific logic.

Importing this package registers the tasks' own reward terms and task logic by name.
"""
