"""Query rules shared by every backend, so they order and filter alike."""

from __future__ import annotations

from datetime import datetime

from jobledger.core import Job, JobStatus

__all__ = ["expired", "pending_order", "runnable"]


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
