"""Deciding commands: ``decide(command, state, now)`` returns the events a
command produces, or raises a typed error; it reads nothing but its
arguments (the state through :class:`Lookup`). Folding those events into
state lives in :mod:`jobledger.core.evolve`; its names are importable from
here too.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Protocol

import msgspec

from .annotations import apply_body_operations
from .commands import (
    MAX_RETRY_DELAY,
    AssetCreate,
    Command,
    JobCancel,
    JobComplete,
    JobCreate,
    JobDelete,
    JobExpire,
    JobFail,
    JobHeartbeat,
    JobPartial,
    JobProgress,
    JobRelease,
    JobResume,
    JobRetry,
    JobSkip,
    JobStart,
    JobSuspend,
    MarkCreate,
    MarkDelete,
    MarkUpdateBody,
    QueueConfigure,
    ResourceCreate,
)
from .content import check_storage_path
from .errors import (
    CancelRequested,
    ConcurrencyConflict,
    InvalidTransition,
    NotFound,
    StaleAttempt,
    ValidationError,
)
from .events import (
    AnyEvent,
    AssetCreated,
    JobCancelled,
    JobCancelRequested,
    JobCompleted,
    JobCreated,
    JobDeleted,
    JobFailed,
    JobLeaseExpired,
    JobLeaseRenewed,
    JobPartiallyCompleted,
    JobProgressed,
    JobReleased,
    JobResumed,
    JobRetried,
    JobRetryScheduled,
    JobSkipped,
    JobStarted,
    JobSuspended,
    JobSuspendRequested,
    JobTimedOut,
    MarkBodyUpdated,
    MarkCreated,
    MarkDeleted,
    ResourceCreated,
)
from .evolve import (
    Projection,
    evolve_asset,
    evolve_job,
    evolve_mark,
    evolve_resource,
    key_of,
)
from .models import Job, Mark, Queue, RetryPolicy
from .queues import decide_configure, queue_room
from .status import RETRYABLE, JobStatus, can_transition
from .w3c import check_annotation

__all__ = [
    "DEFAULT_RETRY",
    "Lookup",
    "Projection",
    "decide",
    "evolve_asset",
    "evolve_job",
    "evolve_mark",
    "evolve_resource",
    "key_of",
    "retry_delay",
    "targets",
]

DEFAULT_RETRY = RetryPolicy()
"""The retry policy of jobs that name none: 1 s doubling, capped at 5 min, full jitter."""


class Lookup(Protocol):
    """What ``decide`` may know: the current jobs, marks and assets by id, how
    far each stream has gone (so an id is never reused, even after a delete),
    and which job holds an idempotency key."""

    def job(self, job_id: str) -> Job | None: ...

    def mark(self, mark_id: str) -> Mark | None: ...

    def version(self, stream: str) -> int:
        """The version of the last event in ``stream``; 0 if it has none."""
        ...

    def job_by_key(self, user_id: str, tenant: str | None, key: str) -> Job | None:
        """The live job of ``user_id`` in ``tenant`` submitted with idempotency
        ``key``, if any."""
        ...

    def queue(self, name: str) -> Queue | None:
        """The record of queue ``name``, with its capacity and running count;
        ``None`` for a queue never configured (unbounded)."""
        ...


def targets(command: Command) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The job ids and mark ids ``decide`` will look up for ``command``, and the
    streams it begins (an asset's or a resource's, whose ids must be unused)."""
    job_id: str | None = getattr(command, "job_id", None)
    mark_id: str | None = getattr(command, "mark_id", None)
    begins = (
        (command.asset_id,)
        if isinstance(command, AssetCreate)
        else (command.resource_id,)
        if isinstance(command, ResourceCreate)
        else ()
    )
    return ((job_id,) if job_id else (), (mark_id,) if mark_id else (), begins)


