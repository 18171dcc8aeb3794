"""Which of a run's envs is being built, so that each env of a server backend can take its own server.

A trainer builds its training envs as slots ``0..N-1`` and its evaluation env as slot ``N``; the
CARLA backend gives slot ``k`` the ``k``-th configured server (``env.world.carla.servers``). An
env built outside a trainer is slot 0 of 1. The slot is set only while the env is constructed
(in the process that constructs it, a vector env's worker included).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class EnvSlot:
    """Env ``index`` of a run's ``count`` envs; ``evaluation``: the run evaluates in an env of its own (the last)."""

    index: int = 0
    count: int = 1
    evaluation: bool = False

    def describe(self) -> str:
        """What the run's envs are, e.g. '2 training envs and 1 evaluation env'."""
        train = self.count - int(self.evaluation)
        return f"{train} training env{'s' * (train != 1)}" + (" and 1 evaluation env" if self.evaluation else "")


_current = EnvSlot()


def training_slots(num_envs: int, evaluation: bool) -> list[EnvSlot]:
    """The slots of a run's ``num_envs`` training envs (``evaluation``: an evaluation env follows them)."""
    return [EnvSlot(i, num_envs + int(evaluation), evaluation) for i in range(num_envs)]


def evaluation_slot(num_envs: int) -> EnvSlot:
    """The slot of the evaluation env of a run with ``num_envs`` training envs."""
    return EnvSlot(num_envs, num_envs + 1, True)


def current_slot() -> EnvSlot:
    """The slot of the env being built now (slot 0 of 1 outside ``building``)."""
    return _current


@contextmanager
def building(slot: EnvSlot) -> Iterator[None]:
    """Build an env as ``slot`` inside this block."""
    global _current
    previous, _current = _current, slot
    try:
        yield
    finally:
        _current = previous
