"""Job statuses and the one transition table.

::

    pending ──► running ──► completed | partial | failed | cancelled | skipped | timed_out
       │  ▲        │
       │  └────────┤  (a retry, an expired lease)
       │           ▼
       ├──────► suspended ──► pending (resumed) | cancelled
       └──────► cancelled

Terminal statuses accept no command at all. A command that asks for a move
the table does not list is refused with :class:`~jobledger.core.errors.InvalidTransition`.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Final

__all__ = ["TERMINAL", "TRANSITIONS", "JobStatus", "can_transition", "is_terminal"]


class JobStatus(StrEnum):
    """Where a job is in its life. A ``StrEnum``: ``job.status == "completed"`` holds."""

    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    TIMED_OUT = "timed_out"


_S = JobStatus

TRANSITIONS: Final = MappingProxyType(
    {
        _S.PENDING: frozenset({_S.RUNNING, _S.SUSPENDED, _S.CANCELLED}),
        _S.RUNNING: frozenset(
            {
                _S.PENDING,
                _S.SUSPENDED,
                _S.COMPLETED,
                _S.PARTIAL,
                _S.FAILED,
                _S.CANCELLED,
                _S.SKIPPED,
                _S.TIMED_OUT,
            }
        ),
        _S.SUSPENDED: frozenset({_S.PENDING, _S.CANCELLED}),
        _S.COMPLETED: frozenset(),
        _S.PARTIAL: frozenset(),
        _S.FAILED: frozenset(),
        _S.CANCELLED: frozenset(),
        _S.SKIPPED: frozenset(),
        _S.TIMED_OUT: frozenset(),
    }
)
"""For each status, the statuses a job in it may move to."""

TERMINAL: Final = frozenset(s for s, targets in TRANSITIONS.items() if not targets)
"""The statuses a job never leaves."""


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    """True if the table allows ``current`` → ``target``."""
    return target in TRANSITIONS[current]


def is_terminal(status: JobStatus) -> bool:
    """True if ``status`` accepts no further change."""
    return status in TERMINAL