def retry_delay(policy: RetryPolicy, retry: int, job_id: str) -> float:
    """Seconds to wait before retry number ``retry`` (1, 2, …) of ``job_id``.

    Full jitter: uniform in ``[0, min(max_delay, base_delay * factor ** (retry - 1))]``,
    drawn from a hash of the job id and retry number, so it differs between
    jobs and is the same on every replay. Never more than ``MAX_RETRY_DELAY``.
    """
    try:
        growth = policy.base_delay * policy.factor ** max(0, retry - 1)
    except OverflowError:
        growth = MAX_RETRY_DELAY
    # Clamped: a log may hold a policy from before the limits (NaN, 1e300).
    ceiling = min(policy.max_delay, growth, MAX_RETRY_DELAY)
    ceiling = ceiling if ceiling >= 0 else 0.0  # (NaN compares false)
    if not policy.jitter:
        return ceiling
    digest = hashlib.sha256(f"{job_id}:{retry}".encode()).digest()
    return ceiling * int.from_bytes(digest[:8], "big") / 2**64


def _tag(command: Command) -> str:
    tag = command.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def _require_job(state: Lookup, job_id: str) -> Job:
    job = state.job(job_id)
    if job is None:
        raise NotFound("job", job_id)
    return job


def _refuse(job: Job, target: JobStatus | str, command: Command) -> InvalidTransition:
    """The refusal of ``command``, which asked ``job`` to go to ``target``."""
    return InvalidTransition(job.id, job.status.value, str(target), _tag(command))


def _require_transition(job: Job, target: JobStatus, command: Command) -> None:
    """The move ``job.status`` → ``target`` must be in :data:`TRANSITIONS`.

    Every status move ``decide`` makes passes here first (the move a command
    asks for, and a move it leads to instead, such as a retry or a cancel that
    was requested meanwhile): the table is the one list of moves that exist.
    """
    if not can_transition(job.status, target):
        raise _refuse(job, target, command)


def _require_running(job: Job, attempt: int, target: JobStatus, command: Command) -> None:
    """A report from a worker for its ``attempt``, asking the job to go to
    ``target`` (``RUNNING``: to stay running). An attempt exists only while
    the job runs: the job must be running, the table must allow the move, and
    the attempt must be the current one."""
    if job.status is not JobStatus.RUNNING:
        raise _refuse(job, target, command)
    if target is not JobStatus.RUNNING:
        _require_transition(job, target, command)
    _require_attempt(job, attempt)


def _require_attempt(job: Job, attempt: int) -> None:
    """``attempt`` must be the running job's current one."""
    if attempt != job.attempt:
        raise StaleAttempt(job.id, attempt, job.attempt)


def _retry_at(job: Job, now: datetime) -> datetime | None:
    """When the job may run again after its current attempt, or None if it may not."""
    if job.retries_left <= 0:
        return None
    delay = retry_delay(job.retry or DEFAULT_RETRY, job.failures + 1, job.id)
    return now + timedelta(seconds=delay)


def decide(command: Command, state: Lookup, now: datetime) -> list[AnyEvent]:
    """Return the events ``command`` produces against ``state`` at time ``now``.

    Pure: no I/O, no clock, no globals. Raises ``NotFound``,
    ``ValidationError``, ``InvalidTransition``, ``ConcurrencyConflict`` or
    ``StaleAttempt``; when it raises, the command has no effect. An empty
    list means the command is already in effect (an idempotent repeat).
    """
    match command:
        case JobCreate():
            return _create(command, state)
        case MarkCreate():
            return _create_mark(command, state)
        case MarkDelete():
            mark = state.mark(command.mark_id)
            if mark is None:
                raise NotFound("mark", command.mark_id)
            _require_attempt_of(state, command.job_id, command.attempt, command)
            return [
                MarkDeleted(mark_id=mark.id, resource_id=mark.resource_id, job_id=command.job_id)
            ]
        case MarkUpdateBody():
            return _update_mark_body(command, state)
        case ResourceCreate():
            return _create_resource(command, state)
        case QueueConfigure():
            return decide_configure(command, state.queue(command.queue))
        case AssetCreate():
            if state.version(command.asset_id) > 0:
                raise ValidationError("this id is already used", field="asset_id")
            check_storage_path(command.storage_path)
            job = _require_job(state, command.job_id)
            _require_working(job, command.attempt, command)
            return [
                AssetCreated(
                    asset_id=command.asset_id,
                    job_id=job.id,
                    asset_type=command.asset_type,
                    url=command.url,
                    storage_path=command.storage_path,
                    size=command.size,
                )
            ]
    job_id: str = command.job_id  # type: ignore[attr-defined]
    job = _require_job(state, job_id)
    events = _decide_job(command, job, now)
    if isinstance(command, JobStart):  # (after the fence: a lost claim is a conflict)
        queue_room(job, state.queue(job.queue))
    return events


