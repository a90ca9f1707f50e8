"""Stopping long work between batches, once whoever asked for it no longer waits for it.

The caller (a dashboard run, a script) wraps its engine calls in ``stop_when(should_stop)``; every pass
the engine sends through a model (``Runtime.gradients``, the engine's only way to run one) and every step
of a visualisation checks it first, so a method of thousands of passes ends within one batch of being
asked. The condition lives in a context variable rather than in every call's arguments: it reaches every
method, score and visualisation without each registration passing it on, and it stays with the thread (or
task) that set it, so another session's work, or the server's warm-up, never sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

StopCondition = Callable[[], bool]  # True once the work should end

_CONDITION: ContextVar[StopCondition | None] = ContextVar("explainers_stop_condition", default=None)


class Stopped(Exception):
    """The work was stopped before it finished, because its stop condition held; nothing partial was cached."""

    def __init__(self) -> None:
        super().__init__("Stopped before it finished: whoever asked for it no longer waits for it.")


@contextmanager
def stop_when(should_stop: StopCondition) -> Iterator[None]:
    """Engine calls inside the block raise ``Stopped`` between batches once ``should_stop()`` is true.

    ``should_stop`` is called once per batch, from the thread running the work: it must be cheap and thread-safe.
    """
    token = _CONDITION.set(should_stop)
    try:
        yield
    finally:
        _CONDITION.reset(token)


def check() -> None:
    """Raise ``Stopped`` when the caller's stop condition holds; nothing when there is none. Called between batches."""
    should_stop = _CONDITION.get()
    if should_stop is not None and should_stop():
        raise Stopped()
