"""``python -m visualization serve|drive ...``: the visualizer's commands without the main CLI."""

from visualization.cli import main

main()