def _create(command: JobCreate, state: Lookup) -> list[AnyEvent]:
    if state.version(command.job_id) > 0:
        raise ValidationError("this id is already used", field="job_id")
    if command.run_at is not None and command.run_at.tzinfo is None:
        raise ValidationError("must be an aware datetime", field="run_at")
    key = command.idempotency_key
    user = command.user
    if key is not None and state.job_by_key(user.id, user.tenant, key) is not None:
        return []  # submitted before: the existing job stands
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
            queue=command.queue,
            suspendable=command.suspendable,
            retry=command.retry,
            max_recoveries=command.max_recoveries,
        )
    ]


def _create_mark(command: MarkCreate, state: Lookup) -> list[AnyEvent]:
    if state.version(command.mark_id) > 0:
        raise ValidationError("this id is already used", field="mark_id")
    annotation = msgspec.to_builtins(command.annotation)  # (a Struct, built in Python)
    check_annotation(annotation, command.resource_id)
    _require_attempt_of(state, command.job_id, command.attempt, command)
    return [
        MarkCreated(
            mark_id=command.mark_id,
            resource_id=command.resource_id,
            annotation=annotation,
            job_id=command.job_id,
        )
    ]


def _update_mark_body(command: MarkUpdateBody, state: Lookup) -> list[AnyEvent]:
    mark = state.mark(command.mark_id)
    if mark is None:
        raise NotFound("mark", command.mark_id)
    _require_attempt_of(state, command.job_id, command.attempt, command)
    if "bodyValue" in mark.annotation:  # a body beside it would break a W3C MUST
        raise ValidationError(
            "the mark has a bodyValue, and an annotation MUST NOT have both body and bodyValue",
            field="operations",
        )
    apply_body_operations(mark.annotation.get("body", []), command.operations)  # raises if not
    return [
        MarkBodyUpdated(
            mark_id=mark.id,
            resource_id=mark.resource_id,
            operations=command.operations,
            job_id=command.job_id,
        )
    ]


def _create_resource(command: ResourceCreate, state: Lookup) -> list[AnyEvent]:
    if state.version(command.resource_id) > 0:
        raise ValidationError("this id is already used", field="resource_id")
    _require_attempt_of(state, command.job_id, command.attempt, command)
    return [
        ResourceCreated(
            resource_id=command.resource_id,
            name=command.name,
            media_type=command.media_type,
            digest=command.digest,
            size=command.size,
            job_id=command.job_id,
        )
    ]


def _require_attempt_of(
    state: Lookup, job_id: str | None, attempt: int | None, command: Command
) -> None:
    """For a command a job may send on its own behalf: if it names ``job_id``,
    the job must be running its ``attempt`` (so a worker that lost its lease
    cannot act for the job any more)."""
    if job_id is None:
        return
    job = _require_job(state, job_id)
    if attempt is None:
        raise ValidationError("required with job_id", field="attempt")
    _require_working(job, attempt, command)


def _require_working(job: Job, attempt: int, command: Command) -> None:
    """Work a running attempt does on its job's behalf (progress, a heartbeat,
    a mark, an asset, a resource): refused with ``CancelRequested`` once a
    cancel was asked, so the cancel reaches the work at its next call."""
    _require_running(job, attempt, JobStatus.RUNNING, command)
    if job.cancel_requested:
        raise CancelRequested(job.id)


