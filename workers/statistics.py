"""What a worker runner counts: :class:`WorkerStatistics`."""

from __future__ import annotations

import msgspec

__all__ = ["WorkerStatistics"]


class WorkerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A runner's counters. ``active`` is the number of jobs executing now;
    ``released`` the jobs given back at a stop; ``abandoned`` the executions
    that would not stop when cancelled; ``proposed`` the jobs of ``claimed``
    that the Stower claimed for it in the batch that freed its slot;
    ``refused_full`` its claims the writer refused because the log's
    capacity of the job's queue was reached (by other processes' jobs)."""

    worker: str
    job_types: tuple[str, ...]
    running: bool
    slots: int
    active: int
    claimed: int
    lost_claims: int
    completed: int
    failed: int
    ended_otherwise: int
    timed_out: int
    heartbeats: int
    report_errors: int
    polls: int
    released: int = 0
    abandoned: int = 0
    proposed: int = 0
    refused_full: int = 0
