"""The Stower: the only writer.

It takes commands from a bounded mailbox in arrival order, and for each
batch (as many commands as are waiting, up to ``max_batch``: group commit
sized by load, with no timer adding latency when the load is light):

1. validates each command against its field constraints (a malformed one is
   rejected here and takes no further part);
2. opens one write transaction (``BEGIN IMMEDIATE``), reads the head (if
   another process appended, it drops its cache) and loads the jobs and
   marks the batch names;
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
nothing of it is visible, and the Stower goes on with the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import msgspec

from jobledger.core import (
    AnyEvent,
    Clock,
    Command,
    Envelope,
    IdFactory,
    Job,
    JobledgerError,
    LedgerClosed,
    Mark,
    StorageError,
    SystemClock,
    chain_hash,
    decide,
    encode_event,
    evolve_job,
    evolve_mark,
    get_logger,
    targets,
    to_ms,
    validate_command,
)
from jobledger.eventbus import EventBus, Reply, Subscription
from jobledger.store import EventLog, Head, LogWriter, Record

__all__ = ["Stower", "StowerStatistics"]

log = get_logger("stower")

_Pending = tuple[Command, "asyncio.Future[Reply]"]


class StowerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """The Stower's counters. ``mailbox`` is the number of commands waiting."""

    running: bool
    commands: int
    rejected: int
    batches: int
    events: int
    storage_errors: int
    mailbox: int
    mailbox_size: int
    max_batch_seen: int
    last_seq: int


class _BatchState:
    """The state ``decide`` sees inside one batch: the cache, overlaid with the
    effect of the batch's earlier commands."""

    def __init__(
        self,
        jobs: dict[str, Job | None],
        marks: dict[str, Mark | None],
        versions: dict[str, int],
    ) -> None:
        self.jobs = jobs
        self.marks = marks
        self.versions = versions
        self.dirty: set[str] = set()

    def changed_jobs(self) -> list[Job]:
        return [j for k, j in self.jobs.items() if j is not None and k in self.dirty]

    def changed_marks(self) -> list[Mark]:
        return [m for k, m in self.marks.items() if m is not None and k in self.dirty]

    def deleted_marks(self) -> list[str]:
        return [k for k, m in self.marks.items() if m is None and k in self.dirty]

    def entry(self, key: str) -> tuple[Job | Mark | None, int]:
        """What the cache keeps for ``key``: the entity (or ``None``) and its version."""
        value = self.jobs[key] if key in self.jobs else self.marks.get(key)
        return value, self.versions.get(key, 0)

    def job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def mark(self, mark_id: str) -> Mark | None:
        return self.marks.get(mark_id)

    def version(self, stream: str) -> int:
        return self.versions.get(stream, 0)


