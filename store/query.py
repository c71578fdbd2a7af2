"""Query rules shared by every backend, so they order and filter alike."""

from __future__ import annotations

from datetime import datetime

from jobledger.core import Job, JobStatus

__all__ = ["pending_order", "runnable"]


def runnable(job: Job, now: datetime) -> bool:
    """True if ``job`` is pending and due at ``now``."""
    return job.status is JobStatus.PENDING and (job.run_at is None or job.run_at <= now)


def pending_order(job: Job) -> tuple[int, int]:
    """Sort key for claiming: highest priority first, then submission order."""
    return (-job.priority, job.created_seq)
