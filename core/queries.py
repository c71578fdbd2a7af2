"""The read-only query protocol workers use to find work.

Workers never touch the store: the Ledger hands them an object that
satisfies :class:`JobReader` (the store's read model does), and they write
only commands.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import msgspec

from .models import Job, Mark, Queue, Resource
from .status import JobStatus

__all__ = ["JobReader", "PendingRead", "expired", "pending_order", "runnable"]


def runnable(job: Job, now: datetime) -> bool:
    """True if ``job`` is pending and due at ``now``."""
    return job.status is JobStatus.PENDING and (job.run_at is None or job.run_at <= now)


def pending_order(job: Job) -> tuple[int, int]:
    """Sort key for claiming: highest priority first, then submission order."""
    return (-job.priority, job.created_seq)


def expired(job: Job, now: datetime) -> bool:
    """True if ``job`` is running past its lease or its timeout at ``now``."""
    if job.status is not JobStatus.RUNNING or job.lease is None:
        return False
    deadline = job.deadline
    return job.lease.expires_at <= now or (deadline is not None and deadline <= now)


class PendingRead(msgspec.Struct, frozen=True, gc=False):
    """Pending jobs as one read found them, the head of the log that read
    saw (``seq`` and ``hash``; ``0`` and ``""`` for an empty log), and the
    earliest ``run_at`` of the pending jobs of those types (``due``, as
    ``next_due`` answers it): each job is exactly as committed at that
    head, so a writer whose own head is the same may decide on it without
    reading it again."""

    jobs: list[Job]
    seq: int = 0
    hash: str = ""
    due: datetime | None = None


class JobReader(Protocol):
    """Read access to the committed jobs (and the resources jobs make)."""

    async def get_job(self, job_id: str) -> Job | None:
        """The job with ``job_id`` as last committed, or ``None``."""
        ...

    async def next_pending(
        self, job_types: Sequence[str], now: datetime, limit: int = 1
    ) -> list[Job]:
        """Up to ``limit`` pending jobs of ``job_types`` that may run at ``now``.

        Highest ``priority`` first; equal priorities in submission order
        (``created_seq``). Jobs whose ``run_at`` is after ``now`` are left out.
        """
        ...

    async def next_pending_read(
        self, job_types: Sequence[str], now: datetime, limit: int = 1
    ) -> PendingRead:
        """``next_pending``, with the head of the log the read saw and
        ``next_due``, in one snapshot."""
        ...

    async def queues(self) -> list[Queue]:
        """The records of the queues the log configured (``queue.configured``),
        by name, each with its capacity and running count."""
        ...

    async def marks_of(self, resource_id: str) -> list[Mark]:
        """The live marks of a resource, oldest first."""
        ...

    async def get_resource(self, resource_id: str) -> Resource | None:
        """The resource ``resource_id`` as committed, or ``None``."""
        ...

    async def next_due(self, job_types: Sequence[str]) -> datetime | None:
        """The earliest ``run_at`` of the pending, delayed jobs of ``job_types``
        (a retry waiting out its backoff, a job submitted for later); ``None``
        if there is none."""
        ...
