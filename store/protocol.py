"""The storage contract: what every backend provides, as four narrow protocols.

A :class:`Backend` is an append-only log of :class:`~jobledger.core.Envelope`
(:class:`EventLog`), a read model of jobs, marks, assets and resources kept in
step with it (:class:`ReadModel`), the queries claiming and sweeping need
(:class:`Schedule`), and what verification reads (:class:`AuditSource`).
Writes happen only inside ``EventLog.write()``, one transaction at a time;
the read model is updated in that same transaction, together with its
checkpoint (the last ``seq`` folded), so a reader never sees an event
without its effect or the reverse. Each docstring states a promise the
contract suite (:mod:`jobledger.testing`) checks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from types import MappingProxyType
from typing import Final, Protocol, runtime_checkable

import msgspec

from jobledger.core import (
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
    ValidationError,
)

__all__ = [
    "TABLES",
    "AuditSource",
    "Backend",
    "Changes",
    "EventLog",
    "Head",
    "JobCount",
    "Loaded",
    "LogWriter",
    "Notice",
    "Notices",
    "Problem",
    "RawText",
    "RawValue",
    "ReadModel",
    "Record",
    "Schedule",
    "StaleWrite",
    "VerifyReport",
]

Scope = tuple[str, str | None, str]
"""An idempotency scope: ``(user id, tenant, key)``."""


class RawText(bytes):
    """A stored text that is not valid UTF-8, as its bytes: what a column
    holds when the file was damaged or edited byte by byte."""


RawValue = int | float | str | bytes | None
"""A stored value as the storage holds it: SQLite's five storage classes
(``RawText`` is a ``bytes`` for a text that does not decode)."""

TABLES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "events": (
            "seq",
            "event_id",
            "stream",
            "version",
            "type",
            "time",
            "actor",
            "correlation_id",
            "causation_id",
            "data",
            "hash",
        ),
        "jobs": (
            "id",
            "job_type",
            "status",
            "user_id",
            "tenant",
            "priority",
            "run_at_us",
            "lease_expires_us",
            "deadline_us",
            "finished_us",
            "idempotency_key",
            "created_seq",
            "doc",
        ),
        "marks": ("id", "resource_id", "job_id", "created_seq", "doc"),
        "assets": ("id", "job_id", "created_seq", "doc"),
        "resources": ("id", "created_seq", "doc"),
        "queues": ("name", "doc"),
        "meta": ("key", "value"),
    }
)
"""Every table a backend keeps, with its columns in their stored order:
``events`` is the log; the others are the read model (``meta`` holds the
checkpoint). The first column of each is the row's key."""


class Head(msgspec.Struct, frozen=True):
    """The last entry of the log: its ``seq`` (0 when empty) and ``hash``.

    Kept outside the database (``text``, then ``Head.parse``), a head is a
    digest of the whole log up to it: ``verify(digest=…)`` reports a log
    whose entry at that ``seq`` no longer has that hash, or that ends before
    it, so even a rewrite of the whole file with a fresh chain is found.
    """

    seq: int
    hash: str

    @property
    def text(self) -> str:
        """``"SEQ:HASH"``, the form ``parse`` reads."""
        return f"{self.seq}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> Head:
        """Read ``"SEQ:HASH"``. Raises ``ValidationError`` for anything else."""
        seq, _, digest = text.strip().partition(":")
        if not seq.isdigit() or len(digest) != 64 or not _is_hex(digest):
            raise ValidationError(f"not a digest (SEQ:HASH): {text!r}", field="digest")
        return cls(int(seq), digest)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


class Record(msgspec.Struct, frozen=True):
    """An envelope ready to append, with the exact bytes of its event."""

    envelope: Envelope
    data: bytes


class Changes(msgspec.Struct, kw_only=True):
    """The read-model rows a batch changes, as the Stower folded them."""

    jobs: list[Job] = msgspec.field(default_factory=list)
    deleted_jobs: list[str] = msgspec.field(default_factory=list)
    marks: list[Mark] = msgspec.field(default_factory=list)
    deleted_marks: list[str] = msgspec.field(default_factory=list)
    assets: list[Asset] = msgspec.field(default_factory=list)
    resources: list[Resource] = msgspec.field(default_factory=list)
    queues: list[Queue] = msgspec.field(default_factory=list)

    @classmethod
    def of(cls, model: Projection) -> Changes:
        """Every row of ``model``: a whole read model, as a rebuild writes it."""
        return cls(
            jobs=list(model.jobs.values()),
            marks=list(model.marks.values()),
            assets=list(model.assets.values()),
            resources=list(model.resources.values()),
            queues=list(model.queues.values()),
        )


