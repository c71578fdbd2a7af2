"""The in-memory event log: the reference backend, public, for tests and embedding.

It keeps the same promises as the SQLite backend (one write transaction at a
time, nothing visible before commit, read model updated with the append)
but nothing survives the process. Its read model is a
:class:`~jobledger.core.Projection` that folds each committed record.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

from jobledger.core import (
    GENESIS_HASH,
    Asset,
    Envelope,
    Job,
    JobStatus,
    Mark,
    PendingRead,
    Projection,
    Queue,
    Resource,
    StorageError,
    count_running,
    expired,
    get_logger,
    pending_order,
    queue_book,
    runnable,
)

from .commits import tell_commit, watch_commits
from .protocol import (
    TABLES,
    Changes,
    Head,
    JobCount,
    Loaded,
    RawValue,
    Record,
    Scope,
    StaleWrite,
)
from .rows import (
    asset_row,
    checkpoint_row,
    event_row,
    job_row,
    mark_row,
    queue_row,
    resource_row,
)

__all__ = ["MemoryLog"]

log = get_logger("store")


class _MemoryWriter:
    def __init__(self, log: MemoryLog) -> None:
        self._log = log
        self.records: list[Record] = []
        self.expected: Head | None = None
        self.replacement: Projection | None = None

    def expect(self, head: Head) -> None:
        self.expected = head

    async def head(self) -> Head:
        return self._log._head

    async def load(
        self,
        job_ids: Sequence[str] = (),
        mark_ids: Sequence[str] = (),
        streams: Sequence[str] = (),
        keys: Sequence[Scope] = (),
        queues: Sequence[str] | None = None,
    ) -> Loaded:
        model = self._log._model
        known = self._log._streams
        holders = {k: model.job_by_key(*k) for k in keys}
        book = None
        if queues is not None:
            running = {name: count_running(name, model.jobs.values()) for name in queues}
            book = queue_book(model.queues.values(), queues, running)
        return Loaded(
            head=self._log._head,
            jobs={i: model.jobs[i] for i in job_ids if i in model.jobs},
            marks={i: model.marks[i] for i in mark_ids if i in model.marks},
            versions={s: len(known[s]) for s in streams if s in known},
            holders={k: j for k, j in holders.items() if j is not None},
            queues=book,
        )

    async def append(self, records: Sequence[Record], changes: Changes) -> None:
        # The read model folds the records themselves on commit (``changes`` is
        # what the Stower folded from the same records with the same functions).
        if self.expected is not None and self.expected != self._log._head:
            raise StaleWrite("the head moved")
        expected = self._log._head.seq + len(self.records) + 1
        for record in records:
            if record.envelope.seq != expected:
                raise StorageError(f"seq {record.envelope.seq} appended where {expected} was due")
            expected += 1
        self.records.extend(records)

    def replace_read_model(self, model: Projection) -> None:
        self.replacement = model


def _due_at(job: Job) -> datetime:
    """When a running job's lease or timeout runs out, whichever is first."""
    assert job.lease is not None  # (expired() holds: the job runs under a lease)
    deadline = job.deadline
    return job.lease.expires_at if deadline is None else min(job.lease.expires_at, deadline)


