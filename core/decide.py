"""The pure heart of jobledger: decide a command, fold an event.

``decide(command, state, now)`` returns the events a command produces, or
raises a typed error; it reads nothing but its arguments. ``evolve_job`` and
``evolve_mark`` fold one envelope into the entity it belongs to. A
:class:`Projection` folds a whole log into jobs and marks; the Stower, the
stores' ``rebuild`` and ``replay`` all use these same functions, so the read
model and a replay cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Protocol

import msgspec

from .commands import (
    Command,
    JobComplete,
    JobCreate,
    JobFail,
    JobProgress,
    JobStart,
    MarkCreate,
    MarkDelete,
)
from .errors import (
    ConcurrencyConflict,
    InvalidTransition,
    NotFound,
    StaleAttempt,
    ValidationError,
)
from .events import (
    AnyEvent,
    Envelope,
    JobCompleted,
    JobCreated,
    JobFailed,
    JobProgressed,
    JobStarted,
    MarkCreated,
    MarkDeleted,
)
from .models import Job, Lease, Mark, Progress
from .status import JobStatus, can_transition

__all__ = [
    "Lookup",
    "Projection",
    "decide",
    "evolve_job",
    "evolve_mark",
    "targets",
]


class Lookup(Protocol):
    """What ``decide`` may know: the current jobs and marks by id, and how far
    each stream has gone (so an id is never reused, even after a delete)."""

    def job(self, job_id: str) -> Job | None: ...

    def mark(self, mark_id: str) -> Mark | None: ...

    def version(self, stream: str) -> int:
        """The version of the last event in ``stream``; 0 if it has none."""
        ...


def targets(command: Command) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The job ids and mark ids ``decide`` will look up for ``command``."""
    job_id: str | None = getattr(command, "job_id", None)
    mark_id: str | None = getattr(command, "mark_id", None)
    return ((job_id,) if job_id else (), (mark_id,) if mark_id else ())


def _require_job(state: Lookup, job_id: str) -> Job:
    job = state.job(job_id)
    if job is None:
        raise NotFound("job", job_id)
    return job


def _require_transition(job: Job, target: JobStatus, command: Command) -> None:
    if not can_transition(job.status, target):
        raise InvalidTransition(
            job.id,
            job.status.value,
            target.value,
            command.__struct_config__.tag,  # type: ignore[arg-type]
        )


def _require_attempt(job: Job, attempt: int) -> None:
    if attempt != job.attempt:
        raise StaleAttempt(job.id, attempt, job.attempt)


def _require_running(job: Job, attempt: int, target: JobStatus, command: Command) -> None:
    """A report from a worker: the job must be running, and for this very attempt."""
    if job.status is not JobStatus.RUNNING:
        raise InvalidTransition(
            job.id,
            job.status.value,
            target.value,
            command.__struct_config__.tag,  # type: ignore[arg-type]
        )
    _require_attempt(job, attempt)


def decide(command: Command, state: Lookup, now: datetime) -> list[AnyEvent]:
    """Return the events ``command`` produces against ``state`` at time ``now``.

    Pure: no I/O, no clock, no globals. Raises ``NotFound``,
    ``ValidationError``, ``InvalidTransition``, ``ConcurrencyConflict`` or
    ``StaleAttempt``; when it raises, the command has no effect.
    """
    match command:
        case JobCreate():
            if state.version(command.job_id) > 0:
                raise ValidationError("this id is already used", field="job_id")
            if command.run_at is not None and command.run_at.tzinfo is None:
                raise ValidationError("must be an aware datetime", field="run_at")
            return [
                JobCreated(
                    job_id=command.job_id,
                    job_type=command.job_type,
                    params=command.params,
                    user=command.user,
                    priority=command.priority,
                    run_at=command.run_at,
                    max_retries=command.max_retries,
                    timeout=command.timeout,
                    idempotency_key=command.idempotency_key,
                )
            ]
        case JobStart():
            job = _require_job(state, command.job_id)
            # The version first: a claim that lost the race is a conflict, whatever
            # the winner has done with the job since.
            if command.expected_version != job.version:
                raise ConcurrencyConflict(job.id, command.expected_version, job.version)
            _require_transition(job, JobStatus.RUNNING, command)
            return [
                JobStarted(
                    job_id=job.id,
                    worker=command.worker,
                    attempt=job.attempt + 1,
                    lease_expires_at=now + timedelta(seconds=command.lease_seconds),
                )
            ]
        case JobProgress():
            job = _require_job(state, command.job_id)
            _require_running(job, command.attempt, JobStatus.RUNNING, command)
            percent = command.percent
            if percent is None:
                if command.total and command.processed is not None:
                    percent = min(100.0, 100.0 * command.processed / command.total)
                else:
                    percent = job.progress.percent if job.progress else 0.0
            return [
                JobProgressed(
                    job_id=job.id,
                    attempt=command.attempt,
                    percent=percent,
                    stage=command.stage,
                    message=command.message,
                    processed=command.processed,
                    total=command.total,
                )
            ]
        case JobComplete():
            job = _require_job(state, command.job_id)
            _require_running(job, command.attempt, JobStatus.COMPLETED, command)
            return [JobCompleted(job_id=job.id, attempt=command.attempt, result=command.result)]
        case JobFail():
            job = _require_job(state, command.job_id)
            _require_running(job, command.attempt, JobStatus.FAILED, command)
            return [
                JobFailed(
                    job_id=job.id,
                    attempt=command.attempt,
                    error=command.error,
                    error_type=command.error_type,
                )
            ]
        case MarkCreate():
            if state.version(command.mark_id) > 0:
                raise ValidationError("this id is already used", field="mark_id")
            if command.job_id is not None:
                job = _require_job(state, command.job_id)
                if command.attempt is None:
                    raise ValidationError("required with job_id", field="attempt")
                _require_running(job, command.attempt, JobStatus.RUNNING, command)
            return [
                MarkCreated(
                    mark_id=command.mark_id,
                    resource_id=command.resource_id,
                    annotation=command.annotation,
                    job_id=command.job_id,
                )
            ]
        case MarkDelete():
            mark = state.mark(command.mark_id)
            if mark is None:
                raise NotFound("mark", command.mark_id)
            return [MarkDeleted(mark_id=mark.id, resource_id=mark.resource_id)]
    raise ValidationError(f"unknown command {type(command).__name__}")