class Loaded(msgspec.Struct, frozen=True, kw_only=True):
    """What a write transaction read for a batch: the head as of the
    transaction, the read-model jobs and marks asked for (missing ones left
    out), the last version of each stream asked for that has events, the
    live job holding each idempotency scope asked for, and, when asked for,
    every queue's record (``queues``; see ``LogWriter.load``)."""

    head: Head
    jobs: dict[str, Job]
    marks: dict[str, Mark]
    versions: dict[str, int]
    holders: dict[Scope, Job]
    queues: dict[str, Queue] | None = None


class StaleWrite(StorageError):
    """A write made on assumptions (``LogWriter.expect``) that no longer held
    when it came to commit: the head had moved, or a stream taken for new
    already had events. Nothing was written; decide again on fresh state."""


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """One thing ``verify`` found wrong. ``seq`` is where (0 when not tied to
    one entry); ``kind`` says what (docs/audit.md lists the kinds); ``detail``
    says it in words, naming the row and the column.

    Where the problem is in one stored row, ``table`` and ``column`` name its
    place (a table of :data:`TABLES` and one of its columns) and ``stream``
    the entry's stream or the read-model row's id (a job, mark, asset or
    resource id)."""

    seq: int
    kind: str
    detail: str
    table: str | None = None
    column: str | None = None
    stream: str | None = None


class VerifyReport(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of ``verify``: ``ok`` is true when ``problems`` is empty."""

    head: Head
    events: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


class JobCount(msgspec.Struct, frozen=True, kw_only=True):
    """How many jobs of one type are in one status, and when the first of
    them in the log (the lowest ``created_seq``) was created: the age of the
    oldest pending job of a type, say."""

    job_type: str
    status: JobStatus
    count: int
    oldest: datetime


class LogWriter(Protocol):
    """The inside of one write transaction (``EventLog.write()``)."""

    async def head(self) -> Head:
        """The log's head as of this transaction (other processes may have
        appended). The first read begins the transaction: from then on no
        other writer, in this process or another, appends until it ends."""
        ...

    async def load(
        self,
        job_ids: Sequence[str] = (),
        mark_ids: Sequence[str] = (),
        streams: Sequence[str] = (),
        keys: Sequence[Scope] = (),
        queues: Sequence[str] | None = None,
    ) -> Loaded:
        """The head, and the jobs, marks, stream versions and idempotency
        holders asked for, all read in this transaction. With ``queues`` (a
        sequence, even empty), also every queue's record; each queue it
        names that has none comes with an unsaved one (``configured_seq``
        0, no capacity) counting its running jobs, as a first
        ``queue.configured`` would need."""
        ...

    def expect(self, head: Head) -> None:
        """Write without reading first: commit only if the head is still
        ``head`` and every stream the records start (version 1) is new;
        otherwise the transaction raises :class:`StaleWrite` and writes
        nothing. Lets a writer whose cache is current commit in one round trip."""
        ...

    async def append(self, records: Sequence[Record], changes: Changes) -> None:
        """Append ``records``, already hashed, and apply ``changes`` to the
        read model, in the same transaction. The records' ``seq`` must follow
        on from the head (and from records appended before in this
        transaction) without a gap, and each record's ``version`` must be its
        stream's next: otherwise the transaction fails (``StorageError``; a
        ``StaleWrite`` when ``expect`` was called) and writes nothing. The
        backend stores each record's ``data`` bytes exactly, and never
        computes or checks a hash: the chain is the caller's."""
        ...

    def replace_read_model(self, model: Projection) -> None:
        """At commit, replace the whole read model with ``model`` (every job,
        mark, asset and resource it holds; nothing else), checkpointed at
        ``model.seq``, which must be this transaction's head. How
        ``rebuild`` writes a read model folded from the log alone."""
        ...


class Notice(msgspec.Struct, frozen=True, array_like=True):
    """Another process's commit, as its notice tells it: the new ``head``
    (``seq`` and ``hash``), the ``previous`` head's ``seq`` the batch was
    appended after, whether it changed a queue's record (``queues``), and
    the streams it appended to (``None``: too many to name). Enough for a
    writer that knew the log up to ``previous`` to know it up to ``seq``
    without reading, but for the named streams' state."""

    seq: int
    hash: str
    previous: int
    queues: bool
    streams: list[str] | None


