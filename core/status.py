"""Job statuses and the one transition table.

::

    pending ──► running ──► completed | partial | failed | cancelled | skipped | timed_out
       │  ▲        │
       │  └────────┤  (a retry, an expired lease)
       │           ▼
       ├──────► suspended ──► pending (resumed) | cancelled
       └──────► cancelled

    failed | timed_out | cancelled ──► pending   (job:retry: a person's choice)

:data:`TRANSITIONS` is the one list of moves: ``decide`` asks it (through
:func:`can_transition`) before every status move it makes, the move a command
asks for and the one it may lead to instead (a retry, a cancel requested
meanwhile). A command that asks for a move the table does not list is refused
with :class:`~jobledger.core.errors.InvalidTransition` naming the job's status
and the status asked for. Where a command acts is narrower than the table:
a report for an attempt (progress, completion, failure, expiry, ...) needs a
running job, and ``job:resume`` a suspended one. The terminal statuses
(:data:`TERMINAL`, the one list of job endings) are where a job's run ends;
they accept ``job:delete``, which removes any job that is not running, and
``failed``, ``timed_out`` and ``cancelled`` (:data:`RETRYABLE`) exactly one
other command, ``job:retry``, which runs the job again (pending, the same
id).
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Final

__all__ = [
    "RETRYABLE",
    "TERMINAL",
    "TRANSITIONS",
    "JobStatus",
    "can_transition",
    "is_terminal",
]


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
        _S.FAILED: frozenset({_S.PENDING}),  # job:retry only
        _S.CANCELLED: frozenset({_S.PENDING}),  # job:retry only
        _S.SKIPPED: frozenset(),
        _S.TIMED_OUT: frozenset({_S.PENDING}),  # job:retry only
    }
)
"""For each status, the statuses a job in it may move to; ``decide`` makes no other move."""

TERMINAL: Final = frozenset(
    {_S.COMPLETED, _S.PARTIAL, _S.FAILED, _S.CANCELLED, _S.SKIPPED, _S.TIMED_OUT}
)
"""The job endings: the statuses where a run ends (``wait`` returns, cleanup
may remove the job). Nothing moves a job out of one but ``job:retry``."""

RETRYABLE: Final = frozenset({_S.FAILED, _S.TIMED_OUT, _S.CANCELLED})
"""The endings ``job:retry`` takes back to pending."""


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    """True if the table allows ``current`` → ``target``."""
    return target in TRANSITIONS[current]


def is_terminal(status: JobStatus) -> bool:
    """True if ``status`` accepts no further change."""
    return status in TERMINAL
