"""JobWorker and JobContext: what an application writes to run jobs.

A worker is not an actor: it polls for pending jobs of its types, claims one
with ``job:start`` (naming the version it saw, so of two claims only one
wins), runs :meth:`JobWorker.execute`, and reports through commands. The
runner (:mod:`jobledger.workers.runner`) does the polling, the heartbeats,
the timeouts and the reporting; a worker only implements ``execute``.

How ``execute`` ends decides how the job ends:

- it returns a dict, a msgspec Struct or ``None``: **completed** with that result;
- it returns :class:`PartialResult`: **partial**, with a result and an error;
- it raises :class:`SkipJob`: **skipped**, with the reason;
- it raises :class:`NonRetryableError`, or any exception whose ``retryable``
  attribute is ``False`` (an application's own error that knows asking again
  cannot help): **failed** at once, no retry;
- it raises anything else: the attempt **failed**; retried if the job has
  retries left (``job.retry_scheduled``), else **failed**;
- it runs past the job's timeout: cancelled by the runner; retried, else **timed_out**;
- a cancel or suspend was requested (``ctx.stopping``): whatever it does, the
  job ends **cancelled** or **suspended** (with its last progress and
  checkpoint); if it ignores the request for ``stop_grace`` seconds, the
  runner cancels it. A cancel also reaches the work at its next call into
  its context (progress, heartbeat, a mark, an asset, a resource): the call
  raises :class:`~jobledger.core.errors.CancelRequested` and writes nothing,
  whichever process asked for the cancel. The grace only matters for code
  that never calls its context.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import msgspec
import structlog

from jobledger.core import (
    Annotation,
    AssetCreate,
    BodyOperation,
    CancelRequested,
    Clock,
    Command,
    ContentStore,
    IdFactory,
    Job,
    JobHeartbeat,
    JobProgress,
    JobReader,
    Mark,
    MarkCreate,
    MarkDelete,
    MarkUpdateBody,
    Resource,
    ResourceCreate,
    ValidationError,
    content_bytes,
    digest_of,
    evolve_job,
    get_logger,
    to_ms,
    validate_command,
)
from jobledger.core.annotations import annotation_json
from jobledger.core.faults import Faults
from jobledger.eventbus import EventBus, Reply

__all__ = [
    "JobContext",
    "JobWorker",
    "NonRetryableError",
    "PartialResult",
    "SkipJob",
    "result_of",
]

_log = get_logger("workers")


class SkipJob(Exception):
    """Raise from ``execute`` when the job does not apply; it ends ``skipped``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NonRetryableError(Exception):
    """Raise (or subclass) for an error that retrying cannot fix; the job fails at once.

    The runner asks any exception the same question, through its
    ``retryable`` attribute: one whose ``retryable`` is ``False`` (on the
    instance or its class) fails the job at once, so an application's error
    that is sometimes final (say, a model's reply) need not subclass this
    one; it sets ``retryable`` per instance. This class sets it to ``False``.
    """

    retryable: ClassVar[bool] = False


class PartialResult(msgspec.Struct, frozen=True, kw_only=True):
    """Return from ``execute`` when only part of the work was done."""

    result: dict[str, Any] | None = None
    error: str


