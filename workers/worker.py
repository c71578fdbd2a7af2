"""JobWorker and JobContext: what an application writes to run jobs.

A worker is not an actor: it polls for pending jobs of its types, claims one
with ``job:start`` (naming the version it saw, so of two claims only one
wins), runs :meth:`JobWorker.execute`, and reports through commands. The
runner (:mod:`jobledger.workers.runner`) does the polling and reporting; a
worker only implements ``execute``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec
import structlog

from jobledger.core import (
    Clock,
    IdFactory,
    Job,
    JobProgress,
    MarkCreate,
    ValidationError,
    evolve_job,
    get_logger,
    to_ms,
)
from jobledger.eventbus import EventBus

__all__ = ["JobContext", "JobWorker", "result_of"]


class JobContext:
    """What ``execute`` may do besides computing: report progress and create marks.

    Every method sends a command for the job's current attempt; if the
    attempt is no longer current (the claim was lost), the command is refused
    with ``StaleAttempt`` and the error propagates into ``execute``.
    """

    def __init__(
        self, job: Job, *, worker: str, bus: EventBus, clock: Clock, ids: IdFactory
    ) -> None:
        self._job = job
        self._worker = worker
        self._bus = bus
        self._clock = clock
        self._ids = ids
        self.log: structlog.stdlib.BoundLogger = get_logger("workers").bind(
            job_id=job.id, worker=worker
        )

    @property
    def job(self) -> Job:
        """The job as of the last report this context made."""
        return self._job

    @property
    def attempt(self) -> int:
        return self._job.attempt

    @property
    def worker(self) -> str:
        return self._worker

    @property
    def actor(self) -> str:
        """How this worker appears in the log's ``actor`` field."""
        return f"worker:{self._worker}"

    async def progress(
        self,
        percent: float | None = None,
        *,
        stage: str | None = None,
        message: str | None = None,
        processed: int | None = None,
        total: int | None = None,
    ) -> None:
        """Report progress (``percent`` 0-100, or ``processed`` of ``total``).

        Returns once the progress is committed and published.
        """
        envelopes = await self._bus.send(
            JobProgress(
                job_id=self._job.id,
                attempt=self._job.attempt,
                percent=percent,
                stage=stage,
                message=message,
                processed=processed,
                total=total,
                actor=self.actor,
                correlation_id=self._job.id,
            )
        )
        for env in envelopes:
            self._job = evolve_job(self._job, env) or self._job

    async def create_mark(
        self, resource_id: str, annotation: Mapping[str, Any], *, mark_id: str | None = None
    ) -> str:
        """Create a mark on ``resource_id`` for this job; returns the mark's id."""
        mark_id = mark_id or self._ids.make("mark", to_ms(self._clock.now()))
        await self._bus.send(
            MarkCreate(
                mark_id=mark_id,
                resource_id=resource_id,
                annotation=dict(annotation),
                job_id=self._job.id,
                attempt=self._job.attempt,
                actor=self.actor,
                correlation_id=self._job.id,
            )
        )
        return mark_id


class JobWorker(ABC):
    """Base class of workers. Subclass it, set ``job_types``, implement ``execute``.

    ``name`` (default: the class name) identifies the worker in leases and in
    the log's ``actor`` field; ``concurrency`` is how many jobs one runner of
    this worker runs at once; ``lease_seconds`` is how long a claim holds.
    """

    job_types: ClassVar[tuple[str, ...]] = ()
    concurrency: int = 1
    lease_seconds: float = 60.0
    name: str = ""

    def __init__(self, *, name: str | None = None, concurrency: int | None = None) -> None:
        if name is not None:
            self.name = name
        if not self.name:
            self.name = type(self).__name__
        if concurrency is not None:
            self.concurrency = concurrency
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not self.job_types:
            raise ValueError(f"{type(self).__name__} declares no job_types")

    @abstractmethod
    async def execute(self, job: Job, ctx: JobContext) -> Any:
        """Do the job. Return its result: a dict, a msgspec Struct, or ``None``.

        Raising marks the job failed with the exception's message.
        """


def result_of(value: Any) -> dict[str, Any] | None:
    """Turn what ``execute`` returned into a job result (a JSON object) or raise
    ``ValidationError`` if it cannot be one."""
    if value is None:
        return None
    if isinstance(value, msgspec.Struct):
        value = msgspec.to_builtins(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise ValidationError(
        f"execute() returned {type(value).__name__}; a job result is a dict or a Struct"
    )
