"""The read-only query protocol workers use to find work.

Workers never touch the store: the Ledger hands them an object that
satisfies :class:`JobReader` (the store's read model does), and they write
only commands.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from .models import Job

__all__ = ["JobReader"]


class JobReader(Protocol):
    """Read access to the committed jobs."""

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

    async def next_due(self, job_types: Sequence[str]) -> datetime | None:
        """The earliest ``run_at`` of the pending, delayed jobs of ``job_types``
        (a retry waiting out its backoff, a job submitted for later); ``None``
        if there is none."""
        ...