class JobContext:
    """What ``execute`` may do besides computing: report progress, create marks
    and assets, renew its lease, and learn that it is asked to stop.

    Every method sends a command for the job's current attempt; if the
    attempt is no longer current (the claim was lost), the command is refused
    with ``StaleAttempt`` and the error propagates into ``execute``. Once a
    cancel of the job was requested, every method that writes raises
    ``CancelRequested`` instead (and writes nothing).
    """

    def __init__(
        self,
        job: Job,
        *,
        worker: str,
        bus: EventBus,
        clock: Clock,
        ids: IdFactory,
        lease_seconds: float = 60.0,
        progress_interval: float = 0.0,
        on_stop: Callable[[], None] | None = None,
        content: ContentStore | None = None,
        reader: JobReader | None = None,
        faults: Faults | None = None,
    ) -> None:
        self._job = job
        self._faults = faults
        self._content = content
        self._reader = reader
        self._on_stop = on_stop
        self._worker = worker
        self._bus = bus
        self._clock = clock
        self._ids = ids
        self._lease_seconds = lease_seconds
        self._progress_interval = progress_interval
        self._last_progress_at: float | None = None
        self._last_stage: str | None = None
        self._held: JobProgress | None = None
        self._stopping = asyncio.Event()
        self._cancel_requested = job.cancel_requested
        self._suspend_requested = job.suspend_requested
        self._cause = job.lease.started_event_id if job.lease else None
        self._stop_cause = job.stop_requested_event_id
        if self._cancel_requested or self._suspend_requested:
            self._stopping.set()
        self._log: structlog.stdlib.BoundLogger | None = None

    @property
    def log(self) -> structlog.stdlib.BoundLogger:
        """A structlog logger bound to this job and worker."""
        if self._log is None:
            self._log = _log.bind(job_id=self._job.id, worker=self._worker)
        return self._log

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

    @property
    def checkpoint(self) -> dict[str, Any] | None:
        """The last checkpoint saved with ``progress`` (a resumed job starts from it)."""
        return self._job.progress.checkpoint if self._job.progress else None

    @property
    def cause(self) -> str | None:
        """The id of the ``job.started`` event that began this attempt: the
        ``causation_id`` of every command the attempt sends."""
        return self._cause

    @property
    def stop_cause(self) -> str | None:
        """The id of the ``job.cancel_requested`` or ``job.suspend_requested``
        event that asked this attempt to stop, once known."""
        return self._stop_cause

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    @property
    def suspend_requested(self) -> bool:
        return self._suspend_requested

    @property
    def stopping(self) -> bool:
        """True once a cancel or a suspend was requested: wrap up and return."""
        return self._stopping.is_set()

    async def wait_stopping(self) -> None:
        """Wait until a cancel or a suspend is requested."""
        await self._stopping.wait()

    def request_stop(
        self, *, cancel: bool = False, suspend: bool = False, cause: str | None = None
    ) -> None:
        """Record that a cancel or suspend was requested (the runner calls
        this), by the event ``cause`` when known."""
        self._cancel_requested |= cancel
        self._suspend_requested |= suspend
        if cause is not None and (cancel or suspend):
            self._stop_cause = cause
        if (self._cancel_requested or self._suspend_requested) and not self._stopping.is_set():
            self._stopping.set()
            if self._on_stop is not None:
                self._on_stop()

    def _check_cancel(self) -> None:
        if self._cancel_requested:
            raise CancelRequested(self._job.id)

    async def _send(self, command: Command) -> Reply:
        """Send ``command`` for the job; a cancel, known here or decided by the
        Stower, raises ``CancelRequested`` and rings the runner's alarm."""
        self._check_cancel()
        try:
            return await self._bus.send(command)
        except CancelRequested:
            self.request_stop(cancel=True)
            raise

    def _absorb(self, envelopes: Reply) -> None:
        for env in envelopes:
            self._job = evolve_job(self._job, env) or self._job

    async def progress(
        self,
        percent: float | None = None,
        *,
        stage: str | None = None,
        message: str | None = None,
        processed: int | None = None,
        total: int | None = None,
        checkpoint: Mapping[str, Any] | None = None,
    ) -> None:
        """Report progress (``percent`` 0-100, or ``processed`` of ``total``),
        optionally with a ``checkpoint`` to resume from after a suspend.

        Reports closer together than the worker's ``progress_interval`` are
        held back (the latest one is sent at the next report after the
        interval, or when the job ends), unless the stage changes or a
        checkpoint comes with them.
        """
        self._check_cancel()
        command = JobProgress(
            job_id=self._job.id,
            attempt=self._job.attempt,
            percent=percent,
            stage=stage,
            message=message,
            processed=processed,
            total=total,
            checkpoint=dict(checkpoint) if checkpoint is not None else None,
            actor=self.actor,
            correlation_id=self._job.id,
            causation_id=self._cause,
        )
        now = self._clock.monotonic()
        recent = (
            self._last_progress_at is not None
            and now - self._last_progress_at < self._progress_interval
        )
        if recent and stage == self._last_stage and checkpoint is None:
            self._held = command
            return
        await self._send_progress(command, now)

    async def _send_progress(self, command: JobProgress, now: float) -> None:
        self._held = None
        self._last_progress_at = now
        self._last_stage = command.stage
        self._absorb(await self._send(command))
        if self._faults is not None:
            self._faults.reach("runner.mid_progress")

    async def flush(self) -> None:
        """Send a progress report held back by throttling, if any."""
        if self._held is not None:
            await self._send_progress(self._held, self._clock.monotonic())

    async def heartbeat(self) -> None:
        """Renew the lease now (the runner also does this on its own)."""
        self._absorb(
            await self._send(
                JobHeartbeat(
                    job_id=self._job.id,
                    attempt=self._job.attempt,
                    lease_seconds=self._lease_seconds,
                    actor=self.actor,
                    correlation_id=self._job.id,
                    causation_id=self._cause,
                )
            )
        )

    async def create_mark(
        self,
        resource_id: str,
        annotation: Annotation | Mapping[str, Any],
        *,
        mark_id: str | None = None,
    ) -> str:
        """Create a mark on ``resource_id`` for this job; returns the mark's id
        once it is in the log. ``annotation`` is a W3C :class:`Annotation` or
        any W3C annotation document (a mapping), stored as given; one that
        breaks a MUST of the W3C model, or targets another jobledger resource
        than ``resource_id``, is a ``ValidationError`` naming the MUST."""
        mark_id = mark_id or self._ids.make("mark", to_ms(self._clock.now()))
        await self._send(
            MarkCreate(
                mark_id=mark_id,
                resource_id=resource_id,
                annotation=annotation_json(annotation),
                job_id=self._job.id,
                attempt=self._job.attempt,
                actor=self.actor,
                correlation_id=self._job.id,
                causation_id=self._cause,
            )
        )
        return mark_id

    async def update_mark_body(self, mark_id: str, operations: Sequence[BodyOperation]) -> None:
        """Change the body of mark ``mark_id`` by ``operations`` (all or none),
        for this job's attempt. An operation that does not apply (adding what is
        there, removing what is not) is a ``ValidationError``; a missing mark
        is ``NotFound``."""
        await self._send(
            MarkUpdateBody(
                mark_id=mark_id,
                operations=list(operations),
                job_id=self._job.id,
                attempt=self._job.attempt,
                actor=self.actor,
                correlation_id=self._job.id,
                causation_id=self._cause,
            )
        )

    async def marks(self, resource_id: str) -> list[Mark]:
        """The live marks of ``resource_id``, oldest first (each says which job
        made it: ``job_id``)."""
        return await self._read().marks_of(resource_id)

    async def delete_mark(self, mark_id: str) -> None:
        """Delete mark ``mark_id`` for this job's attempt; ``NotFound`` if there
        is none."""
        await self._send(
            MarkDelete(
                mark_id=mark_id,
                job_id=self._job.id,
                attempt=self._job.attempt,
                actor=self.actor,
                correlation_id=self._job.id,
                causation_id=self._cause,
            )
        )

    def _read(self) -> JobReader:
        if self._reader is None:
            raise ValidationError("this context was given no reader (a runner gives one)")
        return self._reader

    async def resource(self, resource_id: str) -> Resource | None:
        """The resource ``resource_id`` as committed, or ``None`` (so a retried
        attempt can find what an earlier one of its job stored)."""
        return await self._read().get_resource(resource_id)

    async def create_resource(
        self,
        name: str,
        content: bytes | str,
        *,
        media_type: str = "text/markdown",
        resource_id: str | None = None,
    ) -> str:
        """Store ``content`` (text is UTF-8 encoded) as a new resource made by
        this job, and return its id once ``resource.created`` is in the log.
        The content is stored durably first, so a resource in the log always
        has its content."""
        if self._content is None:
            raise ValidationError("this runner was given no content store (a Ledger gives one)")
        self._check_cancel()
        try:
            return await store_resource(
                self._content,
                self._bus,
                content,
                resource_id=resource_id or self._ids.make("res", to_ms(self._clock.now())),
                name=name,
                media_type=media_type,
                actor=self.actor,
                job_id=self._job.id,
                attempt=self._job.attempt,
                causation_id=self._cause,
            )
        except CancelRequested:
            self.request_stop(cancel=True)
            raise

    async def create_asset(
        self,
        asset_type: str,
        storage_path: str,
        size: int,
        *,
        url: str | None = None,
        asset_id: str | None = None,
    ) -> str:
        """Record a file this job made (``storage_path`` relative to the asset
        root); returns the asset's id. A path that could leave the root is a
        ``ValidationError``."""
        asset_id = asset_id or self._ids.make("asset", to_ms(self._clock.now()))
        await self._send(
            AssetCreate(
                asset_id=asset_id,
                job_id=self._job.id,
                attempt=self._job.attempt,
                asset_type=asset_type,
                url=url,
                storage_path=storage_path,
                size=size,
                actor=self.actor,
                correlation_id=self._job.id,
                causation_id=self._cause,
            )
        )
        return asset_id