class MemoryLog:
    """A :class:`~jobledger.store.Backend` held in memory."""

    def __init__(self) -> None:
        self._commit_callbacks: list[Callable[[int], None]] = []
        self._records: list[Record] = []
        self._streams: dict[str, list[Envelope]] = {}
        self._model = Projection()
        self._head = Head(0, GENESIS_HASH)
        self._lock = asyncio.Lock()
        self._open = False

    @property
    def path(self) -> str:
        return ":memory:"

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_MemoryWriter]:
        if not self._open:
            raise StorageError("the log is not open")
        async with self._lock:
            writer = _MemoryWriter(self)
            yield writer
            if writer.expected is not None and writer.expected != self._head:
                raise StaleWrite("the head moved")
            replacement = writer.replacement
            if replacement is not None:
                last = writer.records[-1].envelope.seq if writer.records else self._head.seq
                if replacement.seq != last:
                    raise StorageError(
                        f"a read model at seq {replacement.seq} for a log at seq {last}"
                    )
            self._commit(writer.records, stale_if_taken=writer.expected is not None)
            if replacement is not None:
                self._model = replacement
            committed = writer.records or writer.replacement is not None
        if committed:
            tell_commit(self._commit_callbacks, self._head.seq)

    def on_commit(self, callback: Callable[[int], None]) -> Callable[[], None]:
        return watch_commits(self._commit_callbacks, callback)

    def _commit(self, records: Sequence[Record], *, stale_if_taken: bool = False) -> None:
        expected: dict[str, int] = {}  # each stream's next version, this batch included
        for record in records:
            env = record.envelope
            version = expected.get(env.stream) or len(self._streams.get(env.stream, ())) + 1
            if env.version != version:
                message = f"stream {env.stream!r}: version {env.version} out of order"
                raise StaleWrite(message) if stale_if_taken else StorageError(message)
            expected[env.stream] = version + 1
        for record in records:
            self._records.append(record)
            self._streams.setdefault(record.envelope.stream, []).append(record.envelope)
            self._model.apply(record.envelope)
        if records:
            last = records[-1].envelope
            self._head = Head(last.seq, last.hash)

    @asynccontextmanager
    async def frozen(self) -> AsyncIterator[MemoryLog]:
        view = MemoryLog()
        view._records = list(self._records)
        view._streams = {k: list(v) for k, v in self._streams.items()}
        view._model = await self.snapshot()
        view._head = self._head
        view._open = True
        yield view

    async def head(self) -> Head:
        return self._head

    async def checkpoint(self) -> int:
        return self._model.seq

    async def read(self, after: int = 0, limit: int = 1000) -> list[Envelope]:
        return [r.envelope for r in self._records[after : after + limit]]

    async def scan(self, after: int = 0, until_seq: int | None = None) -> AsyncIterator[Envelope]:
        async for record in self.scan_records(after, until_seq):
            yield record.envelope

    async def scan_records(
        self, after: int = 0, until_seq: int | None = None
    ) -> AsyncIterator[Record]:
        end = len(self._records) if until_seq is None else min(until_seq, len(self._records))
        for record in self._records[after:end]:
            yield record

    async def stream(self, stream: str) -> list[Envelope]:
        return list(self._streams.get(stream, ()))

    async def get_job(self, job_id: str) -> Job | None:
        return self._model.jobs.get(job_id)

    async def next_pending(
        self, job_types: Sequence[str], now: datetime, limit: int = 1
    ) -> list[Job]:
        return (await self.next_pending_read(job_types, now, limit)).jobs

    async def next_pending_read(
        self, job_types: Sequence[str], now: datetime, limit: int = 1
    ) -> PendingRead:
        types = set(job_types)
        candidates = [
            j for j in self._model.jobs.values() if j.job_type in types and runnable(j, now)
        ]
        candidates.sort(key=pending_order)
        due = await self.next_due(job_types)
        return PendingRead(candidates[:limit], self._head.seq, self._head.hash, due)

    async def next_due(self, job_types: Sequence[str]) -> datetime | None:
        types = set(job_types)
        due = [
            j.run_at
            for j in self._model.jobs.values()
            if j.job_type in types and j.status is JobStatus.PENDING and j.run_at is not None
        ]
        return min(due, default=None)

    async def expiring(self, now: datetime, limit: int = 500) -> list[Job]:
        found = [j for j in self._model.jobs.values() if expired(j, now)]
        found.sort(key=lambda j: (_due_at(j), j.created_seq))
        return found[:limit]

    async def finished_before(
        self, cutoff: datetime, limit: int = 500, statuses: Sequence[JobStatus] | None = None
    ) -> list[Job]:
        found = [
            j
            for j in self._model.jobs.values()
            if j.finished_at is not None
            and j.finished_at < cutoff
            and (statuses is None or j.status in statuses)
        ]
        found.sort(key=lambda j: (j.finished_at, j.created_seq))
        return found[:limit]

    async def job_counts(self) -> list[JobCount]:
        counts: dict[tuple[str, JobStatus], int] = {}
        first: dict[tuple[str, JobStatus], Job] = {}
        for job in self._model.jobs.values():
            key = (job.job_type, job.status)
            counts[key] = counts.get(key, 0) + 1
            if key not in first or job.created_seq < first[key].created_seq:
                first[key] = job
        return [
            JobCount(job_type=t, status=s, count=counts[t, s], oldest=first[t, s].created_at)
            for t, s in sorted(counts)
        ]

    async def job_by_key(self, user_id: str, tenant: str | None, key: str) -> Job | None:
        return self._model.job_by_key(user_id, tenant, key)

    async def list_jobs(
        self,
        *,
        user_id: str | None = None,
        tenant: str | None = None,
        status: JobStatus | None = None,
        job_type: str | None = None,
        before_seq: int | None = None,
        limit: int = 100,
    ) -> list[Job]:
        jobs = [
            j
            for j in self._model.jobs.values()
            if (user_id is None or j.user.id == user_id)
            and (tenant is None or j.user.tenant == tenant)
            and (status is None or j.status == status)
            and (job_type is None or j.job_type == job_type)
            and (before_seq is None or j.created_seq < before_seq)
        ]
        jobs.sort(key=lambda j: j.created_seq, reverse=True)
        return jobs[:limit]

    async def get_mark(self, mark_id: str) -> Mark | None:
        return self._model.marks.get(mark_id)

    async def marks_of(self, resource_id: str) -> list[Mark]:
        return self._model.marks_of(resource_id)

    async def assets_of(self, job_id: str) -> list[Asset]:
        return self._model.assets_of(job_id)

    async def get_resource(self, resource_id: str) -> Resource | None:
        return self._model.resources.get(resource_id)

    async def list_resources(self, *, after_seq: int = 0, limit: int = 100) -> list[Resource]:
        found = [r for r in self._model.resources.values() if r.created_seq > after_seq]
        found.sort(key=lambda r: r.created_seq)
        return found[:limit]

    async def queues(self) -> list[Queue]:
        return [self._model.queues[name] for name in sorted(self._model.queues)]

    async def integrity(self) -> list[str]:
        return []  # nothing below the model to damage

    async def raw_rows(self, table: str) -> AsyncIterator[tuple[RawValue, ...]]:
        """The rows the SQLite backend would store for this log and model."""
        if table not in TABLES:
            raise ValueError(f"no table {table!r} in the stored shape")
        model = self._model
        rows: list[tuple[RawValue, ...]]
        if table == "events":
            rows = [event_row(record) for record in list(self._records)]
        elif table == "jobs":
            rows = [job_row(job) for job in list(model.jobs.values())]
        elif table == "marks":
            rows = [mark_row(mark) for mark in list(model.marks.values())]
        elif table == "assets":
            rows = [asset_row(asset) for asset in list(model.assets.values())]
        elif table == "resources":
            rows = [resource_row(resource) for resource in list(model.resources.values())]
        elif table == "queues":
            rows = [queue_row(queue) for queue in list(model.queues.values())]
        elif table == "meta":
            rows = [checkpoint_row(model.seq)]
        else:
            raise ValueError(f"the memory log keeps no table {table!r}")
        for row in rows:
            yield row

    async def snapshot(self) -> Projection:
        copy = Projection()
        copy.jobs = dict(self._model.jobs)
        copy.marks = dict(self._model.marks)
        copy.assets = dict(self._model.assets)
        copy.resources = dict(self._model.resources)
        copy.queues = dict(self._model.queues)
        copy.versions = dict(self._model.versions)
        copy.keys = dict(self._model.keys)
        copy.seq = self._model.seq
        return copy