def _decide_job(command: Command, job: Job, now: datetime) -> list[AnyEvent]:
    match command:
        case JobStart():
            # The version first: a claim that lost the race is a conflict, whatever
            # the winner has done with the job since.
            if command.expected_version != job.version:
                raise ConcurrencyConflict(job.id, command.expected_version, job.version)
            _require_transition(job, JobStatus.RUNNING, command)
            if job.run_at is not None and job.run_at > now:
                raise ValidationError(f"not due before {job.run_at.isoformat()}", field="run_at")
            return [
                JobStarted(
                    job_id=job.id,
                    worker=command.worker,
                    attempt=job.attempt + 1,
                    lease_expires_at=now + timedelta(seconds=command.lease_seconds),
                    holder=command.holder,
                )
            ]
        case JobProgress():
            _require_working(job, command.attempt, command)
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
                    checkpoint=command.checkpoint,
                )
            ]
        case JobHeartbeat():
            _require_working(job, command.attempt, command)
            return [
                JobLeaseRenewed(
                    job_id=job.id,
                    attempt=command.attempt,
                    lease_expires_at=now + timedelta(seconds=command.lease_seconds),
                )
            ]
        case JobComplete():
            _require_running(job, command.attempt, JobStatus.COMPLETED, command)
            return [JobCompleted(job_id=job.id, attempt=command.attempt, result=command.result)]
        case JobPartial():
            _require_running(job, command.attempt, JobStatus.PARTIAL, command)
            return [
                JobPartiallyCompleted(
                    job_id=job.id,
                    attempt=command.attempt,
                    result=command.result,
                    error=command.error,
                )
            ]
        case JobSkip():
            _require_running(job, command.attempt, JobStatus.SKIPPED, command)
            return [JobSkipped(job_id=job.id, attempt=command.attempt, reason=command.reason)]
        case JobFail():
            ending = JobStatus.TIMED_OUT if command.timed_out else JobStatus.FAILED
            _require_running(job, command.attempt, ending, command)
            return [
                _after_failure(
                    job,
                    command,
                    now,
                    command.error,
                    command.error_type,
                    retryable=command.retryable,
                    timed_out=command.timed_out,
                )
            ]
        case JobExpire():
            # A lost worker sends the job back to the queue; a passed deadline times it out.
            asked = JobStatus.TIMED_OUT if command.reason == "timeout" else JobStatus.PENDING
            _require_running(job, command.attempt, asked, command)
            return [_expire(job, command, now)]
        case JobRelease():
            _require_running(job, command.attempt, JobStatus.PENDING, command)
            if job.cancel_requested:  # the worker stops, and so does the job
                _require_transition(job, JobStatus.CANCELLED, command)
                return [JobCancelled(job_id=job.id, attempt=command.attempt, reason=command.reason)]
            if job.suspend_requested:
                _require_transition(job, JobStatus.SUSPENDED, command)
                return [JobSuspended(job_id=job.id, attempt=command.attempt)]
            return [JobReleased(job_id=job.id, attempt=command.attempt, reason=command.reason)]
        case JobCancel():
            return _cancel(job, command)
        case JobSuspend():
            return _suspend(job, command)
        case JobResume():
            # Only a suspended job resumes (running → pending is a retry's or a lost lease's).
            if job.status is not JobStatus.SUSPENDED:
                raise _refuse(job, JobStatus.PENDING, command)
            _require_transition(job, JobStatus.PENDING, command)
            return [JobResumed(job_id=job.id)]
        case JobRetry():
            # Only an ending that a person may want undone: not completed,
            # partial or skipped (the work was done, or chose not to be).
            if job.status not in RETRYABLE:
                raise _refuse(job, JobStatus.PENDING, command)
            _require_transition(job, JobStatus.PENDING, command)
            return [JobRetried(job_id=job.id, reason=command.reason)]
        case JobDelete():
            if job.status is JobStatus.RUNNING:
                raise _refuse(job, "deleted", command)
            return [JobDeleted(job_id=job.id)]
    raise ValidationError(f"unknown command {type(command).__name__}")


