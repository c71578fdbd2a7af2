"""The Stower: the only writer.

It takes commands from a bounded mailbox in arrival order, and for each
batch (as many commands as are waiting, up to ``max_batch``: group commit
sized by load, with no timer adding latency when the load is light):

1. validates each command against its field constraints (a malformed one is
   rejected here and takes no further part);
2. opens one write transaction (``BEGIN IMMEDIATE``). When its cache holds
   every job and mark the batch names (ids only its ``job:create`` commands
   name are taken as new), it reads nothing: the commit itself checks that
   the head has not moved and the new ids are new, in one round trip, and
   if not, writes nothing and the batch goes the general way. The general
   way reads the head (if another process appended, it drops its cache) and
   what the cache lacks, in one round trip;
3. decides each command, in order, with the pure
   :func:`~jobledger.core.decide` against that state plus the effect of the
   commands before it in the batch;
4. appends every resulting event, hash-chained, with the read-model changes
   and the checkpoint, and commits;
5. only then publishes the events on the bus and answers each sender: with
   its committed events, or with the typed error its command was rejected
   with. A rejected command writes nothing; the others in its batch go on.

The order in which commands reach the Stower is the order of ``seq``.
If the commit fails, every command of the batch gets the ``StorageError``,
nothing of it is visible, and the Stower goes on with the next batch. A bug
of ours while writing a batch is handled the same way, with ``InternalError``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from jobledger.core import (
    ClaimProposer,
    Clock,
    Command,
    CorruptionError,
    Envelope,
    IdFactory,
    InternalError,
    Job,
    JobCreate,
    JobledgerError,
    JobStart,
    JobStatus,
    LedgerClosed,
    Queue,
    QueueConfigure,
    StorageError,
    SystemClock,
    ValidationError,
    decide,
    get_logger,
    targets,
    to_ms,
    validate_command,
)
from jobledger.core.faults import Faults
from jobledger.eventbus import EventBus, Pending, Reply, Subscription
from jobledger.store import EventLog, Head, LogWriter, Record, StaleWrite

from .batch import _BatchState, _Cache, _coalesce_progress, _Plan, _Written
from .following import _Following
from .proposing import _Proposing

__all__ = ["Stower", "StowerStatistics"]

log = get_logger("stower")

_GATHER_TURNS = 3
"""Turns of the event loop the Stower lets pass before it takes a batch while
a runner of this process has a job running. A job that ends at once sends
its report about three turns after the commit that answered the commands
beside it (a producer's next submit, say): waiting for them puts both in
one commit (measured, one producer awaiting each submit, four workers: 1.5
commits per job down to 1.0). A turn with nothing to do costs microseconds."""


class StowerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """The Stower's counters. ``mailbox`` is the number of commands waiting;
    ``coalesced`` counts progress reports folded into a later one of the same
    batch; ``stale_writes`` counts batches decided from the cache alone whose
    commit found the head moved (another process wrote) or an id taken, and
    which were then decided again on what the log holds; ``followed`` counts
    other processes' commits whose notice moved the Stower's head without a
    read; ``reads`` the batches that read the log before deciding (the
    others were decided on what the Stower knew, and committed in one round
    trip)."""

    running: bool
    commands: int
    rejected: int
    coalesced: int
    batches: int
    events: int
    storage_errors: int
    stale_writes: int
    mailbox: int
    mailbox_size: int
    max_batch_seen: int
    last_seq: int
    followed: int = 0
    reads: int = 0


class Stower(_Following, _Proposing):
    """The single writer of one event log. See the module docstring for the contract.

    ``start()`` registers it as the bus's command handler and starts its
    task; ``stop()`` stops taking commands, finishes those already in the
    mailbox, and ends the task. If the task dies of an unexpected error, the
    Stower logs it, answers every waiting command with ``LedgerClosed`` and
    calls ``on_crash`` (the owner's cue to stop). ``on_commit``, if given,
    is called with each batch's envelopes once they are committed, before
    they are published (the sweeper watches leases from that moment); it
    must not block or raise. ``faults`` (reliability tests only) is reached
    at the Stower's crash points (:mod:`jobledger.core.faults`).
    """

    def __init__(
        self,
        log: EventLog,
        bus: EventBus,
        *,
        clock: Clock | None = None,
        ids: IdFactory | None = None,
        mailbox_size: int = 10_000,
        max_batch: int = 1_000,
        cache_size: int = 10_000,
        on_crash: Any = None,
        on_commit: Callable[[Sequence[Envelope]], None] | None = None,
        faults: Faults | None = None,
        proposer: ClaimProposer | None = None,
    ) -> None:
        if mailbox_size < 1 or max_batch < 1:
            raise ValueError("mailbox_size and max_batch must be at least 1")
        self._log = log
        self._bus = bus
        self._clock = clock or SystemClock()
        self._ids = ids or IdFactory()
        self._mailbox: asyncio.Queue[Pending] = asyncio.Queue(mailbox_size)
        self._mailbox_size = mailbox_size
        self._max_batch = max_batch
        self._cache = _Cache(cache_size)
        self._on_crash = on_crash
        self._on_commit = on_commit
        self._faults = faults
        self._proposer = proposer
        self._proposals: list[tuple[JobStart, Job | None]] = []  # this attempt's, undecided
        self._head = Head(0, "")
        # Every queue's record as of ``_head`` (``None``: to be read): what a
        # claim is checked against. Valid while nobody else appends.
        self._queues: dict[str, Queue] | None = None
        self._task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._accepting = False
        self._commands = 0
        self._rejected = 0
        self._coalesced = 0
        self._batches = 0
        self._events = 0
        self._storage_errors = 0
        self._stale_writes = 0
        self._max_batch_seen = 0
        self._followed = 0
        self._reads = 0
        self._committed = 0  # the seq of the last commit of this Stower's own
        self._writing = False  # a batch is being decided and written
        self._heard_past = 0  # the highest seq told meanwhile (see heard)

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        """Read the log's head and queues' records (in one transaction, so
        they agree) and start taking commands from the bus."""
        if self._task is not None:
            raise RuntimeError("the Stower is already started")
        try:
            async with self._log.write() as writer:
                loaded = await writer.load(queues=())
            self._head, self._queues = loaded.head, loaded.queues
        except CorruptionError as exc:  # a damaged record: read when a batch needs it
            log.warning("the queues' records do not read", error=str(exc))
            self._head, self._queues = await self._log.head(), None
        self._committed = self._head.seq
        self._subscription = self._bus.handle_commands(self._receive)
        self._accepting = True
        self._task = asyncio.get_running_loop().create_task(
            self._supervise(), name="jobledger-stower"
        )

    async def stop(self) -> None:
        """Stop taking commands, commit the ones already sent, end the task.

        Commands sent before ``stop()`` are decided and answered; commands
        sent after it get ``LedgerClosed``.
        """
        if self._subscription is not None:
            self._subscription.unsubscribe()  # new sends now find no handler
            self._subscription = None
        task = self._task
        if task is None:
            return
        await self._bus.drain()  # commands emitted before stop() reach the mailbox
        self._accepting = False
        # Wait for the mailbox to empty, unless the task is gone (a crash, or
        # cancelled with the whole loop): then nobody is left to empty it.
        joined = asyncio.ensure_future(self._mailbox.join())
        await asyncio.wait([joined, task], return_when=asyncio.FIRST_COMPLETED)
        if not joined.done():
            self._fail_waiting(LedgerClosed("the Stower has stopped"))
            joined.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _receive(self, batch: Sequence[Pending]) -> None:
        # The bus delivers commands in order, in batches; a full mailbox holds
        # up delivery, which is the backpressure ``send`` feels.
        mailbox = self._mailbox
        for pending in batch:
            if not self._accepting:
                future = pending[1]
                if not future.done():
                    future.set_exception(LedgerClosed("the Stower has stopped"))
            elif mailbox.full():
                await mailbox.put(pending)
            else:
                mailbox.put_nowait(pending)

    async def _supervise(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            # Stopped (or the whole loop is being cancelled): nobody is left
            # waiting for an answer that will never come.
            self._shut(LedgerClosed("the Stower has stopped"))
            raise
        except BaseException as exc:
            log.critical("stower crashed", error=repr(exc), exc_info=exc)
            self._shut(LedgerClosed(f"the Stower crashed: {exc!r}"))
            if self._on_crash is not None:
                self._on_crash(exc)

    def _shut(self, error: LedgerClosed) -> None:
        self._accepting = False
        if self._subscription is not None:
            self._subscription.unsubscribe()
            self._subscription = None
        self._fail_waiting(error)

    def _fail_waiting(self, error: JobledgerError) -> None:
        while not self._mailbox.empty():
            _, future = self._mailbox.get_nowait()
            if not future.done():
                future.set_exception(error)
            self._mailbox.task_done()

    async def _run(self) -> None:
        while True:
            batch = [await self._mailbox.get()]
            if self._reports_due():
                for _ in range(_GATHER_TURNS):
                    await asyncio.sleep(0)
            while len(batch) < self._max_batch and not self._mailbox.empty():
                batch.append(self._mailbox.get_nowait())
            self._writing = True
            try:
                await self._process(batch)
            except asyncio.CancelledError:
                # Cancelled mid-batch: whether it committed is unknown; say so.
                self._withdraw_proposals()
                self._answer(batch, [LedgerClosed("the Stower stopped mid-batch")] * len(batch))
                raise
            except BaseException as exc:
                # Crashed mid-batch: its senders are answered, not left waiting.
                crashed = LedgerClosed(f"the Stower crashed mid-batch (committed or not): {exc!r}")
                self._withdraw_proposals()
                self._answer(batch, [crashed] * len(batch))
                raise
            finally:
                self._writing = False
                if self._heard_past > self._head.seq:  # told of a commit past this batch's
                    self._forget()
                self._heard_past = 0
                for _ in batch:
                    self._mailbox.task_done()

    # -- one batch -------------------------------------------------------

    async def _process(self, batch: Sequence[Pending]) -> None:
        self._batches += 1
        self._commands += len(batch)
        self._max_batch_seen = max(self._max_batch_seen, len(batch))
        # Validate first, outside the transaction: only well-formed commands
        # take part in loading and deciding.
        commands: list[Command | JobledgerError] = []
        for command, _ in batch:
            try:
                commands.append(validate_command(command))
            except JobledgerError as exc:
                commands.append(exc)
            except Exception as exc:  # no input may stop the Stower
                log.error("a command could not be checked", exc_info=exc)
                commands.append(ValidationError(f"the command could not be checked: {exc!r}"))
        survivors = _coalesce_progress(commands)
        if self._faults is not None:
            self._faults.reach("stower.before_begin")
        try:
            written = await self._write_known(commands, survivors)
            if written is None:
                try:
                    written = await self._write_loaded(commands, survivors)
                except StaleWrite:
                    # Nothing was written (a backend that lost its connection
                    # and found the batch absent): decide it again on facts.
                    self._forget()
                    self._stale_writes += 1
                    written = await self._write_loaded(commands, survivors)
        except StorageError as exc:
            self._storage_errors += 1
            self._forget()
            log.error("batch rolled back", commands=len(batch), error=str(exc))
            self._withdraw_proposals()
            self._answer(batch, [exc] * len(batch))
            return
        except Exception as exc:
            # A bug (ours), not the database: the transaction was rolled back, so
            # nothing of the batch exists. Refuse it and keep serving.
            self._forget()
            self._rejected += len(batch)
            log.error("batch failed and was rolled back", commands=len(batch), exc_info=exc)
            error = InternalError(f"the batch failed and was rolled back: {exc!r}")
            error.__cause__ = exc
            self._withdraw_proposals()
            self._answer(batch, [error] * len(batch))
            return
        # Committed: count, remember, publish, then answer.
        if self._faults is not None:
            self._faults.reach("stower.after_commit")
        records, state, outcomes = written
        self._rejected += sum(isinstance(o, BaseException) for o in outcomes)
        self._coalesced += len(survivors)
        envelopes = [r.envelope for r in records]
        if envelopes:
            self._head = Head(envelopes[-1].seq, envelopes[-1].hash)
            self._committed = envelopes[-1].seq
            self._events += len(envelopes)
        for kind, key in state.dirty:
            self._cache.put((kind, key), state.entry(kind, key))
        self._queues = state.queues
        if self._on_commit is not None and envelopes:
            try:
                self._on_commit(envelopes)
            except Exception as exc:  # the owner's hook: committed is committed, go on
                log.error("the on_commit hook failed", exc_info=exc)
        self._bus.publish(envelopes)
        if self._proposals:  # committed: the claims proposed go to their runners
            proposals, self._proposals = self._proposals, []
            self._settle_proposals(proposals)
        if self._faults is not None:
            self._faults.reach("stower.before_answer")
        self._answer(batch, outcomes)

    async def _write_known(
        self, commands: Sequence[Command | JobledgerError], survivors: dict[int, int]
    ) -> _Written | None:
        """The one-round-trip path: when the cache holds every job and mark the
        batch names, except ids that only its ``job:create`` commands name
        (taken as new), decide without reading and commit on the condition
        that the head has not moved and those ids are new. ``None`` when the
        batch does not qualify or the condition failed: then nothing was
        written, and the batch goes the loading path. A batch that writes
        nothing and refuses something checks the head after deciding (a
        read, no lock): refusals made on a stale cache are not answered."""
        # The head the plan is true at: a notice followed while this batch
        # waits for the log may move ``_head``, never what was planned.
        planned_at = self._head
        plan = self._plan(commands)
        if self._queues is None or not plan.known(commands, self._queues):
            return None
        state = _BatchState(
            plan.jobs | dict.fromkeys(plan.missing_jobs),
            plan.marks,
            plan.versions,
            {},
            dict(self._queues),
        )
        outcomes: list[Reply | BaseException] = []
        try:
            async with self._log.write() as writer:
                writer.expect(planned_at)
                records = self._decide_all(commands, survivors, state, planned_at, outcomes)
                guessed = set(plan.missing_jobs)
                if any(
                    isinstance(outcome, BaseException)
                    and isinstance(command, JobCreate)
                    and command.job_id in guessed
                    for command, outcome in zip(commands, outcomes, strict=True)
                ):
                    raise StaleWrite("a create taken for new was refused")  # decide it on facts
                if records:
                    await writer.append(records, state.changes())
            # Decided on the cache with nothing written (refused, or taken as
            # already in effect), so no commit checked the head: if another
            # process appended since, the cache may be stale, and the answers
            # wrong.
            if not records and await self._log.head() != planned_at:
                raise StaleWrite("the head moved: decide the batch on facts")
        except StaleWrite:
            self._forget()
            self._stale_writes += 1
            return None
        return records, state, outcomes

    async def _write_loaded(
        self, commands: Sequence[Command | JobledgerError], survivors: dict[int, int]
    ) -> _Written:
        """The general path: read what the cache lacks (and the head) in the
        transaction, then decide and commit."""
        outcomes: list[Reply | BaseException] = []
        self._reads += 1
        async with self._log.write() as writer:
            state, head = await self._load(writer, commands)
            records = self._decide_all(commands, survivors, state, head, outcomes)
            if records:
                await writer.append(records, state.changes())
        return records, state, outcomes

    async def _load(
        self, writer: LogWriter, commands: Sequence[Command | JobledgerError]
    ) -> tuple[_BatchState, Head]:
        """Read, in one round trip, the head and what the batch needs that the
        cache lacks. If another process appended since the last batch, the
        cache may be stale: it is dropped and everything is read afresh."""
        planned_at = self._head  # (a notice followed meanwhile may move _head: see _write_known)
        plan = self._plan(commands)
        # The queues' records too, always: read with the head (no round trip
        # more on PostgreSQL), they are current whether or not the head moved.
        loaded = await writer.load(*plan.wanted(), queues=plan.configured)
        if loaded.head != planned_at:
            self._forget()
            self._head = loaded.head
            if plan.from_cache:
                plan = self._plan(commands)
                loaded = await writer.load(*plan.wanted(), queues=plan.configured)
        queues = loaded.queues
        assert queues is not None
        jobs, marks, versions = plan.jobs, plan.marks, plan.versions
        held: dict[tuple[str, str | None, str], str] = {}
        for scope, holder in loaded.holders.items():
            held[scope] = holder.id
            jobs.setdefault(holder.id, holder)
        for key in plan.missing_jobs:
            jobs[key] = loaded.jobs.get(key)
        for key in plan.missing_marks:
            marks[key] = loaded.marks.get(key)
        versions.update(loaded.versions)
        for known in jobs.values():
            if known is not None:
                versions.setdefault(known.id, known.version)
        return _BatchState(jobs, marks, versions, held, dict(queues)), loaded.head

    def _plan(self, commands: Sequence[Command | JobledgerError]) -> _Plan:
        """What the batch's commands name: taken from the cache, or to be read."""
        plan = _Plan()
        cache = self._cache
        read: Mapping[str, Job] | None = None  # the desk's last read, if at our head
        for command in commands:
            if not isinstance(command, Command):
                continue
            if isinstance(command, JobCreate) and command.idempotency_key is not None:
                plan.keys.append((command.user.id, command.user.tenant, command.idempotency_key))
            elif isinstance(command, QueueConfigure):
                plan.configured.append(command.queue)
            job_ids, mark_ids, begins = targets(command)
            if begins:
                plan.new_streams.extend(begins)
            for key in job_ids:
                if key not in plan.jobs and key not in plan.missing_jobs:
                    cached = cache.get(("job", key))
                    if cached is None:
                        if read is None:
                            read = self._read_at_head()
                        seen = read.get(key)
                        if seen is None:
                            plan.missing_jobs[key] = None
                            continue
                        cached = seen, seen.version
                    plan.jobs[key], plan.versions[key] = cached
                    plan.from_cache = True
            for key in mark_ids:
                if key not in plan.marks and key not in plan.missing_marks:
                    cached = cache.get(("mark", key))
                    if cached is None:
                        plan.missing_marks[key] = None
                    else:
                        plan.marks[key], plan.versions[key] = cached
                        plan.from_cache = True
        return plan

    def _decide_all(
        self,
        commands: Sequence[Command | JobledgerError],
        survivors: dict[int, int],
        state: _BatchState,
        head: Head,
        outcomes: list[Reply | BaseException],
    ) -> list[Record]:
        now = self._clock.now()
        ms = to_ms(now)
        records: list[Record] = []
        fresh: list[Job] = []  # jobs this batch creates, pending: claims may be proposed
        seq, previous = head.seq, head.hash
        for index, command in enumerate(commands):
            if isinstance(command, JobledgerError):  # it failed validation
                outcomes.append(command)
                continue
            if index in survivors:  # superseded by a later progress of the same attempt
                outcomes.append(())
                continue
            try:
                events = decide(command, state, now)
            except JobledgerError as exc:
                outcomes.append(exc)
                continue
            except Exception as exc:  # a bug in decide: reject this command, keep serving
                log.error("decide failed", command=type(command).__name__, exc_info=exc)
                failure = InternalError(f"deciding {type(command).__name__} failed: {exc!r}")
                failure.__cause__ = exc
                outcomes.append(failure)
                continue
            seq, previous, produced = self._chain(events, command, seq, previous, now, ms, state)
            records.extend(produced)
            outcomes.append(tuple(r.envelope for r in produced))
            if produced and isinstance(command, JobCreate):
                created = state.jobs.get(command.job_id)
                if created is not None and created.status is JobStatus.PENDING:
                    fresh.append(created)
        if self._proposer is not None:
            seq, previous = self._decide_proposals(state, now, ms, seq, previous, records, fresh)
        for superseded, survivor in survivors.items():
            outcomes[superseded] = outcomes[survivor]
        return records

    def _answer(self, batch: Sequence[Pending], outcomes: Sequence[Reply | BaseException]) -> None:
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # the sender gave up (cancelled); the outcome stands
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the Stower's last commit (moved before it yields
        after committing; other processes' commits it followed do not move
        it). Cheap: for checks made on every commit."""
        return self._committed

    def statistics(self) -> StowerStatistics:
        """A snapshot of the Stower's counters. Never blocks."""
        return StowerStatistics(
            running=self.running,
            commands=self._commands,
            rejected=self._rejected,
            coalesced=self._coalesced,
            batches=self._batches,
            events=self._events,
            storage_errors=self._storage_errors,
            stale_writes=self._stale_writes,
            mailbox=self._mailbox.qsize(),
            mailbox_size=self._mailbox_size,
            max_batch_seen=self._max_batch_seen,
            last_seq=self._committed,
            followed=self._followed,
            reads=self._reads,
        )
