"""The Ledger: jobledger's face. It wires the log, the bus, the Stower and the
workers, and offers the API an application uses.

Reads (``get``, ``list``, ``history``, ``marks``) come from the committed read
model. Writes go as commands through the bus to the Stower and return once
committed and published, so a job ``submit`` returns is one ``get`` already
returns.

The Ledger is a face: it wires the running parts (:mod:`jobledger.lifecycle`)
and the services below it, and forwards each method to one of them:
:mod:`jobledger.submissions`, :mod:`jobledger.queries`,
:mod:`jobledger.waiting`, :mod:`jobledger.subscriptions`,
:mod:`jobledger.audit`, :mod:`jobledger.administration` and
:mod:`jobledger.queues`; :func:`jobledger.open` (:mod:`.opening`) makes and
starts one. Arguments are
checked by :mod:`jobledger.arguments`.

Ownership: every read and control method takes ``user``. With a user, jobs
of other users are reported ``NotFound``, exactly like missing ones. With
``user=None`` the caller is the embedding application itself, trusted to
see everything (an admin tool, an auditor).
"""

from __future__ import annotations

import builtins
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import aclosing
from datetime import datetime, timedelta
from typing import Any

import msgspec
from reactivex import Observable

from jobledger.core import (
    Annotation,
    Asset,
    BodyOperation,
    Clock,
    Command,
    ContentStore,
    Envelope,
    Job,
    JobStatus,
    JobType,
    Mark,
    Projection,
    Queue,
    Resource,
    RetryPolicy,
)
from jobledger.core.faults import Faults
from jobledger.eventbus import EventBus, Reply
from jobledger.store import Backend, Head, VerifyReport
from jobledger.workers import JobWorker

from .administration import Administration
from .arguments import UserArg
from .arguments import _as_user as _as_user  # the CLI's check of --user
from .audit import Audit
from .lifecycle import Engine, Health, LedgerStatistics
from .queries import JobPage, Queries
from .submissions import NewJob, Submissions
from .waiting import Waiting
from .waiting import _Waiter as _Waiter  # (tests follow one waiter)

__all__ = ["JobPage", "Ledger", "LedgerStatistics"]