def _after_failure(
    job: Job,
    command: Command,
    now: datetime,
    error: str,
    error_type: str | None,
    *,
    retryable: bool,
    timed_out: bool,
) -> AnyEvent:
    """What a failed attempt leads to: cancelled (if asked), a retry, or the end
    (the move the caller checked: failed, or timed out if ``timed_out``)."""
    if job.cancel_requested:
        _require_transition(job, JobStatus.CANCELLED, command)
        return JobCancelled(job_id=job.id, attempt=job.attempt, reason=f"cancelled; {error}")
    retry_at = _retry_at(job, now) if retryable else None
    if retry_at is not None:
        _require_transition(job, JobStatus.PENDING, command)
        return JobRetryScheduled(
            job_id=job.id, attempt=job.attempt, error=error, error_type=error_type, run_at=retry_at
        )
    if timed_out:
        return JobTimedOut(job_id=job.id, attempt=job.attempt, error=error)
    return JobFailed(job_id=job.id, attempt=job.attempt, error=error, error_type=error_type)


def _expire(job: Job, command: JobExpire, now: datetime) -> AnyEvent:
    if command.reason in ("lease", "holder"):
        lease = job.lease
        if lease is None:
            raise ValidationError("the job holds no lease", field="reason")
        if command.reason == "lease" and lease.expires_at > now:
            raise ValidationError("the lease has not expired", field="reason")
        dead = command.holder
        if command.reason == "holder" and (dead is None or dead != lease.holder):
            raise ValidationError("is not the holder of the job's lease", field="holder")
        if job.cancel_requested:
            _require_transition(job, JobStatus.CANCELLED, command)
            return JobCancelled(job_id=job.id, attempt=job.attempt, reason="the worker was lost")
        if job.suspend_requested:
            _require_transition(job, JobStatus.SUSPENDED, command)
            return JobSuspended(job_id=job.id, attempt=job.attempt)
        return _recover(job, command, now)
    deadline = job.deadline
    if deadline is None or deadline > now:
        raise ValidationError("the job has not timed out", field="reason")
    return _after_failure(
        job,
        command,
        now,
        f"timed out after {job.timeout:g} s",
        "Timeout",
        retryable=True,
        timed_out=True,
    )


def _recover(job: Job, command: JobExpire, now: datetime) -> AnyEvent:
    """A running attempt whose worker was lost: the job is pending again at
    once, spending a recovery and no retry; past ``max_recoveries`` it fails
    (a job that keeps killing its workers)."""
    recovery = job.recoveries + 1
    if recovery > job.max_recoveries:
        _require_transition(job, JobStatus.FAILED, command)
        return JobFailed(
            job_id=job.id,
            attempt=job.attempt,
            error=(
                f"the job's worker was lost {recovery} times (max_recoveries is "
                f"{job.max_recoveries}); the job may be what kills its workers"
            ),
            error_type="LeaseExpired",
        )
    return JobLeaseExpired(
        job_id=job.id, attempt=job.attempt, retry_at=now, recovery=recovery, reason=command.reason
    )


def _cancel(job: Job, command: JobCancel) -> list[AnyEvent]:
    _require_transition(job, JobStatus.CANCELLED, command)
    if job.status is not JobStatus.RUNNING:  # nothing runs: cancelled at once
        return [JobCancelled(job_id=job.id, reason=command.reason)]
    if command.attempt is not None:  # the worker confirms it has stopped
        _require_attempt(job, command.attempt)
        return [JobCancelled(job_id=job.id, attempt=command.attempt, reason=command.reason)]
    if job.cancel_requested:
        return []
    return [JobCancelRequested(job_id=job.id, reason=command.reason)]


def _suspend(job: Job, command: JobSuspend) -> list[AnyEvent]:
    if not job.suspendable:
        raise ValidationError(f"jobs of type {job.job_type!r} are not suspendable", field="job_id")
    _require_transition(job, JobStatus.SUSPENDED, command)
    if job.status is not JobStatus.RUNNING:  # nothing runs: suspended at once
        return [JobSuspended(job_id=job.id)]
    if command.attempt is not None:  # the worker confirms it has checkpointed and stopped
        _require_attempt(job, command.attempt)
        if job.cancel_requested:  # a cancel asked meanwhile wins over the suspend
            _require_transition(job, JobStatus.CANCELLED, command)
            return [JobCancelled(job_id=job.id, attempt=command.attempt)]
        return [JobSuspended(job_id=job.id, attempt=command.attempt)]
    if job.suspend_requested:
        return []
    return [JobSuspendRequested(job_id=job.id)]
