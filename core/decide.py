"""The pure heart of jobledger: decide a command, fold an event.

``decide(command, state, now)`` returns the events a command produces, or
raises a typed error; it reads nothing but its arguments. ``evolve_job``,
``evolve_mark``, ``evolve_asset`` and ``evolve_resource`` fold one envelope
into the entity it belongs to. A :class:`Projection` folds a whole log into
jobs, marks, assets and resources; the Stower, the stores' ``rebuild`` and
``replay`` all use these same functions, so the read model and a replay
cannot drift apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import PurePosixPath
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
    JobSkip,
    JobStart,
    JobSuspend,
    MarkCreate,
    MarkDelete,
    MarkUpdateBody,
    ResourceCreate,
)
from .errors import (
    CancelRequested,
    ConcurrencyConflict,
    CorruptionError,
    InvalidTransition,
    NotFound,
    StaleAttempt,
    ValidationError,
)
from .events import (
    AnyEvent,
    AssetCreated,
    Envelope,
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
from .models import DEFAULT_MAX_RECOVERIES, Asset, Job, Lease, Mark, Progress, Resource, RetryPolicy
from .status import JobStatus, can_transition
from .w3c import check_annotation

__all__ = [
    "DEFAULT_RETRY",
    "Lookup",
    "Projection",
    "check_storage_path",
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


def check_storage_path(path: str) -> None:
    """Refuse an asset path that could leave the asset root.

    A storage path is relative, uses ``/``, has no ``..`` or empty parts and
    no NUL byte. Raises ``ValidationError`` naming ``storage_path``.
    """
    problem = None
    if "\x00" in path:
        problem = "contains a NUL byte"
    elif "\\" in path:
        problem = "uses a backslash; use '/'"
    elif path.startswith("/") or PurePosixPath(path).is_absolute() or path[1:3] == ":/":
        problem = "is absolute; it must be relative to the asset root"
    elif any(part in ("", "..", ".") for part in path.split("/")):
        problem = "has an empty, '.' or '..' part"
    if problem:
        raise ValidationError(f"{path!r} {problem}", field="storage_path")


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
    return _decide_job(command, _require_job(state, job_id), now)


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


_replace = msgspec.structs.replace
_MAX_ETA = 100 * 365 * 24 * 3600.0


def _finish(job: Job, env: Envelope, status: JobStatus, **changes: object) -> Job:
    """A job reaching a terminal status: the lease ends, the finish time is set."""
    return _replace(
        job,
        status=status,
        lease=None,
        cancel_requested=False,
        suspend_requested=False,
        stop_requested_event_id=None,
        finished_at=env.time,
        updated_at=env.time,
        version=env.version,
        **changes,
    )


def _pending(job: Job, env: Envelope, run_at: datetime | None, **changes: object) -> Job:
    """A job going back to the queue (a retry, an expired lease, a resume)."""
    return _replace(
        job,
        status=JobStatus.PENDING,
        run_at=run_at,
        lease=None,
        cancel_requested=False,
        suspend_requested=False,
        stop_requested_event_id=None,
        updated_at=env.time,
        version=env.version,
        **changes,
    )


def _eta(job: Job, percent: float, at: datetime) -> datetime | None:
    """When the job should finish at the rate it has gone since it started."""
    if job.started_at is None or percent <= 0 or percent >= 100:
        return None
    elapsed = (at - job.started_at).total_seconds()
    if elapsed <= 0:
        return None
    remaining = elapsed * (100 - percent) / percent
    if remaining > _MAX_ETA:  # a crawl: no meaningful finish time (and no overflow)
        return None
    return at + timedelta(seconds=remaining)


def evolve_job(job: Job | None, env: Envelope) -> Job | None:
    """Fold one job event into the job it belongs to (``None`` before ``job.created``
    and after ``job.deleted``)."""
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
            max_recoveries=(
                DEFAULT_MAX_RECOVERIES if event.max_recoveries is None else event.max_recoveries
            ),
            timeout=event.timeout,
            idempotency_key=event.idempotency_key,
            queue=event.queue,
            suspendable=event.suspendable,
            retry=event.retry,
            created_at=env.time,
            updated_at=env.time,
            version=env.version,
            created_seq=env.seq,
        )
    if job is None:
        return None
    touched = {"updated_at": env.time, "version": env.version}
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
                    granted_at=env.time,
                    holder=event.holder,
                    started_event_id=env.event_id,
                    granted_event_id=env.event_id,
                ),
                started_at=env.time,
                **touched,
            )
        case JobProgressed():
            checkpoint = event.checkpoint
            if checkpoint is None and job.progress is not None:
                checkpoint = job.progress.checkpoint
            progress = Progress(
                percent=event.percent,
                stage=event.stage,
                message=event.message,
                processed=event.processed,
                total=event.total,
                eta=_eta(job, event.percent, env.time),
                checkpoint=checkpoint,
            )
            return _replace(job, progress=progress, **touched)
        case JobLeaseRenewed():
            lease = job.lease and _replace(
                job.lease,
                expires_at=event.lease_expires_at,
                granted_at=env.time,
                granted_event_id=env.event_id,
            )
            return _replace(job, lease=lease, **touched)
        case JobCompleted():
            return _finish(
                job, env, JobStatus.COMPLETED, result=event.result, error=None, error_type=None
            )
        case JobFailed():
            return _finish(
                job,
                env,
                JobStatus.FAILED,
                error=event.error,
                error_type=event.error_type,
                failures=job.failures + 1,
            )
        case JobPartiallyCompleted():
            return _finish(
                job, env, JobStatus.PARTIAL, result=event.result, error=event.error, error_type=None
            )
        case JobSkipped():
            return _finish(job, env, JobStatus.SKIPPED, error=event.reason, error_type="Skipped")
        case JobTimedOut():
            return _finish(
                job,
                env,
                JobStatus.TIMED_OUT,
                error=event.error,
                error_type="Timeout",
                failures=job.failures + 1,
            )
        case JobCancelled():
            return _finish(
                job,
                env,
                JobStatus.CANCELLED,
                error=event.reason or job.cancel_reason,
                error_type="Cancelled",
            )
        case JobRetryScheduled():
            return _pending(
                job,
                env,
                event.run_at,
                error=event.error,
                error_type=event.error_type,
                failures=job.failures + 1,
            )
        case JobLeaseExpired() if event.recovery is not None:
            how = "its process died" if event.reason == "holder" else "its lease expired"
            return _pending(
                job,
                env,
                event.retry_at,
                error=f"the worker of attempt {event.attempt} was lost ({how})",
                error_type="LeaseExpired",
                recoveries=event.recovery,
            )
        case JobReleased():
            return _pending(job, env, None)
        case JobLeaseExpired():  # written before recovery budgets: a failed attempt
            error = f"the worker's lease expired during attempt {event.attempt}"
            if event.retry_at is None:
                return _finish(
                    job,
                    env,
                    JobStatus.FAILED,
                    error=error,
                    error_type="LeaseExpired",
                    failures=job.failures + 1,
                )
            return _pending(
                job,
                env,
                event.retry_at,
                error=error,
                error_type="LeaseExpired",
                failures=job.failures + 1,
            )
        case JobCancelRequested():
            return _replace(
                job,
                cancel_requested=True,
                cancel_reason=event.reason,
                stop_requested_event_id=env.event_id,
                **touched,
            )
        case JobSuspendRequested():
            return _replace(
                job, suspend_requested=True, stop_requested_event_id=env.event_id, **touched
            )
        case JobSuspended():
            return _replace(
                job,
                status=JobStatus.SUSPENDED,
                lease=None,
                suspend_requested=False,
                cancel_requested=False,
                stop_requested_event_id=None,
                **touched,
            )
        case JobResumed():
            return _pending(job, env, None)
        case JobDeleted():
            return None
    return _replace(job, **touched)


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
    if isinstance(event, MarkBodyUpdated) and mark is not None:
        try:
            body = apply_body_operations(mark.annotation.get("body", []), event.operations)
        except ValidationError as exc:  # decided before it was written: the log is damaged
            raise CorruptionError(
                f"{env.type} at seq {env.seq} does not apply to mark {mark.id!r}: {exc}"
            ) from exc
        return msgspec.structs.replace(
            mark, annotation={**mark.annotation, "body": body}, version=env.version
        )
    return mark


def evolve_asset(asset: Asset | None, env: Envelope) -> Asset | None:
    """Fold one asset event into its asset."""
    event = env.data
    if isinstance(event, AssetCreated):
        return Asset(
            id=event.asset_id,
            job_id=event.job_id,
            asset_type=event.asset_type,
            url=event.url,
            storage_path=event.storage_path,
            size=event.size,
            created_by=env.actor,
            created_at=env.time,
            created_seq=env.seq,
        )
    return asset


def evolve_resource(resource: Resource | None, env: Envelope) -> Resource | None:
    """Fold one resource event into its resource."""
    event = env.data
    if isinstance(event, ResourceCreated):
        return Resource(
            id=event.resource_id,
            name=event.name,
            media_type=event.media_type,
            digest=event.digest,
            size=event.size,
            job_id=event.job_id,
            created_by=env.actor,
            created_at=env.time,
            created_seq=env.seq,
        )
    return resource


def key_of(job: Job) -> tuple[str, str | None, str]:
    """The scope of a job's idempotency key: its user, its tenant, the key."""
    assert job.idempotency_key is not None
    return (job.user.id, job.user.tenant, job.idempotency_key)