class Ledger:
    """A running jobledger on one event log. Made by :func:`open`.

    ``content`` is where resources' content lives: by default the folder
    beside the log's file (``PATH.content``), or in memory for a log in memory.
    ``faults`` (reliability tests only) goes to the Stower and the workers;
    the log's own crash point is given to the log by whoever builds it."""

    def __init__(
        self,
        log: Backend,
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
        engine = self._engine = Engine(
            log,
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
        check_open = engine.check_open
        self._subscriptions = engine.subscriptions
        self._queries = Queries(log, engine.content, check_open)
        self._submissions = Submissions(
            log,
            engine.bus,
            registry=engine.registry,
            ids=engine.ids,
            clock=engine.clock,
            check_open=check_open,
        )
        self._administration = Administration(
            log,
            engine.bus,
            queries=self._queries,
            content=engine.content,
            ids=engine.ids,
            clock=engine.clock,
            check_open=check_open,
        )
        self._waiting = Waiting(
            self._subscriptions, lambda job_id, user: self.get(job_id, user=user), check_open
        )
        engine.on_closed(self._waiting.wake_all)
        self._audit = Audit(log, engine.content, check_open)

    @property
    def path(self) -> str:
        """Where the log lives."""
        return self._log.path

    @property
    def bus(self) -> EventBus:
        """The ledger's EventBus (to send commands or subscribe directly)."""
        return self._engine.bus

    @property
    def clock(self) -> Clock:
        return self._engine.clock

    async def start(self) -> None:
        """Open the log, start the Stower, recover jobs whose worker was lost
        (expired leases and timeouts, in bounded batches), then start the
        sweeper and the workers."""
        return await self._engine.start()

    async def aclose(self) -> None:
        """Stop the workers (running jobs get ``stop_timeout`` seconds to finish),
        then the Stower (commands already sent are committed), then close the log.
        Idempotent."""
        return await self._engine.aclose()

    async def wait_closed(self) -> None:
        """Return once the ledger has closed: after :meth:`aclose`, or when a
        part of it failed and it closed itself (``health()`` says which).
        What a process that only runs workers waits on, to exit non-zero
        when the ledger fails."""
        return await self._engine.wait_closed()

    def end_grace(self) -> None:
        """Cut the workers' grace at close short: the jobs still running are
        cancelled now and their leases released (``job.released``: pending
        again at once, for another worker, with no retry or recovery spent),
        whether the close has begun or comes later. Never blocks."""
        self._engine.end_grace()

    async def send(self, command: Command) -> Reply:
        """Send a raw command to the Stower; returns its committed events."""
        return await self._submissions.send(command)

    def register(self, job_type: JobType) -> None:
        """Add a job type to the registry (its params are then checked at submit)."""
        return self._submissions.register(job_type)

    def job_types(self) -> builtins.list[JobType]:
        """The registered job types, by name."""
        return self._submissions.job_types()

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
        return await self._submissions.submit(
            job_type,
            params,
            user=user,
            idempotency_key=idempotency_key,
            priority=priority,
            run_at=run_at,
            max_retries=max_retries,
            timeout=timeout,
            retry=retry,
            correlation_id=correlation_id,
            max_recoveries=max_recoveries,
        )

    async def submit_many(self, jobs: Iterable[NewJob]) -> builtins.list[Job]:
        """Submit many jobs in one batch and one commit (up to ``max_batch``,
        1 000 by default; more take a batch for each ``max_batch``); return
        them, pending, in the order given.

        Each :class:`NewJob` carries the arguments of :meth:`submit` and is
        decided as if submitted alone (its own idempotency key, its own
        checks). Every job is checked before anything is sent: a bad one is a
        ``ValidationError`` whose ``field`` names it (``jobs[3].params``), and
        then nothing is written. A job the Stower refuses (rare once checked)
        raises its error after the others are committed.
        """
        return await self._submissions.submit_many(jobs)

    async def cancel(self, job_id: str, *, user: UserArg = None, reason: str | None = None) -> Job:
        """Cancel a job. Pending or suspended: it is ``cancelled`` at once. Running:
        its worker is asked to stop (``cancel_requested``) and the job ends
        ``cancelled`` when it has (``wait`` for it). ``InvalidTransition`` if it
        has already ended; ``NotFound`` as for ``get``."""
        return await self._administration.cancel(job_id, user=user, reason=reason)

    async def suspend(self, job_id: str, *, user: UserArg = None) -> Job:
        """Suspend a job of a suspendable type. Pending: at once. Running: its worker
        is asked to checkpoint and stop; the job ends ``suspended`` with its last
        progress. ``ValidationError`` if the type is not suspendable."""
        return await self._administration.suspend(job_id, user=user)

    async def resume(self, job_id: str, *, user: UserArg = None) -> Job:
        """Put a suspended job back to pending, with its last progress and checkpoint."""
        return await self._administration.resume(job_id, user=user)

    async def retry(self, job_id: str, *, user: UserArg = None, reason: str | None = None) -> Job:
        """Run a job that ended ``failed``, ``timed_out`` or ``cancelled`` again
        (``job:retry``, a ``job.retried`` event): it is pending once more with
        the same id and its whole history, its error and result cleared, its
        attempt number going on, and its retry and recovery budgets afresh.
        ``wait`` called after it waits for the new ending. Any other status is
        ``InvalidTransition`` (a running or pending job has not ended;
        ``completed``, ``partial`` and ``skipped`` are not undone); another
        user's job is ``NotFound``."""
        return await self._administration.retry(job_id, user=user, reason=reason)

    async def delete(self, job_id: str, *, user: UserArg = None) -> None:
        """Delete a job that is not running: it leaves the read model (``get``
        says ``NotFound``); its history stays in the log for audit."""
        return await self._administration.delete(job_id, user=user)

    async def cleanup(
        self,
        older_than: timedelta | datetime,
        *,
        batch: int = 500,
        statuses: Iterable[JobStatus | str] | None = None,
    ) -> int:
        """Delete every finished job that finished before ``older_than`` (a cutoff
        time, or an age), only those of ``statuses`` (job endings) when given;
        returns how many were deleted. Each is a ``job.deleted`` event with the
        actor ``system:cleanup``, so an auditor tells cleanup from tampering."""
        return await self._administration.cleanup(older_than, batch=batch, statuses=statuses)

    async def get(self, job_id: str, *, user: UserArg = None) -> Job:
        """The job as last committed. ``NotFound`` if absent or not ``user``'s."""
        return await self._queries.get(job_id, user=user)

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
        return await self._queries.list(
            user=user, status=status, job_type=job_type, limit=limit, cursor=cursor
        )

    async def history(self, job_id: str, *, user: UserArg = None) -> builtins.list[Envelope]:
        """Every event of the job's stream, in order, also after the job was
        deleted. ``NotFound`` if there is none, or the job is not ``user``'s."""
        return await self._queries.history(job_id, user=user)

    async def assets(self, job_id: str, *, user: UserArg = None) -> builtins.list[Asset]:
        """The files a job recorded, oldest first. ``NotFound`` as for ``get``."""
        return await self._queries.assets(job_id, user=user)

    async def marks(self, resource_id: str) -> builtins.list[Mark]:
        """The live marks of a resource, in creation order."""
        return await self._queries.marks(resource_id)

    async def mark(self, mark_id: str) -> Mark:
        """One live mark; ``NotFound`` if there is none."""
        return await self._queries.mark(mark_id)

    async def annotations(
        self, resource_id: str, *, base_iri: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """The live marks of a resource as W3C annotation documents (JSON-LD),
        in creation order (see :func:`to_jsonld`): marks and resources named
        by IRIs, ``urn:jobledger:mark:ID`` or under ``base_iri`` (an absolute
        IRI ending in ``/``: ``BASE_IRI/marks/ID``); ``ValidationError`` for
        any other ``base_iri``."""
        return await self._queries.annotations(resource_id, base_iri=base_iri)

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
        return await self._administration.create_mark(
            resource_id, annotation, actor=actor, mark_id=mark_id
        )

    async def update_mark_body(
        self, mark_id: str, operations: Sequence[BodyOperation], *, actor: str = "system"
    ) -> Mark:
        """Change a mark's body by ``operations`` (add, remove, replace), all or
        none, and return the mark as committed. ``NotFound`` for a missing
        mark; ``ValidationError`` for an operation that does not apply."""
        return await self._administration.update_mark_body(mark_id, operations, actor=actor)

    async def delete_mark(self, mark_id: str, *, actor: str = "system") -> None:
        """Delete a mark; ``NotFound`` if there is none."""
        return await self._administration.delete_mark(mark_id, actor=actor)

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
        return await self._administration.create_resource(
            name, content, media_type=media_type, actor=actor, resource_id=resource_id
        )

    async def resource(self, resource_id: str) -> Resource:
        """A resource jobledger stores; ``NotFound`` if there is none."""
        return await self._queries.resource(resource_id)

    async def resources(self, *, after_seq: int = 0, limit: int = 100) -> builtins.list[Resource]:
        """Resources oldest first, ``limit`` (1-10,000) of them after ``after_seq``
        (the ``created_seq`` of the last one of the page before)."""
        return await self._queries.resources(after_seq=after_seq, limit=limit)

    async def content(self, resource_id: str) -> bytes:
        """A resource's content, checked against its digest (``CorruptionError``
        if it no longer matches; ``NotFound`` if the resource or its content is
        missing)."""
        return await self._queries.content(resource_id)

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
        return await self._waiting.wait(job_id, timeout=timeout, user=user, until=until)

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
        self._engine.check_open()
        async with aclosing(
            self._subscriptions.events(
                after,
                follow=follow,
                job_id=job_id,
                job_type=job_type,
                types=types,
                user=user,
                buffer=buffer,
                on_overflow=on_overflow,
            )
        ) as stream:
            async for env in stream:
                yield env

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
        return self._subscriptions.observe(
            after=after, job_id=job_id, job_type=job_type, types=types, user=user
        )

    async def replay(
        self, *, until_seq: int | None = None, until: datetime | None = None
    ) -> Projection:
        """The state (``.jobs``, ``.marks``, ``.assets``) as of a past point,
        from the log alone, streamed: after ``until_seq``, or before the first
        event later than ``until`` (an aware datetime; ``ValidationError``
        otherwise)."""
        return await self._audit.replay(until_seq=until_seq, until=until)

    async def verify(self, *, digest: Head | str | None = None) -> VerifyReport:
        """Check the hash chain, the sequence and the read model against a
        replay, on one consistent view of the log, and that every resource's
        content is there and matches its digest; with a ``digest`` (from
        ``digest()``, kept elsewhere, or its ``SEQ:HASH`` text), also that
        the log still holds it."""
        return await self._audit.verify(digest=digest)

    async def digest(self) -> Head:
        """The head (``seq`` and ``hash``) to keep outside the database:
        ``verify(digest=…)`` later finds any rewrite of the log up to it."""
        return await self._audit.digest()

    async def export_log(self, after: int = 0) -> AsyncGenerator[bytes, None]:
        """The log after ``after`` as NDJSON lines (``jobledger.store.LogLine``), with
        each event's exact stored bytes, so ``import_log`` keeps the hashes."""
        async with aclosing(self._audit.export_log(after)) as lines:
            async for line in lines:
                yield line

    async def import_log(self, lines: Iterable[bytes | str] | AsyncIterable[bytes | str]) -> int:
        """Load an export into this ledger's log, which must be empty; returns
        the number of entries. All or nothing: ``ValidationError`` (naming the
        line) for a non-empty log, a malformed line, a ``seq`` out of turn or
        a hash that does not chain."""
        return await self._audit.import_log(lines)

    async def rebuild(self) -> int:
        """Recompute the read model from the log alone; returns the events folded."""
        return await self._audit.rebuild()

    async def head(self) -> int:
        """The ``seq`` of the last committed event (0 for an empty log)."""
        return await self._queries.head()

    async def register_queue(
        self, name: str, *, capacity: int | None = None, actor: str = "system"
    ) -> Queue:
        """Record queue ``name`` in the log with ``capacity`` (at most that
        many of its jobs run at once, across every process and host on the
        log; ``None``: unbounded). A ``queue.configured`` event unless it is
        recorded with that capacity already. Returns its record."""
        return await self._engine.queues.configure(name, capacity, actor)

    async def set_capacity(
        self, name: str, capacity: int | None, *, actor: str = "system"
    ) -> Queue:
        """Change queue ``name``'s capacity while the ledger runs (as
        ``register_queue``). Lowering it stops nothing that runs: no more of
        its jobs start until fewer than ``capacity`` run."""
        return await self._engine.queues.configure(name, capacity, actor)

    async def queues(self) -> builtins.list[Queue]:
        """The queues recorded in the log, by name, each with its capacity
        and how many of its jobs run now."""
        return await self._engine.queues.queues()

    def statistics(self) -> LedgerStatistics:
        """Counters of the bus, the Stower and each worker. Never blocks."""
        return self._engine.statistics()

    def health(self) -> Health:
        """Whether the ledger is open and none of its running parts (the
        Stower, the sweeper, the tail, each worker) failed, with each part's
        state and last error. A part that fails closes the ledger: every call
        then raises ``LedgerClosed`` naming the part. Never blocks."""
        return self._engine.health()