async def store_resource(
    store: ContentStore,
    bus: EventBus,
    content: bytes | str,
    *,
    resource_id: str,
    name: str,
    media_type: str,
    actor: str,
    job_id: str | None = None,
    attempt: int | None = None,
    causation_id: str | None = None,
) -> str:
    """Store ``content`` (text as UTF-8) in ``store`` and send its
    ``resource:create``; return the resource id once it is in the log.

    The command is checked first, so a malformed one stores nothing; the
    content is stored durably before the command is sent, so a resource in
    the log always has its content. (What ``JobContext.create_resource`` and
    ``Ledger.create_resource`` both do.)"""
    data = content_bytes(content)
    command = ResourceCreate(
        resource_id=resource_id,
        name=name,
        media_type=media_type,
        digest=digest_of(data),
        size=len(data),
        job_id=job_id,
        attempt=attempt,
        actor=actor,
        correlation_id=job_id,
        causation_id=causation_id,
    )
    validate_command(command)
    await store.put(data)
    await bus.send(command)
    return resource_id


class _BadSetting(ValidationError, ValueError):
    """A worker's setting out of range: a ``ValidationError`` naming it (and a
    ``ValueError``, as it was before it joined the error tree)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message, field=field)


class JobWorker(ABC):
    """Base class of workers. Subclass it, set ``job_types``, implement ``execute``.

    ``name`` (default: the class name) identifies the worker in leases and in
    the log's ``actor`` field; ``concurrency`` is how many jobs one runner of
    this worker runs at once; ``lease_seconds`` is how long a claim holds
    without a heartbeat (the runner renews it every third of that);
    ``stop_grace`` is how long ``execute`` may take to stop once asked;
    ``progress_interval`` throttles progress reports. A setting out of range
    (``concurrency`` not an int from 1 to 10 000, no ``job_types``, seconds
    that are not a finite number up to a day) is a ``ValidationError`` naming
    it, at construction.
    """

    job_types: ClassVar[tuple[str, ...]] = ()
    concurrency: int = 1
    lease_seconds: float = 60.0
    stop_grace: float = 10.0
    progress_interval: float = 0.1
    name: str = ""

    def __init__(self, *, name: str | None = None, concurrency: int | None = None) -> None:
        if name is not None:
            self.name = name
        if not self.name:
            self.name = type(self).__name__
        if concurrency is not None:
            self.concurrency = concurrency
        kind = type(self).__name__
        slots = self.concurrency
        if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= 10_000:
            raise _BadSetting(f"{kind}: concurrency must be an int from 1 to 10000", "concurrency")
        if not self.job_types or not all(isinstance(t, str) and t for t in self.job_types):
            raise _BadSetting(f"{kind} declares no job_types", "job_types")
        for field, value, least in (
            ("lease_seconds", self.lease_seconds, 0.001),
            ("stop_grace", self.stop_grace, 0.0),
            ("progress_interval", self.progress_interval, 0.0),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not least <= value <= 86_400  # (NaN fails too)
            ):
                raise _BadSetting(f"{kind}: {field} must be seconds from {least:g} to 86400", field)

    @abstractmethod
    async def execute(self, job: Job, ctx: JobContext) -> Any:
        """Do the job. See the module docstring for how its ending ends the job."""


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
