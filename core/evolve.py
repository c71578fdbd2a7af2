"""Folding events: ``evolve_job``, ``evolve_mark``, ``evolve_asset`` and
``evolve_resource`` fold one envelope into the entity it belongs to, and a
:class:`Projection` folds a whole log into jobs, marks, assets and resources
(a :class:`~jobledger.core.decide.Lookup` for ``decide``). The Stower, the
stores' ``rebuild`` and ``replay`` all use these same functions, so the read
model and a replay cannot drift apart. Pure: no I/O, no clock reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import msgspec

from .annotations import apply_body_operations
from .errors import (
    CorruptionError,
    ValidationError,
)
from .events import (
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
from .models import DEFAULT_MAX_RECOVERIES, Asset, Job, Lease, Mark, Progress, Queue, Resource
from .queues import count_running, evolve_queue, track_running
from .status import JobStatus

__all__ = [
    "Projection",
    "evolve_asset",
    "evolve_job",
    "evolve_mark",
    "evolve_resource",
    "key_of",
]

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
        case JobRetried():
            return _pending(
                job,
                env,
                None,
                failures=0,
                recoveries=0,
                error=None,
                error_type=None,
                result=None,
                progress=None,
                cancel_reason=None,
                finished_at=None,
            )
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
    """Jobs, marks, assets, resources and queues folded from a sequence of envelopes, in memory.

    Used by replay, rebuild and the in-memory store; it is also a
    :class:`~jobledger.core.decide.Lookup`. ``apply`` must see the envelopes
    in ``seq`` order. Not thread-safe; never blocks.
    """

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.marks: dict[str, Mark] = {}
        self.assets: dict[str, Asset] = {}
        self.resources: dict[str, Resource] = {}
        self.queues: dict[str, Queue] = {}
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

    def queue(self, name: str) -> Queue | None:
        return self.queues.get(name)

    def apply(self, env: Envelope) -> None:
        """Fold one envelope."""
        stream = env.stream
        kind = env.type[: env.type.index(".")]
        if kind == "job":
            before = self.jobs.get(stream)
            job = evolve_job(before, env)
            if self.queues:
                track_running(self.queues, before, job)
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
        elif kind == "queue":
            name = env.data.queue  # type: ignore[union-attr]
            known = self.queues.get(name)
            running = 0 if known is not None else count_running(name, self.jobs.values())
            self.queues[name] = evolve_queue(known, env, running)
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
