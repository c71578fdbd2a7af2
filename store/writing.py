"""What the SQL backends' write transactions share: the checks of the
``LogWriter`` contract (``seq`` follows on from the head, a replaced read
model is the head's, ``expect`` comes first), the head a commit reaches,
and which rows an append or a replaced read model stages, in which order.
Each backend gives its own statements (its placeholders, its upserts) and
how a statement is staged and run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from jobledger.core import Projection, Queue, StorageError, queue_book

from .protocol import Changes, Head, Record
from .rows import asset_row, event_row, job_row, mark_row, queue_row, resource_row
from .sqlite_decode import _decode_queue, _running_by_queue

__all__: list[str] = []


class Statements(NamedTuple):
    """One backend's statements for the rows a write stages."""

    insert_event: str
    delete_job: str
    upsert_job: str
    upsert_mark: str
    delete_mark: str
    insert_asset: str
    insert_resource: str
    upsert_queue: str
    set_checkpoint: str


def last_of_each(items: Sequence[Any], key: str = "id") -> list[Any]:
    """Each item once by its ``key`` attribute, its last state (an upsert may
    not touch a row twice)."""
    return list({getattr(item, key): item for item in items}.values())


SELECT_RUNNING = "SELECT doc FROM jobs WHERE status = 'running'"
"""The running jobs' documents, counted by queue for a queue configured first."""


def _book(
    saved: Sequence[bytes] | None, running: Sequence[bytes] | None, names: Sequence[str] | None
) -> dict[str, Queue] | None:
    """The queue records a load answers (``None`` when not asked for): the
    saved ones (``saved``: their documents), and one unsaved for each of
    ``names`` without a record, counting the running jobs' documents."""
    if names is None or saved is None:
        return None
    counts = _running_by_queue(running or (), names)
    return queue_book((_decode_queue(doc) for doc in saved), names, counts)


class _Transaction:
    """The part of one write transaction every SQL backend shares. A
    subclass sets ``_head`` when its first read begins the transaction,
    gives ``head()`` and ``_stage`` and its ``STATEMENTS``."""

    STATEMENTS: Statements

    def __init__(self) -> None:
        self._head: Head | None = None
        self.expected: Head | None = None
        self._appended = 0
        self._replaced = False

    async def head(self) -> Head:
        raise NotImplementedError

    def _stage(self, sql: str, rows: Sequence[Any]) -> None:
        raise NotImplementedError

    def expect(self, head: Head) -> None:
        if self._head is not None:
            raise RuntimeError("expect() comes before any read")
        self.expected = head

    @property
    def committed_seq(self) -> int | None:
        """The head ``seq`` once this transaction commits; ``None`` when it
        writes nothing."""
        base = self._head if self._head is not None else self.expected
        if base is None or not (self._appended or self._replaced):
            return None
        return base.seq + self._appended

    async def _check_follows(self, records: Sequence[Record]) -> None:
        """The records' ``seq`` must follow on from the head (and the records
        appended before): the storage would take a gap."""
        base = self.expected if self._head is None and self.expected is not None else None
        head = base if base is not None else await self.head()
        due = head.seq + self._appended + 1
        for record in records:
            if record.envelope.seq != due:
                raise StorageError(f"seq {record.envelope.seq} appended where {due} was due")
            due += 1
        self._appended += len(records)

    def _stage_append(self, records: Sequence[Record], changes: Changes) -> None:
        sql = self.STATEMENTS
        self._stage(sql.insert_event, [event_row(record) for record in records])
        self._stage(sql.delete_job, [(j,) for j in changes.deleted_jobs])
        self._stage(sql.upsert_job, [job_row(j) for j in last_of_each(changes.jobs)])
        self._stage(sql.upsert_mark, [mark_row(m) for m in last_of_each(changes.marks)])
        self._stage(sql.delete_mark, [(m,) for m in changes.deleted_marks])
        self._stage(sql.insert_asset, [asset_row(a) for a in changes.assets])
        self._stage(sql.insert_resource, [resource_row(r) for r in changes.resources])
        self._stage(sql.upsert_queue, [queue_row(q) for q in last_of_each(changes.queues, "name")])
        self._stage(sql.set_checkpoint, [(str(records[-1].envelope.seq),)])

    def replace_read_model(self, model: Projection) -> None:
        if self._head is None:
            raise StorageError("read the head (head() or load()) before replacing the read model")
        if model.seq != self._head.seq + self._appended:
            raise StorageError(
                f"a read model at seq {model.seq} for a log at seq "
                f"{self._head.seq + self._appended}"
            )
        self._replaced = True
        sql = self.STATEMENTS
        for table in ("jobs", "marks", "assets", "resources", "queues"):
            self._stage(f"DELETE FROM {table}", [()])
        self._stage(sql.upsert_job, [job_row(j) for j in model.jobs.values()])
        self._stage(sql.upsert_mark, [mark_row(m) for m in model.marks.values()])
        self._stage(sql.insert_asset, [asset_row(a) for a in model.assets.values()])
        self._stage(sql.insert_resource, [resource_row(r) for r in model.resources.values()])
        self._stage(sql.upsert_queue, [queue_row(q) for q in model.queues.values()])
        self._stage(sql.set_checkpoint, [(str(model.seq),)])
