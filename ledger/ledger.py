"""The Ledger: jobledger's face. It wires the log, the bus, the Stower and the
workers, and offers the API an application uses.

Reads (``get``, ``list``, ``history``, ``marks``) come from the committed read
model. Writes go as commands through the bus to the Stower and return once
committed and published, so a job ``submit`` returns is one ``get`` already
returns.

Ownership: every read and control method takes ``user``. With a user, jobs
of other users are reported ``NotFound``, exactly like missing ones. With
``user=None`` the caller is the embedding application itself, trusted to
see everything (an admin tool, an auditor).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeAlias

import msgspec
import reactivex
from reactivex import Observable
from reactivex.abc import ObserverBase, SchedulerBase
from reactivex.disposable import Disposable

from jobledger.core import (
    MAX_ID_LENGTH,
    SYSTEM_USER,
    Annotation,
    Asset,
    BodyOperation,
    Clock,
    Command,
    ContentStore,
    Envelope,
    IdFactory,
    Job,
    JobCancel,
    JobCreate,
    JobCreated,
    JobDelete,
    JobledgerError,
    JobResume,
    JobStatus,
    JobSuspend,
    JobType,
    LedgerClosed,
    Mark,
    MarkCreate,
    MarkDelete,
    MarkUpdateBody,
    NotFound,
    Projection,
    Registry,
    Resource,
    RetryPolicy,
    SystemClock,
    User,
    ValidationError,
    WaitTimeout,
    check_json,
    evolve_job,
    get_logger,
    to_jsonld,
    to_ms,
    validate_command,
)
from jobledger.core.annotations import annotation_json
from jobledger.core.faults import Faults
from jobledger.core.w3c import check_base_iri
from jobledger.eventbus import BusStatistics, EventBus, Reply
from jobledger.store import (
    BackendURL,
    ContentFolder,
    EventLog,
    Head,
    MemoryContent,
    MemoryLog,
    VerifyReport,
    backend_for,
    content_folder_for,
    export_log,
    import_log,
    replay,
    verify,
)
from jobledger.stower import Stower, StowerStatistics, Sweeper, SweeperStatistics
from jobledger.workers import (
    JobWorker,
    QueueCapacity,
    WorkerRunner,
    WorkerStatistics,
    store_resource,
)

__all__ = ["JobPage", "Ledger", "LedgerStatistics", "open"]

log = get_logger("ledger")

UserArg: TypeAlias = User | str | None


class JobPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of ``Ledger.list``: iterate it for its jobs; pass ``cursor`` for the next.

    ``cursor`` is ``None`` on the last page.
    """

    jobs: tuple[Job, ...]
    cursor: int | None

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)


class _Waiter:
    """One ``wait()`` call: follows its job by the envelopes published after it
    registered, and wakes the call only when the job is done or must be read
    afresh (an envelope it cannot apply). Envelopes offered while a read is
    under way are kept and applied after it: the read may have been made
    before they were committed."""

    __slots__ = ("done", "job", "kept", "reading", "wake")

    def __init__(self, done: Callable[[Job], bool]) -> None:
        self.done = done
        self.job: Job | None = None
        self.reading = True  # until the first read is in
        self.kept: builtins.list[Envelope] = []
        self.wake = asyncio.Event()

    def offer(self, env: Envelope) -> None:
        if self.reading:
            self.kept.append(env)
        else:
            self._apply(env)

    def read(self, job: Job) -> None:
        """A read of the job came back: take it unless events already moved
        the job past it, then apply what was kept meanwhile."""
        if self.job is None or job.version >= self.job.version:
            self.job = job
        self.reading = False
        kept, self.kept = self.kept, []
        for env in kept:
            self._apply(env)

    def _apply(self, env: Envelope) -> None:
        job = self.job
        if job is None or env.version <= job.version:
            return  # deleted, or already seen
        if env.version != job.version + 1:
            self.reading = True  # a gap: keep what comes until it is read afresh
            self.kept.append(env)
            self.wake.set()
            return
        self.job = evolve_job(job, env)
        if self.job is None or self.done(self.job):
            self.wake.set()


class LedgerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Counters of every running part of a ledger."""

    path: str
    bus: BusStatistics
    stower: StowerStatistics
    sweeper: SweeperStatistics
    workers: tuple[WorkerStatistics, ...]


RESERVED_USER_IDS = ("system", "system:", "worker:")
"""User ids the engine keeps for itself: ``system`` and ``system:…`` (the
application and the engine's own actors) and ``worker:…``."""

_STATUS_NAMES = tuple(s.value for s in JobStatus)
_MAX_SEQ = 2**63 - 1  # the largest seq (and cursor) a log can hold


def _as_user(user: UserArg) -> User | None:
    """The caller: ``None`` (the application itself), or a user whose id is
    1-128 characters and not one the engine keeps for itself."""
    if user is None:
        return None
    if isinstance(user, str):
        user = User(id=user)
    if not isinstance(user, User) or not isinstance(user.id, str) or not user.id:
        raise ValidationError("must be a jobledger.User or a non-empty user id", field="user")
    if len(user.id) > MAX_ID_LENGTH:
        raise ValidationError(f"a user id is at most {MAX_ID_LENGTH} characters", field="user")
    _unicode(user.id, "user")
    if user.id == "system" or user.id.startswith(RESERVED_USER_IDS[1:]):
        raise ValidationError(
            f"{user.id!r} is kept for the engine (system, system:*, worker:*)", field="user"
        )
    if user.tenant is not None and (not isinstance(user.tenant, str) or not user.tenant):
        raise ValidationError("a tenant is a non-empty string", field="user.tenant")
    if user.tenant is not None:
        _unicode(user.tenant, "user.tenant")
    return user


def _actor(actor: object) -> str:
    """An application's ``actor`` argument: ``system`` (the application
    itself, the default) or any user id; never one of the engine's own
    actors (``system:*``, ``worker:*``), which the log keeps for the engine."""
    if actor == SYSTEM_USER.id:
        return SYSTEM_USER.id
    if not isinstance(actor, str):
        raise ValidationError("must be a user id or 'system'", field="actor")
    try:
        _as_user(actor)
    except ValidationError as exc:
        raise ValidationError(str(exc).removeprefix("user: "), field="actor") from exc
    return actor


def _id(value: object, field: str) -> str:
    """An id argument: a string of 1-128 characters (Unicode text)."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LENGTH:
        raise ValidationError(f"must be a string of 1-{MAX_ID_LENGTH} characters", field=field)
    return _unicode(value, field)


def _optional_text(value: object, field: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValidationError("must be a string", field=field)
    return value if value is None else _unicode(value, field)


def _unicode(value: str, field: str) -> str:
    """Refuse lone surrogates: they are not text, and no file can store them."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValidationError("is not valid Unicode text (a lone surrogate)", field=field) from None
    return value


def _seq(value: object, field: str) -> int:
    """A position in the log: an int from 0 to 2**63 - 1."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_SEQ:
        raise ValidationError("must be an int from 0 to 2**63 - 1", field=field)
    return value


def _count(value: object, field: str, most: int = 10_000) -> int:
    """A page size or batch: an int from 1 to ``most``."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
        raise ValidationError(f"must be an int from 1 to {most}", field=field)
    return value


def _owns(job: Job, user: User | None) -> bool:
    return _owns_user(job.user, user)


def _owns_user(owner: User, user: User | None) -> bool:
    """True if ``user`` may see what ``owner`` owns (``None``: the application itself)."""
    if user is None:
        return True
    if owner.id != user.id:
        return False
    return user.tenant is None or owner.tenant == user.tenant


def _seconds(value: float | timedelta | None, field: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        raise ValidationError("must be seconds or a timedelta", field=field)
    try:
        return float(seconds)
    except OverflowError:  # an int past any float
        raise ValidationError("must be at most 30 days", field=field) from None


def _event_types(types: object) -> list[str] | None:
    """``events(types=…)``: None, or an iterable of event type names."""
    if types is None:
        return None
    if isinstance(types, str) or not isinstance(types, Iterable):
        raise ValidationError("must be an iterable of event types", field="types")
    names = list(types)
    if not all(isinstance(t, str) for t in names):
        raise ValidationError("must be an iterable of event types", field="types")
    return names


def _statuses(until: object) -> frozenset[JobStatus] | None:
    """``wait(until=…)``: None, one status, or an iterable of statuses."""
    if until is None:
        return None
    items = [until] if isinstance(until, str) else until
    try:
        return frozenset(JobStatus(s) for s in items)  # type: ignore[attr-defined]
    except (TypeError, ValueError, RecursionError):  # (Enum's message reprs the value)
        statuses = ", ".join(s.value for s in JobStatus)
        raise ValidationError(f"must be statuses ({statuses})", field="until") from None


class Ledger:
    """A running jobledger on one event log. Made by :func:`open`.

    ``content`` is where resources' content lives: by default the folder
    beside the log's file (``PATH.content``), or memory for a ``MemoryLog``.
    ``faults`` (reliability tests only) goes to the Stower and the workers;
    the log's own crash point is given to the log by whoever builds it."""

    def __init__(
        self,
        log: EventLog,
        *,
        workers: Sequence[JobWorker] = (),
        clock: Clock | None = None,
        poll_interval: float = 1.0,
        stop_timeout: float = 10.0,
        mailbox_size: int = 10_000,
        max_batch: int = 1_000,
        job_types: Sequence[JobType] = (),
        queues: Mapping[str, int] | None = None,
        sweep_interval: float = 1.0,
        content: ContentStore | None = None,
        faults: Faults | None = None,
    ) -> None:
        self._log = log
        # Resources' content: given, else beside the file (in memory with a memory log).
        self._content: ContentStore = content or (
            MemoryContent()
            if isinstance(log, MemoryLog)
            else ContentFolder(content_folder_for(log.path))
        )
        self._clock = clock or SystemClock()
        self._ids = IdFactory()
        self._registry = Registry(job_types)
        self._capacity = QueueCapacity(queues)
        self._bus = EventBus(max_in_flight=mailbox_size)
        self._sweeper = Sweeper(self._bus, log, clock=self._clock, interval=sweep_interval)
        self._stower = Stower(
            log,
            self._bus,
            clock=self._clock,
            ids=self._ids,
            mailbox_size=mailbox_size,
            max_batch=max_batch,
            on_crash=self._on_stower_crash,
            on_commit=self._sweeper.committed,
            faults=faults,
        )
        self._runners = [
            WorkerRunner(
                w,
                self._bus,
                log,
                clock=self._clock,
                ids=self._ids,
                poll_interval=poll_interval,
                capacity=self._capacity,
                registry=self._registry,
                content=self._content,
                faults=faults,
            )
            for w in workers
        ]
        self._poll_interval = poll_interval
        self._stop_timeout = stop_timeout
        self._waiters: dict[str, set[_Waiter]] = {}
        self._followers: set[asyncio.Event] = set()
        self._seen_seq = 0  # every seq up to this one was published here or found by the tail
        self._tail: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        self._pid = os.getpid()

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        """Open the log, start the Stower, recover jobs whose worker was lost
        (expired leases and timeouts, in bounded batches), then start the
        sweeper and the workers."""
        if self._started:
            raise RuntimeError("the ledger is already started")
        self._started = True
        self._pid = os.getpid()
        await self._log.open()
        try:
            await self._stower.start()
            self._seen_seq = (await self._log.head()).seq
            self._bus.subscribe(self._notify_waiters)
            self._tail = asyncio.get_running_loop().create_task(
                self._tail_the_log(), name="jobledger-tail"
            )
            recovered = await self._sweeper.sweep()
            if recovered:
                log.info("recovered jobs of lost workers", count=recovered)
            await self._sweeper.start()
            for runner in self._runners:
                await runner.start()
        except BaseException:
            await self.aclose()
            raise
        log.info("ledger open", path=self._log.path, workers=[r.name for r in self._runners])

    async def aclose(self) -> None:
        """Stop the workers (running jobs get ``stop_timeout`` seconds to finish),
        then the Stower (commands already sent are committed), then close the log.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._pid != os.getpid():
            return  # a forked child: the parent's tasks and file are not ours to stop
        try:
            if self._tail is not None:
                self._tail.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._tail
            # Together: a close takes one stop_timeout, not one per worker.
            await asyncio.gather(*(runner.stop(self._stop_timeout) for runner in self._runners))
            await self._sweeper.stop()
            await self._stower.stop()
            await self._bus.aclose()
        finally:
            # Even when cancelled (the whole loop torn down), the file is closed.
            await self._log.close()
        # Wake everyone waiting on this ledger so they can see it closed.
        for event in (*self._followers, *(w.wake for ws in self._waiters.values() for w in ws)):
            event.set()
        log.info("ledger closed", path=self._log.path)

    def _on_stower_crash(self, exc: BaseException) -> None:
        log.critical("the Stower crashed; the ledger refuses commands from now on", error=repr(exc))

    @property
    def path(self) -> str:
        """Where the log lives."""
        return self._log.path

    @property
    def bus(self) -> EventBus:
        """The ledger's EventBus (to send commands or subscribe directly)."""
        return self._bus

    @property
    def clock(self) -> Clock:
        return self._clock

    def _check_open(self) -> None:
        if self._closed or not self._started:
            raise LedgerClosed("the ledger is not open")
        if self._pid != os.getpid():
            # A child made by fork: the parent's tasks and connections do not
            # run here (a call would wait forever). The child opens its own.
            raise LedgerClosed(
                f"this ledger was opened in process {self._pid}, not in this one "
                f"({os.getpid()}, a fork): open the log again here"
            )

    # -- writing ---------------------------------------------------------

    async def send(self, command: Command) -> Reply:
        """Send a raw command to the Stower; returns its committed events."""
        self._check_open()
        return await self._bus.send(command)

    def register(self, job_type: JobType) -> None:
        """Add a job type to the registry (its params are then checked at submit)."""
        if not isinstance(job_type, JobType):
            raise ValidationError("must be a jobledger.JobType", field="job_type")
        for name in ("params", "result"):
            kind = getattr(job_type, name)
            if kind is not None and not (
                isinstance(kind, type) and issubclass(kind, msgspec.Struct)
            ):
                raise ValidationError("must be a msgspec Struct type or None", field=name)
        if not isinstance(job_type.description, str):
            raise ValidationError("must be a string", field="description")
        if job_type.retry is not None and not isinstance(job_type.retry, RetryPolicy):
            raise ValidationError("must be a jobledger.RetryPolicy", field="retry")
        # Its rules are checked as a submission of the type would be.
        validate_command(
            JobCreate(
                job_id="job_type",
                job_type=job_type.name,
                user=SYSTEM_USER,
                max_retries=job_type.max_retries,
                max_recoveries=job_type.max_recoveries,
                timeout=_seconds(job_type.timeout, "timeout"),
                queue=job_type.queue,
                suspendable=job_type.suspendable,
                retry=job_type.retry,
            )
        )
        self._registry.register(job_type)

    def job_types(self) -> builtins.list[JobType]:
        """The registered job types, by name."""
        return self._registry.all()

    async def submit(
        self,
        job_type: str,
        params: Mapping[str, Any] | msgspec.Struct | None = None,
        *,
        user: UserArg = None,
        idempotency_key: str | None = None,
        priority: int = 0,
        run_at: datetime | None = None,
        max_retries: int | None = None,
        timeout: float | timedelta | None = None,
        retry: RetryPolicy | None = None,
        correlation_id: str | None = None,
        max_recoveries: int | None = None,
    ) -> Job:
        """Submit a job and return it, pending, once it is committed.

        ``user`` owns the job (default: the system user). If ``job_type`` is
        registered, ``params`` must fit its params type, and its timeout,
        retries, retry policy, queue and suspendability apply unless
        overridden here. A higher ``priority`` runs first; equal priorities run
        in submission order. ``run_at`` (an aware datetime) delays it;
        ``max_retries`` counts retries after the first attempt;
        ``max_recoveries`` (default: the type's, else 3) counts the times
        the job is recovered from a lost worker (a process that died, a
        lease that expired) before it fails as a job that kills its
        workers; a lost worker spends no retry. ``timeout``
        is seconds (or a timedelta) per attempt. With an ``idempotency_key``
        already used by this user for a live job, that job is returned and
        nothing is written. Raises ``ValidationError`` for bad arguments
        (nothing is written).
        """
        self._check_open()
        owner = _as_user(user) or SYSTEM_USER
        if not isinstance(job_type, str):
            raise ValidationError("must be a string", field="job_type")
        if run_at is not None and (not isinstance(run_at, datetime) or run_at.tzinfo is None):
            raise ValidationError("must be an aware datetime", field="run_at")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ValidationError("must be a jobledger.RetryPolicy", field="retry")
        if isinstance(params, msgspec.Struct | Mapping):
            # JSON values only, checked before a Struct is converted (which
            # would turn sets into lists and bytes into base64, silently).
            check_json(params if isinstance(params, msgspec.Struct) else dict(params), "params")
        rules = self._registry.resolve(
            job_type,
            params,
            timeout=_seconds(timeout, "timeout"),
            max_retries=max_retries,
            max_recoveries=max_recoveries,
            retry=retry,
        )
        job_id = self._ids.make("job", to_ms(self._clock.now()))
        envelopes = await self._bus.send(
            JobCreate(
                job_id=job_id,
                job_type=job_type,
                params=rules.params,
                user=owner,
                priority=priority,
                run_at=run_at,
                max_retries=rules.max_retries,
                max_recoveries=rules.max_recoveries,
                timeout=rules.timeout,
                idempotency_key=idempotency_key,
                queue=rules.queue,
                suspendable=rules.suspendable,
                retry=rules.retry,
                actor=owner.id,
                correlation_id=correlation_id or job_id,
            )
        )
        if not envelopes and idempotency_key is not None:
            existing = await self._log.job_by_key(owner.id, owner.tenant, idempotency_key)
            if existing is not None:
                return existing
        job: Job | None = None
        for env in envelopes:
            job = evolve_job(job, env)
        assert job is not None
        return job

    async def _control(self, command: Command, user: UserArg) -> Job:
        """Send a control command for a job the caller owns; the job after it
        (``NotFound`` if a delete got there in between)."""
        job_id: str = command.job_id  # type: ignore[attr-defined]
        await self.get(job_id, user=user)
        await self._bus.send(command)
        job = await self._log.get_job(job_id)
        if job is None:
            raise NotFound("job", job_id)
        return job

    def _actor(self, user: UserArg) -> str:
        owner = _as_user(user)
        return owner.id if owner is not None else SYSTEM_USER.id

    async def cancel(self, job_id: str, *, user: UserArg = None, reason: str | None = None) -> Job:
        """Cancel a job. Pending or suspended: it is ``cancelled`` at once. Running:
        its worker is asked to stop (``cancel_requested``) and the job ends
        ``cancelled`` when it has (``wait`` for it). ``InvalidTransition`` if it
        has already ended; ``NotFound`` as for ``get``."""
        return await self._control(
            JobCancel(job_id=job_id, reason=reason, actor=self._actor(user), correlation_id=job_id),
            user,
        )

    async def suspend(self, job_id: str, *, user: UserArg = None) -> Job:
        """Suspend a job of a suspendable type. Pending: at once. Running: its worker
        is asked to checkpoint and stop; the job ends ``suspended`` with its last
        progress. ``ValidationError`` if the type is not suspendable."""
        return await self._control(
            JobSuspend(job_id=job_id, actor=self._actor(user), correlation_id=job_id), user
        )

    async def resume(self, job_id: str, *, user: UserArg = None) -> Job:
        """Put a suspended job back to pending, with its last progress and checkpoint."""
        return await self._control(
            JobResume(job_id=job_id, actor=self._actor(user), correlation_id=job_id), user
        )

    async def delete(self, job_id: str, *, user: UserArg = None) -> None:
        """Delete a job that is not running: it leaves the read model (``get``
        says ``NotFound``); its history stays in the log for audit."""
        await self.get(job_id, user=user)
        await self._bus.send(
            JobDelete(job_id=job_id, actor=self._actor(user), correlation_id=job_id)
        )

    async def cleanup(self, older_than: timedelta | datetime, *, batch: int = 500) -> int:
        """Delete every finished job that finished before ``older_than`` (a cutoff
        time, or an age); returns how many were deleted."""
        self._check_open()
        if isinstance(older_than, datetime) and older_than.tzinfo is not None:
            cutoff = older_than
        elif isinstance(older_than, timedelta) and older_than >= timedelta(0):
            try:
                cutoff = self._clock.now() - older_than
            except OverflowError:
                raise ValidationError(
                    "an age that reaches before year 1 finds nothing to delete", field="older_than"
                ) from None
        else:
            raise ValidationError("must be an aware datetime or an age >= 0", field="older_than")
        batch = _count(batch, "batch")
        deleted = 0
        while True:
            jobs = await self._log.finished_before(cutoff, batch)
            if not jobs:
                return deleted
            results = await asyncio.gather(
                *(
                    self._bus.send(
                        JobDelete(job_id=j.id, actor="system:cleanup", correlation_id=j.id)
                    )
                    for j in jobs
                ),
                return_exceptions=True,
            )
            done = sum(1 for r in results if not isinstance(r, BaseException))
            deleted += done
            if done == 0:
                return deleted

    # -- reading ---------------------------------------------------------

    async def get(self, job_id: str, *, user: UserArg = None) -> Job:
        """The job as last committed. ``NotFound`` if absent or not ``user``'s."""
        self._check_open()
        owner = _as_user(user)
        job = await self._log.get_job(_id(job_id, "job_id"))
        if job is None or not _owns(job, owner):
            raise NotFound("job", job_id)
        return job

    async def list(
        self,
        *,
        user: UserArg = None,
        status: JobStatus | str | None = None,
        job_type: str | None = None,
        limit: int = 100,
        cursor: int | None = None,
    ) -> JobPage:
        """Jobs, newest first, filtered by owner, status and type.

        Returns a page of at most ``limit`` jobs and the ``cursor`` for the
        next page (``None`` when there is none).
        """
        self._check_open()
        owner = _as_user(user)
        if status is not None:
            if not isinstance(status, str) or status not in _STATUS_NAMES:
                statuses = ", ".join(_STATUS_NAMES)
                raise ValidationError(f"must be one of {statuses}", field="status")
            status = JobStatus(status)
        limit = _count(limit, "limit")
        job_type = _optional_text(job_type, "job_type")
        if cursor is not None:
            cursor = _seq(cursor, "cursor")
        jobs = await self._log.list_jobs(
            user_id=None if owner is None else owner.id,
            tenant=None if owner is None else owner.tenant,
            status=status,
            job_type=job_type,
            before_seq=cursor,
            limit=limit + 1,
        )
        more = len(jobs) > limit
        page = tuple(jobs[:limit])
        return JobPage(jobs=page, cursor=page[-1].created_seq if more and page else None)

    async def history(self, job_id: str, *, user: UserArg = None) -> builtins.list[Envelope]:
        """Every event of the job's stream, in order, also after the job was
        deleted. ``NotFound`` if there is none, or the job is not ``user``'s."""
        self._check_open()
        owner = _as_user(user)
        events = await self._log.stream(_id(job_id, "job_id"))
        created = events[0].data if events else None
        if not isinstance(created, JobCreated) or not _owns_user(created.user, owner):
            raise NotFound("job", job_id)
        return events

    async def assets(self, job_id: str, *, user: UserArg = None) -> builtins.list[Asset]:
        """The files a job recorded, oldest first. ``NotFound`` as for ``get``."""
        await self.get(job_id, user=user)
        return await self._log.assets_of(job_id)

    # -- marks and resources (the application's to guard: no user) ------

    async def marks(self, resource_id: str) -> builtins.list[Mark]:
        """The live marks of a resource, in creation order."""
        self._check_open()
        return await self._log.marks_of(_id(resource_id, "resource_id"))

    async def mark(self, mark_id: str) -> Mark:
        """One live mark; ``NotFound`` if there is none."""
        self._check_open()
        found = await self._log.get_mark(_id(mark_id, "mark_id"))
        if found is None:
            raise NotFound("mark", mark_id)
        return found

    async def annotations(
        self, resource_id: str, *, base_iri: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """The live marks of a resource as W3C annotation documents (JSON-LD),
        in creation order (see :func:`to_jsonld`): marks and resources named
        by IRIs, ``urn:jobledger:mark:ID`` or under ``base_iri`` (an absolute
        IRI ending in ``/``: ``BASE_IRI/marks/ID``); ``ValidationError`` for
        any other ``base_iri``."""
        check_base_iri(base_iri)
        return [to_jsonld(m, base_iri=base_iri) for m in await self.marks(resource_id)]

    async def create_mark(
        self,
        resource_id: str,
        annotation: Annotation | Mapping[str, Any],
        *,
        actor: str = "system",
        mark_id: str | None = None,
    ) -> Mark:
        """Create a mark made by the application rather than a job (``actor``
        is recorded as who made it), and return it as committed.
        ``annotation`` is an :class:`Annotation` or any W3C annotation
        document (a mapping), stored as given. ``ValidationError``, naming
        the MUST, if it breaks one of the W3C model or targets another
        jobledger resource than ``resource_id``, or its selectors disagree."""
        self._check_open()
        mark_id = mark_id or self._ids.make("mark", to_ms(self._clock.now()))
        await self._bus.send(
            MarkCreate(
                mark_id=mark_id,
                resource_id=resource_id,
                annotation=annotation_json(annotation),
                actor=_actor(actor),
            )
        )
        return await self.mark(mark_id)

    async def update_mark_body(
        self, mark_id: str, operations: Sequence[BodyOperation], *, actor: str = "system"
    ) -> Mark:
        """Change a mark's body by ``operations`` (add, remove, replace), all or
        none, and return the mark as committed. ``NotFound`` for a missing
        mark; ``ValidationError`` for an operation that does not apply."""
        self._check_open()
        if isinstance(operations, str | bytes) or not isinstance(operations, Iterable):
            raise ValidationError("must be a sequence of body operations", field="operations")
        await self._bus.send(
            MarkUpdateBody(mark_id=mark_id, operations=list(operations), actor=_actor(actor))
        )
        return await self.mark(mark_id)

    async def delete_mark(self, mark_id: str, *, actor: str = "system") -> None:
        """Delete a mark; ``NotFound`` if there is none."""
        self._check_open()
        await self._bus.send(MarkDelete(mark_id=mark_id, actor=_actor(actor)))

    async def create_resource(
        self,
        name: str,
        content: bytes | str,
        *,
        media_type: str = "text/markdown",
        actor: str = "system",
        resource_id: str | None = None,
    ) -> Resource:
        """Store ``content`` (text is UTF-8 encoded) as a new resource and return
        it as committed. The content is stored durably before the resource is
        logged, in the ledger's content folder (``DATABASE.content``)."""
        self._check_open()
        stored = await store_resource(
            self._content,
            self._bus,
            content,
            resource_id=resource_id or self._ids.make("res", to_ms(self._clock.now())),
            name=name,
            media_type=media_type,
            actor=_actor(actor),
        )
        return await self.resource(stored)

    async def resource(self, resource_id: str) -> Resource:
        """A resource jobledger stores; ``NotFound`` if there is none."""
        self._check_open()
        found = await self._log.get_resource(_id(resource_id, "resource_id"))
        if found is None:
            raise NotFound("resource", resource_id)
        return found

    async def resources(self, *, after_seq: int = 0, limit: int = 100) -> builtins.list[Resource]:
        """Resources oldest first, ``limit`` (1-10,000) of them after ``after_seq``
        (the ``created_seq`` of the last one of the page before)."""
        self._check_open()
        limit = _count(limit, "limit")
        after_seq = _seq(after_seq, "after_seq")
        return await self._log.list_resources(after_seq=after_seq, limit=limit)

    async def content(self, resource_id: str) -> bytes:
        """A resource's content, checked against its digest (``CorruptionError``
        if it no longer matches; ``NotFound`` if the resource or its content is
        missing)."""
        found = await self.resource(resource_id)
        return await self._content.get(found.digest)

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        user: UserArg = None,
        until: Iterable[JobStatus | str] | None = None,
    ) -> Job:
        """Wait until the job is terminal (or, with ``until``, in one of those
        statuses, or terminal: a terminal job never gets anywhere else) and
        return it.

        ``timeout`` is seconds of real time (finite, >= 0; 0 looks once).
        Raises ``WaitTimeout`` after it, ``NotFound`` as for ``get``,
        ``LedgerClosed`` if the ledger closes first, ``ValidationError`` for a
        bad argument.
        """
        self._check_open()
        _id(job_id, "job_id")
        _as_user(user)
        wanted = _statuses(until)
        if timeout is not None and (
            not isinstance(timeout, int | float)
            or isinstance(timeout, bool)
            or not 0 <= timeout < float("inf")
        ):
            raise ValidationError("must be finite seconds >= 0", field="timeout")
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout

        def done(job: Job) -> bool:
            return job.is_terminal or (wanted is not None and job.status in wanted)

        waiter = _Waiter(done)
        self._waiters.setdefault(job_id, set()).add(waiter)
        try:
            # Registered before reading: every event committed after the read
            # reaches the waiter (published here, or found by the tail when
            # another process wrote it), which follows the job from the
            # events alone and wakes this call only when it is done, or
            # when it must read the job again. The first read is made
            # whatever the timeout, so a job already done is returned.
            waiter.read(await self.get(job_id, user=user))
            async with asyncio.timeout_at(deadline):
                while waiter.job is not None and not done(waiter.job):
                    await waiter.wake.wait()
                    self._check_open()
                    waiter.wake.clear()
                    if waiter.reading:  # a gap: read it afresh
                        waiter.read(await self.get(job_id, user=user))
                if waiter.job is None:
                    raise NotFound("job", job_id)
                return waiter.job
        except TimeoutError:
            raise WaitTimeout(f"job {job_id!r} not finished after {timeout} s") from None
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[job_id]

    def _notify_waiters(self, env: Envelope) -> None:
        # Only a contiguous run of seqs moves the mark: when another process
        # wrote in between, the seqs before this one are not seen yet, and
        # the tail must read them (or their waiters would wait forever).
        if env.seq == self._seen_seq + 1:
            self._seen_seq = env.seq
        waiters = self._waiters.get(env.stream)
        if waiters:
            for waiter in waiters:
                waiter.offer(env)

    async def _tail_the_log(self) -> None:
        """Every ``poll_interval`` seconds, one read of the head: if the log
        is past the last seq published here, another process wrote. Its
        events are offered to the waiters, and the followers are woken (they
        read the log from where they are). No waiter or follower polls."""
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                head = (await self._log.head()).seq
                if head <= self._seen_seq:
                    continue
                for arrived in self._followers:
                    arrived.set()
                if self._waiters:
                    async for env in self._log.scan(self._seen_seq, head):
                        waiters = self._waiters.get(env.stream)
                        for waiter in waiters or ():
                            waiter.offer(env)
                self._seen_seq = max(self._seen_seq, head)
            except JobledgerError as exc:  # a storage or corruption error: log it, go on
                log.warning("tailing the log failed; trying again", error=str(exc))

    # -- the log ---------------------------------------------------------

    async def events(
        self,
        after: int = 0,
        *,
        follow: bool = False,
        job_id: str | None = None,
        job_type: str | None = None,
        types: Iterable[str] | None = None,
        user: UserArg = None,
        buffer: int = 10_000,
        on_overflow: Callable[[int], None] | None = None,
    ) -> AsyncGenerator[Envelope, None]:
        """The log's envelopes with ``seq > after``, in order; optionally filtered
        to one job's stream (``job_id``), to the jobs of one type (``job_type``,
        with their marks and assets) and to some event types (``types``).

        Without ``follow`` it ends at the head of the log. With ``follow`` it
        then goes on with live events, with no gap and no duplicate: it
        subscribes first, reads the log up to the head, then drains the live
        buffer by ``seq``; whenever the next live event is not the next
        ``seq`` (its buffer of ``buffer`` envelopes overflowed because the
        consumer was slow, or another process wrote), it reads the missing
        ones from the log, as it does when the ledger's tail finds that
        another process wrote. A slow consumer never slows the Stower; when
        its buffer overflows, ``on_overflow`` is called with the ``seq`` of
        the first live envelope dropped (once until it catches up again),
        and nothing is lost: the dropped ones are read from the log. With
        ``user``, only the events of that user's jobs (and of their marks
        and assets) are given.
        """
        self._check_open()
        after = _seq(after, "after")
        if job_id is not None:
            _id(job_id, "job_id")
        job_type = _optional_text(job_type, "job_type")
        buffer = _count(buffer, "buffer", most=10_000_000)
        if on_overflow is not None and not callable(on_overflow):
            raise ValidationError("must be callable", field="on_overflow")
        names = _event_types(types)
        wanted = None if names is None else frozenset(names)
        owned = await self._jobs_filter(user, job_type)

        def matches(env: Envelope) -> bool:
            if job_id is not None and env.stream != job_id:
                return False
            if wanted is not None and env.type not in wanted:
                return False
            return owned is None or owned(env)

        if not follow:
            async for env in self._log.scan(after):
                if matches(env):
                    yield env
            return

        live: deque[Envelope] = deque()
        arrived = asyncio.Event()

        overflowed = False

        def on_event(env: Envelope) -> None:
            nonlocal overflowed
            if len(live) < buffer:
                live.append(env)
            elif not overflowed:  # dropped: the gap is read back from the log
                overflowed = True
                if on_overflow is not None:
                    on_overflow(env.seq)
            arrived.set()

        subscription = self._bus.subscribe(on_event)
        self._followers.add(arrived)
        last = after
        try:
            while True:
                if self._closed:
                    return
                page = await self._log.read(last, 1000)
                if page:
                    for env in page:
                        last = env.seq
                        if matches(env):
                            yield env
                    continue
                gap = False
                while live:
                    env = live.popleft()
                    if env.seq <= last:
                        continue
                    if env.seq != last + 1:
                        live.appendleft(env)
                        gap = True
                        break
                    last = env.seq
                    if matches(env):
                        yield env
                if gap:
                    continue
                arrived.clear()
                if live:
                    continue
                overflowed = False  # caught up: a later overflow is told again
                # Woken by a live event, or by the tail when another process wrote.
                await arrived.wait()
        finally:
            self._followers.discard(arrived)
            subscription.unsubscribe()

    async def _jobs_filter(
        self, user: UserArg, job_type: str | None
    ) -> Callable[[Envelope], bool] | None:
        """A filter passing the envelopes of the jobs of ``user`` (ownership) and
        of ``job_type``, with their marks and assets; ``None`` if neither is given."""
        owner = _as_user(user)
        if owner is None and job_type is None:
            return None
        jobs: set[str] = set()
        cursor: int | None = None
        while True:
            page = await self._log.list_jobs(
                user_id=owner.id if owner else None,
                tenant=owner.tenant if owner else None,
                job_type=job_type,
                before_seq=cursor,
                limit=1000,
            )
            jobs.update(j.id for j in page)
            if len(page) < 1000:
                break
            cursor = page[-1].created_seq

        def passes(env: Envelope) -> bool:
            data = env.data
            if (
                isinstance(data, JobCreated)
                and (owner is None or _owns_user(data.user, owner))
                and (job_type is None or data.job_type == job_type)
            ):
                jobs.add(env.stream)
            if env.type.startswith("job."):
                return env.stream in jobs
            return getattr(data, "job_id", None) in jobs

        return passes

    def observe(
        self,
        *,
        after: int | None = None,
        job_id: str | None = None,
        job_type: str | None = None,
        types: Iterable[str] | None = None,
        user: UserArg = None,
    ) -> Observable[Envelope]:
        """The same stream as ``events(follow=True)``, as a reactivex Observable.

        Emits on the running asyncio loop. ``after=None`` starts at the head
        (live only); give a ``seq`` to catch up first. Disposing the
        subscription stops it.
        """
        type_list = _event_types(types)

        def subscribe(
            observer: ObserverBase[Envelope], scheduler: SchedulerBase | None = None
        ) -> Any:
            # Live only: from the last seq committed here when subscribing (not
            # when the task first runs), so nothing committed after is missed.
            head = max(self._seen_seq, self._stower.statistics().last_seq)

            async def pump() -> None:
                start = after if after is not None else head
                try:
                    async for env in self.events(
                        start,
                        follow=True,
                        job_id=job_id,
                        job_type=job_type,
                        types=type_list,
                        user=user,
                    ):
                        observer.on_next(env)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    observer.on_error(exc)
                else:
                    observer.on_completed()

            task = asyncio.get_running_loop().create_task(pump(), name="jobledger-observe")

            def dispose() -> None:
                task.cancel()

            return Disposable(dispose)

        return reactivex.create(subscribe)

    async def replay(
        self, *, until_seq: int | None = None, until: datetime | None = None
    ) -> Projection:
        """The state (``.jobs``, ``.marks``, ``.assets``) as of a past point,
        from the log alone, streamed: after ``until_seq``, or before the first
        event later than ``until`` (an aware datetime; ``ValidationError``
        otherwise)."""
        self._check_open()
        if until is not None and (not isinstance(until, datetime) or until.tzinfo is None):
            raise ValidationError("must be an aware datetime", field="until")
        if until_seq is not None:
            until_seq = _seq(until_seq, "until_seq")
        return await replay(self._log, until_seq=until_seq, until=until)

    async def verify(self, *, digest: Head | str | None = None) -> VerifyReport:
        """Check the hash chain, the sequence and the read model against a
        replay, on one consistent view of the log, and that every resource's
        content is there and matches its digest; with a ``digest`` (from
        ``digest()``, kept elsewhere, or its ``SEQ:HASH`` text), also that
        the log still holds it."""
        self._check_open()
        if isinstance(digest, str):
            digest = Head.parse(digest)
        elif digest is not None and not (
            isinstance(digest, Head)
            and isinstance(digest.hash, str)
            and _seq(digest.seq, "digest") >= 0
        ):
            raise ValidationError("must be a Head or its SEQ:HASH text", field="digest")
        return await verify(self._log, digest=digest, content=self._content)

    async def digest(self) -> Head:
        """The head (``seq`` and ``hash``) to keep outside the database:
        ``verify(digest=…)`` later finds any rewrite of the log up to it."""
        self._check_open()
        return await self._log.head()

    async def export_log(self, after: int = 0) -> AsyncGenerator[bytes, None]:
        """The log after ``after`` as NDJSON lines (``jobledger.LogLine``), with
        each event's exact stored bytes, so ``import_log`` keeps the hashes."""
        self._check_open()
        after = _seq(after, "after")
        async for line in export_log(self._log, after):
            yield line

    async def import_log(self, lines: Iterable[bytes | str] | AsyncIterable[bytes | str]) -> int:
        """Load an export into this ledger's log, which must be empty; returns
        the number of entries. All or nothing: ``ValidationError`` (naming the
        line) for a non-empty log, a malformed line, a ``seq`` out of turn or
        a hash that does not chain."""
        self._check_open()
        count = await import_log(self._log, lines)
        log.info("log imported", events=count)
        return count

    async def rebuild(self) -> int:
        """Recompute the read model from the log alone; returns the events folded."""
        self._check_open()
        return await self._log.rebuild()

    async def head(self) -> int:
        """The ``seq`` of the last committed event (0 for an empty log)."""
        self._check_open()
        return (await self._log.head()).seq

    def statistics(self) -> LedgerStatistics:
        """Counters of the bus, the Stower and each worker. Never blocks."""
        return LedgerStatistics(
            path=self._log.path,
            bus=self._bus.statistics(),
            stower=self._stower.statistics(),
            sweeper=self._sweeper.statistics(),
            workers=tuple(r.statistics() for r in self._runners),
        )


@asynccontextmanager
async def open(
    path: str | Path | None = None,
    *,
    workers: Sequence[JobWorker] = (),
    clock: Clock | None = None,
    synchronous: Literal["FULL", "NORMAL"] | None = None,
    poll_interval: float = 1.0,
    stop_timeout: float = 10.0,
    mailbox_size: int = 10_000,
    max_batch: int = 1_000,
    job_types: Sequence[JobType] = (),
    queues: Mapping[str, int] | None = None,
    sweep_interval: float = 1.0,
    faults: Faults | None = None,
) -> AsyncIterator[Ledger]:
    """Open a ledger on the backend ``path`` names: a path or a URL.

    A plain path (text or ``Path``) or ``sqlite:///relative/jobs.db`` /
    ``sqlite:////absolute/jobs.db`` is an SQLite file; ``None``,
    ``":memory:"``, ``memory://``, ``sqlite://`` and ``sqlite:///:memory:``
    are in memory (:mod:`jobledger.store.url` says exactly what counts as a
    URL). An unknown scheme, a malformed URL or an option the backend does
    not take is a ``ValidationError`` naming the accepted forms, and
    ``postgresql://…`` is one saying that backend is not available yet;
    either way nothing is created. ``synchronous`` (default: the URL's
    ``?synchronous=``, else ``"FULL"``) applies to a file; given both, they
    must agree.

    The file is created if missing and migrated if old; jobs whose worker was
    lost are recovered. Workers start at once and stop (gracefully, up to
    ``stop_timeout`` seconds) when the block exits. ``job_types`` fills the
    registry; ``queues`` caps how many jobs of each named queue run at once
    in this process; ``sweep_interval`` is how often lost leases and
    timeouts are looked for. Resources' content lives in a folder beside
    the file (``PATH.content``), or in memory with the log. ``faults`` is
    for reliability tests only: the crash points of
    :mod:`jobledger.core.faults` are reached on it (default: none).
    """
    store: EventLog
    content: ContentStore
    store, content = backend_for(
        BackendURL.parse(":memory:" if path is None else path),
        synchronous=synchronous,
        faults=faults,
    )
    ledger = Ledger(
        store,
        workers=workers,
        clock=clock,
        poll_interval=poll_interval,
        stop_timeout=stop_timeout,
        mailbox_size=mailbox_size,
        max_batch=max_batch,
        job_types=job_types,
        queues=queues,
        sweep_interval=sweep_interval,
        content=content,
        faults=faults,
    )
    await ledger.start()
    try:
        yield ledger
    finally:
        await ledger.aclose()