class _Cache:
    """A bounded LRU of the entities the Stower decided on lately, as committed."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[str, Any] = OrderedDict()

    def get(self, key: str) -> Any:
        value = self.entries.get(key)
        if value is not None:
            self.entries.move_to_end(key)
        return value

    def put(self, key: str, value: Any) -> None:
        self.entries[key] = value
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)

    def clear(self) -> None:
        self.entries.clear()


class Stower:
    """The single writer of one event log. See the module docstring for the contract.

    ``start()`` registers it as the bus's command handler and starts its
    task; ``stop()`` stops taking commands, finishes those already in the
    mailbox, and ends the task. If the task dies of an unexpected error, the
    Stower logs it, answers every waiting command with ``LedgerClosed`` and
    calls ``on_crash`` (the owner's cue to stop).
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
        cache_size: int = 100_000,
        on_crash: Any = None,
    ) -> None:
        if mailbox_size < 1 or max_batch < 1:
            raise ValueError("mailbox_size and max_batch must be at least 1")
        self._log = log
        self._bus = bus
        self._clock = clock or SystemClock()
        self._ids = ids or IdFactory()
        self._mailbox: asyncio.Queue[_Pending] = asyncio.Queue(mailbox_size)
        self._mailbox_size = mailbox_size
        self._max_batch = max_batch
        self._cache = _Cache(cache_size)
        self._on_crash = on_crash
        self._head = Head(0, "")
        self._task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._accepting = False
        self._commands = 0
        self._rejected = 0
        self._batches = 0
        self._events = 0
        self._storage_errors = 0
        self._max_batch_seen = 0

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        """Read the log's head and start taking commands from the bus."""
        if self._task is not None:
            raise RuntimeError("the Stower is already started")
        self._head = await self._log.head()
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

    async def _receive(self, command: Command, future: asyncio.Future[Reply]) -> None:
        # The bus delivers commands one at a time, in order; a full mailbox
        # holds up delivery, which is the backpressure ``send`` feels.
        if not self._accepting:
            if not future.done():
                future.set_exception(LedgerClosed("the Stower has stopped"))
            return
        await self._mailbox.put((command, future))

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
            while len(batch) < self._max_batch and not self._mailbox.empty():
                batch.append(self._mailbox.get_nowait())
            try:
                await self._process(batch)
            except asyncio.CancelledError:
                # Cancelled mid-batch: whether it committed is unknown; say so.
                self._answer(batch, [LedgerClosed("the Stower stopped mid-batch")] * len(batch))
                raise
            finally:
                for _ in batch:
                    self._mailbox.task_done()

    # -- one batch -------------------------------------------------------

    async def _process(self, batch: Sequence[_Pending]) -> None:
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
        outcomes: list[Reply | BaseException] = []
        try:
            async with self._log.write() as writer:
                state, head = await self._load(writer, commands)
                records = self._decide_all(commands, state, head, outcomes)
                if records:
                    await writer.append(
                        records,
                        state.changed_jobs(),
                        state.changed_marks(),
                        state.deleted_marks(),
                    )
        except StorageError as exc:
            self._storage_errors += 1
            self._cache.clear()
            log.error("batch rolled back", commands=len(batch), error=str(exc))
            self._answer(batch, [exc] * len(batch))
            return
        except Exception as exc:
            self._cache.clear()
            self._answer(batch, [LedgerClosed(f"the Stower failed: {exc!r}")] * len(batch))
            raise
        # Committed: remember, publish, then answer.
        envelopes = [r.envelope for r in records]
        if envelopes:
            self._head = Head(envelopes[-1].seq, envelopes[-1].hash)
            self._events += len(envelopes)
        for key in state.dirty:
            self._cache.put(key, state.entry(key))
        self._bus.publish(envelopes)
        self._answer(batch, outcomes)

    async def _load(
        self, writer: LogWriter, commands: Sequence[Command | JobledgerError]
    ) -> tuple[_BatchState, Head]:
        head = await writer.head()
        if head != self._head:
            # Another process appended since our last batch: what we cached may be stale.
            self._cache.clear()
            self._head = head
        jobs: dict[str, Job | None] = {}
        marks: dict[str, Mark | None] = {}
        versions: dict[str, int] = {}
        missing_jobs: list[str] = []
        missing_marks: list[str] = []
        for command in commands:
            if not isinstance(command, Command):
                continue
            job_ids, mark_ids = targets(command)
            for ids, into, missing in (
                (job_ids, jobs, missing_jobs),
                (mark_ids, marks, missing_marks),
            ):
                for key in ids:
                    if key in into or key in missing:
                        continue
                    cached = self._cache.get(key)
                    if cached is None:
                        missing.append(key)
                    else:
                        into[key], versions[key] = cached
        if missing_jobs or missing_marks:
            found_jobs, found_marks = await writer.load(missing_jobs, missing_marks)
            found_versions = await writer.versions(missing_jobs + missing_marks)
            for key in missing_jobs:
                jobs[key] = found_jobs.get(key)
            for key in missing_marks:
                marks[key] = found_marks.get(key)
            versions.update(found_versions)
        return _BatchState(jobs, marks, versions), head

    def _decide_all(
        self,
        commands: Sequence[Command | JobledgerError],
        state: _BatchState,
        head: Head,
        outcomes: list[Reply | BaseException],
    ) -> list[Record]:
        now = self._clock.now()
        ms = to_ms(now)
        records: list[Record] = []
        seq, previous = head.seq, head.hash
        for command in commands:
            if isinstance(command, JobledgerError):  # it failed validation
                self._rejected += 1
                outcomes.append(command)
                continue
            try:
                events = decide(command, state, now)
            except JobledgerError as exc:
                self._rejected += 1
                outcomes.append(exc)
                continue
            except Exception as exc:  # a bug in decide: reject this command, keep serving
                log.error("decide failed", command=type(command).__name__, exc_info=exc)
                self._rejected += 1
                outcomes.append(exc)
                continue
            produced: list[Envelope] = []
            for event in events:
                seq += 1
                record = self._record(event, command, seq, previous, now, ms, state)
                previous = record.envelope.hash
                self._evolve(record.envelope, state)
                records.append(record)
                produced.append(record.envelope)
            outcomes.append(tuple(produced))
        return records

    def _record(
        self,
        event: AnyEvent,
        command: Command,
        seq: int,
        previous: str,
        now: Any,
        ms: int,
        state: _BatchState,
    ) -> Record:
        stream = event.stream
        version = state.version(stream) + 1
        event_id = self._ids.make("evt", ms)
        data = encode_event(event)
        tag = event.__struct_config__.tag
        assert isinstance(tag, str)
        unsigned = Envelope(
            seq=seq,
            event_id=event_id,
            stream=stream,
            version=version,
            type=tag,
            time=now,
            actor=command.actor,
            correlation_id=command.correlation_id,
            causation_id=command.causation_id,
            data=event,
            hash="",
        )
        envelope = msgspec.structs.replace(unsigned, hash=chain_hash(previous, unsigned, data))
        return Record(envelope, data)

    @staticmethod
    def _evolve(env: Envelope, state: _BatchState) -> None:
        key = env.stream
        if env.type.startswith("job."):
            state.jobs[key] = evolve_job(state.jobs.get(key), env)
        else:
            state.marks[key] = evolve_mark(state.marks.get(key), env)
        state.versions[key] = env.version
        state.dirty.add(key)

    def _answer(self, batch: Sequence[_Pending], outcomes: Sequence[Reply | BaseException]) -> None:
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # the sender gave up (cancelled); the outcome stands
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def statistics(self) -> StowerStatistics:
        """A snapshot of the Stower's counters. Never blocks."""
        return StowerStatistics(
            running=self.running,
            commands=self._commands,
            rejected=self._rejected,
            batches=self._batches,
            events=self._events,
            storage_errors=self._storage_errors,
            mailbox=self._mailbox.qsize(),
            mailbox_size=self._mailbox_size,
            max_batch_seen=self._max_batch_seen,
            last_seq=self._head.seq,
        )