class Projection:
    """Jobs, marks, assets and resources folded from a sequence of envelopes, in memory.

    Used by replay, rebuild and the in-memory store; it is also a
    :class:`Lookup`. ``apply`` must see the envelopes in ``seq`` order. Not
    thread-safe; never blocks.
    """

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.marks: dict[str, Mark] = {}
        self.assets: dict[str, Asset] = {}
        self.resources: dict[str, Resource] = {}
        self.versions: dict[str, int] = {}
        self.keys: dict[tuple[str, str | None, str], str] = {}
        self.seq = 0

    def job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def mark(self, mark_id: str) -> Mark | None:
        return self.marks.get(mark_id)

    def version(self, stream: str) -> int:
        return self.versions.get(stream, 0)

    def job_by_key(self, user_id: str, tenant: str | None, key: str) -> Job | None:
        job_id = self.keys.get((user_id, tenant, key))
        return None if job_id is None else self.jobs.get(job_id)

    def apply(self, env: Envelope) -> None:
        """Fold one envelope."""
        stream = env.stream
        kind = env.type[: env.type.index(".")]
        if kind == "job":
            before = self.jobs.get(stream)
            job = evolve_job(before, env)
            if job is None:
                self.jobs.pop(stream, None)
                if before is not None and before.idempotency_key is not None:
                    self.keys.pop(key_of(before), None)
            else:
                self.jobs[stream] = job
                if before is None and job.idempotency_key is not None:
                    self.keys[key_of(job)] = job.id
        elif kind == "mark":
            mark = evolve_mark(self.marks.get(stream), env)
            if mark is None:
                self.marks.pop(stream, None)
            else:
                self.marks[stream] = mark
        elif kind == "asset":
            asset = evolve_asset(self.assets.get(stream), env)
            if asset is not None:
                self.assets[stream] = asset
        elif kind == "resource":
            resource = evolve_resource(self.resources.get(stream), env)
            if resource is not None:
                self.resources[stream] = resource
        self.versions[stream] = env.version
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

    def assets_of(self, job_id: str) -> list[Asset]:
        """The assets of one job, oldest first."""
        return sorted(
            (a for a in self.assets.values() if a.job_id == job_id), key=lambda a: a.created_seq
        )