@runtime_checkable
class Notices(Protocol):
    """A log that tells each other process's commit as a :class:`Notice`."""

    def on_notice(self, callback: Callable[[Notice], None]) -> Callable[[], None]:
        """Call ``callback(notice)`` for each notice of another process's
        commit this log receives, in the order received, before the commit
        callbacks are told its ``seq``; returns the function that stops it.
        A notice may be missed (a connection lost): whoever follows them
        checks that each continues the last (``previous``)."""
        ...


class EventLog(Protocol):
    """The append-only log: one global order of envelopes (``seq`` 1, 2, …
    with no gap), each stream's envelopes in version order (1, 2, … with no
    gap), appended a batch at a time, all or nothing.

    A backend also keeps a :class:`ReadModel` in step with the log (in the
    same transaction as each append), what :class:`Schedule` needs to claim
    and sweep, and what :class:`AuditSource` needs to verify: a
    :class:`Backend` is all four. Every backend passes the contract suite in
    :mod:`jobledger.testing`.
    """

    @property
    def path(self) -> str:
        """Where the log lives, for messages and for the content folder next
        to it (``":memory:"`` for a log that keeps nothing after close)."""
        ...

    async def open(self) -> None:
        """Open (creating or migrating if needed) and bring the read model up
        to the head. Raises ``StorageError`` (``CorruptionError`` for damage)
        and then leaves nothing open. Opening an open log does nothing."""
        ...

    async def close(self) -> None:
        """Close. Idempotent. After it every call raises ``StorageError``."""
        ...

    def write(self) -> AbstractAsyncContextManager[LogWriter]:
        """A write transaction: committed when the block exits normally, rolled
        back (nothing visible, nothing kept) when it raises. One at a time:
        a second ``write()`` waits for the first. Nothing a transaction
        appends is visible to any reader before its commit, and all of it is
        at once after. Raises ``StorageError`` on database failure."""
        ...

    async def head(self) -> Head:
        """The committed head: the last ``seq`` and its hash (``Head(0,
        GENESIS_HASH)`` when empty)."""
        ...

    async def read(self, after: int = 0, limit: int = 1000) -> list[Envelope]:
        """Up to ``limit`` committed envelopes with ``seq > after``, in order."""
        ...

    def scan(self, after: int = 0, until_seq: int | None = None) -> AsyncIterator[Envelope]:
        """Every committed envelope with ``after < seq <= until_seq``, in
        order, streamed in chunks (memory stays flat for any log). A caller
        may stop early."""
        ...

    def scan_records(self, after: int = 0, until_seq: int | None = None) -> AsyncIterator[Record]:
        """As ``scan``, with each event's exact stored bytes (what the hash
        chain covers): what ``export`` writes."""
        ...

    async def stream(self, stream: str) -> list[Envelope]:
        """Every committed envelope of one stream, in version order."""
        ...

    def on_commit(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """Call ``callback(seq)`` on the event loop after each commit this log
        learns of, with the head ``seq`` it knows then; returns the function
        that stops it (calling it again does nothing).

        A commit made through this object is always told, after it is
        visible to every reader and before ``write()`` returns. A commit by
        another process is told where the backend can learn of it (a
        notification is a hint: it may come late, or several at once as
        one; a reader then reads the log, so a lost one delays an event but
        never loses it). A callback that raises is logged and never fails
        the write."""
        ...


class ReadModel(Protocol):
    """The jobs, marks, assets and resources folded from the log, kept in
    step with it: a reader sees the read model and the log move together
    (never an event without its effect, nor the reverse). Every answer is
    what the fold of the log up to ``checkpoint()`` holds."""

    async def checkpoint(self) -> int:
        """The last ``seq`` folded into the read model (the head's, once open)."""
        ...

    async def get_job(self, job_id: str) -> Job | None:
        """The job, or ``None`` when there is none (or it was deleted)."""
        ...

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
        """Up to ``limit`` jobs newest first (by ``created_seq``), filtered.
        The cursor is ``before_seq``: the next page is asked for with the
        ``created_seq`` of the last job of this one, so pages are stable
        while jobs are added (each job is on exactly one page)."""
        ...

    async def job_by_key(self, user_id: str, tenant: str | None, key: str) -> Job | None:
        """The live job of ``user_id`` in ``tenant`` submitted with
        idempotency ``key`` (a key is free again once its job is deleted)."""
        ...

    async def assets_of(self, job_id: str) -> list[Asset]:
        """The assets of a job, oldest first."""
        ...

    async def get_mark(self, mark_id: str) -> Mark | None:
        """The live mark, or ``None`` (none, or deleted)."""
        ...

    async def marks_of(self, resource_id: str) -> list[Mark]:
        """The live marks of a resource, oldest first."""
        ...

    async def get_resource(self, resource_id: str) -> Resource | None:
        """The resource, or ``None``."""
        ...

    async def queues(self) -> list[Queue]:
        """Every configured queue's record (capacity, running count), by name."""
        ...

    async def list_resources(self, *, after_seq: int = 0, limit: int = 100) -> list[Resource]:
        """Up to ``limit`` resources oldest first (by ``created_seq``), after
        ``after_seq`` (the cursor: the last one's ``created_seq``)."""
        ...

    async def job_counts(self) -> list[JobCount]:
        """For each job type and status that has jobs: how many, and when
        the first of them in the log was created; ordered by type, then
        status. What statistics count without reading every job."""
        ...


class Schedule(Protocol):
    """What claiming, the sweeper and cleanup ask of the read model."""

    async def next_pending(
        self, job_types: Sequence[str], now: datetime, limit: int = 1
    ) -> list[Job]:
        """Up to ``limit`` pending jobs of ``job_types`` that may run at
        ``now`` (no ``run_at``, or one not after ``now``), in claim order:
        highest priority first, then oldest (``created_seq``) first."""
        ...

    async def next_pending_read(
        self, job_types: Sequence[str], now: datetime, limit: int = 1
    ) -> PendingRead:
        """``next_pending``, with the head of the log the read saw and
        ``next_due``, in one snapshot (:class:`~jobledger.core.PendingRead`)."""
        ...

    async def next_due(self, job_types: Sequence[str]) -> datetime | None:
        """The earliest ``run_at`` among pending jobs of ``job_types``
        (``None`` when none has one): when a worker should look again."""
        ...

    async def expiring(self, now: datetime, limit: int = 500) -> list[Job]:
        """Running jobs whose lease expired, or whose timeout passed, by ``now``:
        the ``limit`` that ran out first (soonest lease or timeout first). A
        stored row that does not decode is left out (and logged), so one
        damaged row stops neither the sweeper nor an open; ``verify`` names it."""
        ...

    async def finished_before(
        self, cutoff: datetime, limit: int = 500, statuses: Sequence[JobStatus] | None = None
    ) -> list[Job]:
        """Up to ``limit`` terminal jobs that finished before ``cutoff``, oldest
        first; only those in ``statuses`` when given."""
        ...


class AuditSource(Protocol):
    """What ``verify`` reads beside the log: one instant, the storage's own
    findings, and the rows as stored. Nothing but audit uses these."""

    def frozen(self) -> AbstractAsyncContextManager[Backend]:
        """A read-only view of the log and its read model as they are at one
        instant: commits made while the view is open are not in it. For
        audits that read a lot and must see one consistent state."""
        ...

    async def snapshot(self) -> Projection:
        """The whole read model as a :class:`Projection`."""
        ...

    async def integrity(self) -> list[str]:
        """What the storage itself finds damaged (for SQLite, ``PRAGMA
        integrity_check``: pages, indexes; and any table whose columns,
        constraints or indexes are not the ones this jobledger made); empty
        when it finds nothing."""
        ...

    def raw_rows(self, table: str) -> AsyncIterator[tuple[RawValue, ...]]:
        """Every stored row of ``table`` (a key of :data:`TABLES`), undecoded:
        one tuple a row, its values in the order of ``TABLES[table]`` and of
        the storage classes they are stored as (a text that is not UTF-8 comes
        as :class:`RawText`; a column the table lacks as ``None``). ``events``
        rows come in ``seq`` order. Streams, in chunks.

        This is what ``verify`` reads, so it sees what a decoding layer would
        hide. A backend that keeps its rows in another form presents them as
        the functions of ``jobledger.store.rows`` make them. Raises only
        ``StorageError`` (on a failed read), never for what a row holds."""
        ...


class Backend(EventLog, ReadModel, Schedule, AuditSource, Protocol):
    """A whole backend: the log, its read model, scheduling and audit. What
    ``jobledger.open`` runs on; each part of the engine asks only for the
    protocol it uses. Replay, rebuild, verify, export and import are written
    once over these (:mod:`jobledger.store.audit`)."""