_replace = msgspec.structs.replace


def _finish(job: Job, env: Envelope, status: JobStatus, **changes: object) -> Job:
    """A job reaching a terminal status: the lease ends, the finish time is set."""
    return _replace(
        job,
        status=status,
        lease=None,
        finished_at=env.time,
        updated_at=env.time,
        version=env.version,
        **changes,
    )


def evolve_job(job: Job | None, env: Envelope) -> Job | None:
    """Fold one job event into the job it belongs to (``None`` before ``job.created``)."""
    event = env.data
    if isinstance(event, JobCreated):
        return Job(
            id=event.job_id,
            job_type=event.job_type,
            status=JobStatus.PENDING,
            params=event.params,
            user=event.user,
            priority=event.priority,
            run_at=event.run_at,
            max_retries=event.max_retries,
            timeout=event.timeout,
            idempotency_key=event.idempotency_key,
            created_at=env.time,
            updated_at=env.time,
            version=env.version,
            created_seq=env.seq,
        )
    if job is None:
        return None
    match event:
        case JobStarted():
            return _replace(
                job,
                status=JobStatus.RUNNING,
                attempt=event.attempt,
                lease=Lease(
                    worker=event.worker,
                    attempt=event.attempt,
                    expires_at=event.lease_expires_at,
                ),
                started_at=env.time,
                updated_at=env.time,
                version=env.version,
            )
        case JobProgressed():
            return _replace(
                job,
                progress=Progress(
                    percent=event.percent,
                    stage=event.stage,
                    message=event.message,
                    processed=event.processed,
                    total=event.total,
                ),
                updated_at=env.time,
                version=env.version,
            )
        case JobCompleted():
            return _finish(job, env, JobStatus.COMPLETED, result=event.result)
        case JobFailed():
            return _finish(job, env, JobStatus.FAILED, error=event.error)
    return _replace(job, updated_at=env.time, version=env.version)


def evolve_mark(mark: Mark | None, env: Envelope) -> Mark | None:
    """Fold one mark event into its mark. ``mark.deleted`` yields ``None``."""
    event = env.data
    if isinstance(event, MarkCreated):
        return Mark(
            id=event.mark_id,
            resource_id=event.resource_id,
            annotation=event.annotation,
            job_id=event.job_id,
            created_by=env.actor,
            created_at=env.time,
            version=env.version,
            created_seq=env.seq,
        )
    if isinstance(event, MarkDeleted):
        return None
    return mark


class Projection:
    """Jobs and marks folded from a sequence of envelopes, in memory.

    Used by replay, rebuild and the in-memory store. ``apply`` must see the
    envelopes in ``seq`` order. Not thread-safe; never blocks.
    """

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.marks: dict[str, Mark] = {}
        self.versions: dict[str, int] = {}
        self.seq = 0

    def job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def mark(self, mark_id: str) -> Mark | None:
        return self.marks.get(mark_id)

    def version(self, stream: str) -> int:
        return self.versions.get(stream, 0)

    def apply(self, env: Envelope) -> None:
        """Fold one envelope."""
        if env.type.startswith("job."):
            job = evolve_job(self.jobs.get(env.stream), env)
            if job is None:
                self.jobs.pop(env.stream, None)
            else:
                self.jobs[env.stream] = job
        elif env.type.startswith("mark."):
            mark = evolve_mark(self.marks.get(env.stream), env)
            if mark is None:
                self.marks.pop(env.stream, None)
            else:
                self.marks[env.stream] = mark
        self.versions[env.stream] = env.version
        self.seq = env.seq

    def apply_all(self, envelopes: Iterable[Envelope]) -> None:
        """Fold many envelopes, in order."""
        for env in envelopes:
            self.apply(env)

    def marks_of(self, resource_id: str) -> list[Mark]:
        """The live marks of one resource, oldest first."""
        return sorted(
            (m for m in self.marks.values() if m.resource_id == resource_id),
            key=lambda m: m.created_seq,
        )
