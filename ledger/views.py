"""A job as scripts and UIs read it: :class:`JobView`, the JSON document the
command line's ``--json`` prints and the HTTP API will serve, with the field
names of the Rust seed's DTO (camelCase). docs/glossary.md maps each field
to the model's name.

A view is made from a :class:`~jobledger.core.Job` at a moment (``now``:
for ``etaSeconds``); it holds no state of its own, so it cannot drift from
the job: ``job_view(job, now)`` is the only way to make one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from jobledger.core import Job

__all__ = ["JobView", "ProgressView", "job_view"]


class ProgressView(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A job's last progress report: ``percentage`` (0 to 100), ``stage``,
    ``message``, ``itemsProcessed`` and ``itemsTotal``, and ``etaSeconds``
    (seconds from the view's moment to the worker's estimated end, never
    negative; ``None`` without an estimate)."""

    percentage: float
    stage: str | None
    message: str | None
    items_processed: int | None
    items_total: int | None
    eta_seconds: float | None


class JobView(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A job, every field present (``null`` where unset): ``id``, ``type``,
    ``status``, ``userId``, ``queue``, ``params``, ``result``, ``error``,
    ``progress`` (a :class:`ProgressView`), ``attempt``, ``failures``,
    ``maxRetries``, ``maxRecoveries``, ``priority``, and the times
    ``createdAt``, ``startedAt``, ``finishedAt`` and ``runAt`` (RFC 3339,
    UTC)."""

    id: str
    type: str
    status: str
    user_id: str
    queue: str
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    progress: ProgressView | None
    attempt: int
    failures: int
    max_retries: int
    max_recoveries: int
    priority: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    run_at: datetime | None


def job_view(job: Job, now: datetime) -> JobView:
    """``job`` as a :class:`JobView` at ``now``."""
    progress = None
    if job.progress is not None:
        p = job.progress
        eta = None if p.eta is None else max(0.0, (p.eta - now).total_seconds())
        progress = ProgressView(
            percentage=p.percent,
            stage=p.stage,
            message=p.message,
            items_processed=p.processed,
            items_total=p.total,
            eta_seconds=eta,
        )
    return JobView(
        id=job.id,
        type=job.job_type,
        status=job.status.value,
        user_id=job.user.id,
        queue=job.queue,
        params=job.params,
        result=job.result,
        error=job.error,
        progress=progress,
        attempt=job.attempt,
        failures=job.failures,
        max_retries=job.max_retries,
        max_recoveries=job.max_recoveries,
        priority=job.priority,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        run_at=job.run_at,
    )
