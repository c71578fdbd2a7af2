"""Crash points: named places where a test makes the process die hard.

The engine reaches each point on a :class:`Faults` object given to it by
whoever builds it (``jobledger.open(..., faults=...)``, or the ``faults``
argument of ``Ledger``, ``SqliteLog``, ``Stower`` and ``WorkerRunner``); by
default there is none, and reaching a point costs one ``is None`` test. The
library reads no environment variable: a reliability test builds a
:class:`CrashAt` in its child process (from whatever it likes, its own
environment variable included) and passes it in. At the ``k``-th time that
process reaches the armed point it ends at once with
``os._exit(CRASH_EXIT_CODE)``: no ``finally``, no flush, no goodbye, as a
power cut or ``kill -9`` would end it.
"""

from __future__ import annotations

import os
import threading
from typing import Protocol

__all__ = ["CRASH_EXIT_CODE", "CRASH_POINTS", "CrashAt", "Faults"]

CRASH_POINTS = (
    "stower.before_begin",  # a batch taken from the mailbox, nothing written yet
    "store.after_insert",  # every statement of the batch run, COMMIT not yet
    "stower.after_commit",  # committed, not yet published
    "stower.before_answer",  # published, the senders not yet answered
    "runner.after_claim",  # a claim won, execute not yet started
    "runner.mid_progress",  # a progress report committed, execute not yet resumed
)
"""Every crash point, in the order a job meets them."""

CRASH_EXIT_CODE = 97
"""The exit code of a process ended at a crash point."""


class Faults(Protocol):
    """What the engine calls at each crash point (one of :data:`CRASH_POINTS`).

    ``reach`` may end the process; it must not raise, block or await (it is
    called on the event loop and on the SQLite writer's thread)."""

    def reach(self, point: str) -> None:
        """The engine is at ``point`` now."""


class CrashAt:
    """Faults that end the process at the ``k``-th time it reaches ``point``.

    Raises ``ValueError`` for a point not in :data:`CRASH_POINTS` or a ``k``
    below 1. :meth:`parse` reads the ``<point>:<k>`` form."""

    def __init__(self, point: str, k: int) -> None:
        if point not in CRASH_POINTS:
            raise ValueError(f"crash point {point!r}: expected one of {CRASH_POINTS}")
        if k < 1:
            raise ValueError(f"crash point {point!r}: k must be 1 or more, not {k}")
        self.point = point
        self.k = k
        self._hits = 0
        self._lock = threading.Lock()  # points are reached on two threads

    @classmethod
    def parse(cls, spec: str) -> CrashAt:
        """``"<point>:<k>"`` as a :class:`CrashAt`; ``ValueError`` naming the form otherwise."""
        point, _, count = spec.rpartition(":")
        if point not in CRASH_POINTS or not count.isdigit() or int(count) < 1:
            raise ValueError(f"{spec!r}: expected <point>:<k>, a point of {CRASH_POINTS}")
        return cls(point, int(count))

    def reach(self, point: str) -> None:
        """End the process here if ``point`` is the armed one and this is its k-th hit."""
        if point != self.point:
            return
        with self._lock:
            self._hits += 1
            if self._hits == self.k:
                os._exit(CRASH_EXIT_CODE)

    def __repr__(self) -> str:
        return f"CrashAt({self.point!r}, {self.k})"
