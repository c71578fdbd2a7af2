"""The read model's queries, in SQL that SQLite and PostgreSQL both run:
jobs, marks, assets and resources as the read-model tables hold them (a
mixin of :class:`~jobledger.store.SqliteLog` and of the PostgreSQL log,
which give it ``_fetchall``, with ``?`` for each parameter, and
``checkpoint``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobledger.core import (
    Asset,
    CorruptionError,
    Envelope,
    Job,
    JobStatus,
    Mark,
    PendingRead,
    Projection,
    Queue,
    Resource,
    get_logger,
)

from .protocol import JobCount, Record
from .rows import micros
from .sqlite_decode import (
    _decode_asset,
    _decode_job,
    _decode_mark,
    _decode_queue,
    _decode_resource,
    _envelopes,
    _record,
)

__all__: list[str] = []

log = get_logger("store")

_HEAD_SEQ = "SELECT seq FROM events ORDER BY seq DESC LIMIT 1"
_HEAD_HASH = "SELECT hash FROM events ORDER BY seq DESC LIMIT 1"


class _ReadModelQueries:
    """The ``ReadModel`` and ``Schedule`` members over one reader.

    A mixin of each SQL backend, which provides the two members declared
    here for the type checker only, and ``_SELECT_BY_KEY``: the query of a
    job by its idempotency scope, as the backend's unique index on the scope
    is written (so that the index serves it)."""

    _SELECT_BY_KEY: str

    if TYPE_CHECKING:

        async def _fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Any]: ...

        async def checkpoint(self) -> int: ...

    async def get_job(self, job_id: str) -> Job | None:
        rows = await self._fetchall("SELECT doc FROM jobs WHERE id = ?", (job_id,))
        return _decode_job(rows[0][0]) if rows else None

    async def next_pending(
        self, job_types: Sequence[str], now: datetime, limit: int = 1
    ) -> list[Job]:
        return (await self.next_pending_read(job_types, now, limit)).jobs

    async def next_pending_read(
        self, job_types: Sequence[str], now: datetime, limit: int = 1
    ) -> PendingRead:
        if not job_types:
            return PendingRead([])
        marks = ",".join("?" * len(job_types))
        # One statement, one snapshot: the first row (no job) holds the head
        # the jobs were committed at and the earliest ``run_at`` (as
        # ``next_due``), each row after it one job.
        rows = await self._fetchall(
            f"SELECT NULL, ({_HEAD_SEQ}), ({_HEAD_HASH}),"
            f" (SELECT min(run_at_us) FROM jobs WHERE status = 'pending'"
            f" AND job_type IN ({marks}))"
            " UNION ALL SELECT * FROM (SELECT doc, CAST(NULL AS BIGINT), CAST(NULL AS TEXT),"
            " CAST(NULL AS BIGINT) FROM jobs"
            f" WHERE status = 'pending' AND job_type IN ({marks})"
            " AND (run_at_us IS NULL OR run_at_us <= ?)"
            " ORDER BY priority DESC, created_seq LIMIT ?) AS found",
            (*job_types, *job_types, micros(now), limit),
        )
        head = next(r for r in rows if r[0] is None)
        jobs = [_decode_job(r[0]) for r in rows if r[0] is not None]
        return PendingRead(jobs, head[1] or 0, head[2] or "", _due(head[3]))

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
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("user_id", user_id),
            ("tenant", tenant),
            ("status", status),
            ("job_type", job_type),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(str(value))
        if before_seq is not None:
            where.append("created_seq < ?")
            args.append(before_seq)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._fetchall(
            f"SELECT doc FROM jobs {clause} ORDER BY created_seq DESC LIMIT ?", (*args, limit)
        )
        return [_decode_job(r[0]) for r in rows]

    async def next_due(self, job_types: Sequence[str]) -> datetime | None:
        if not job_types:
            return None
        marks = ",".join("?" * len(job_types))
        rows = await self._fetchall(
            f"SELECT min(run_at_us) FROM jobs WHERE status = 'pending' AND job_type IN ({marks})",
            tuple(job_types),
        )
        return _due(rows[0][0] if rows else None)

    async def expiring(self, now: datetime, limit: int = 500) -> list[Job]:
        us = micros(now)
        rows = await self._fetchall(
            "SELECT doc FROM jobs WHERE status = 'running'"
            " AND (lease_expires_us <= ? OR deadline_us <= ?)"
            " ORDER BY CASE WHEN deadline_us < lease_expires_us THEN deadline_us"
            " ELSE lease_expires_us END, created_seq LIMIT ?",
            (us, us, limit),
        )
        jobs = []
        for (doc,) in rows:
            # A damaged row must not stop the sweeper (nor a ledger's open):
            # it is left out and logged; verify names it.
            try:
                jobs.append(_decode_job(doc))
            except (CorruptionError, TypeError) as exc:
                log.error("a running job's row does not decode; left to verify", error=str(exc))
        return jobs

    async def finished_before(
        self, cutoff: datetime, limit: int = 500, statuses: Sequence[JobStatus] | None = None
    ) -> list[Job]:
        only = ""
        if statuses is not None:
            only = f" AND status IN ({','.join('?' * len(statuses))})" if statuses else " AND 0=1"
        rows = await self._fetchall(
            f"SELECT doc FROM jobs WHERE finished_us < ?{only}"
            " ORDER BY finished_us, created_seq LIMIT ?",
            (micros(cutoff), *(str(s) for s in statuses or ()), limit),
        )
        return [_decode_job(r[0]) for r in rows]

    async def job_by_key(self, user_id: str, tenant: str | None, key: str) -> Job | None:
        rows = await self._fetchall(self._SELECT_BY_KEY, (user_id, tenant, key))
        return _decode_job(rows[0][0]) if rows else None

    async def assets_of(self, job_id: str) -> list[Asset]:
        rows = await self._fetchall(
            "SELECT doc FROM assets WHERE job_id = ? ORDER BY created_seq", (job_id,)
        )
        return [_decode_asset(r[0]) for r in rows]

    async def get_mark(self, mark_id: str) -> Mark | None:
        rows = await self._fetchall("SELECT doc FROM marks WHERE id = ?", (mark_id,))
        return _decode_mark(rows[0][0]) if rows else None

    async def marks_of(self, resource_id: str) -> list[Mark]:
        rows = await self._fetchall(
            "SELECT doc FROM marks WHERE resource_id = ? ORDER BY created_seq",
            (resource_id,),
        )
        return [_decode_mark(r[0]) for r in rows]

    async def get_resource(self, resource_id: str) -> Resource | None:
        rows = await self._fetchall("SELECT doc FROM resources WHERE id = ?", (resource_id,))
        return _decode_resource(rows[0][0]) if rows else None

    async def list_resources(self, *, after_seq: int = 0, limit: int = 100) -> list[Resource]:
        rows = await self._fetchall(
            "SELECT doc FROM resources WHERE created_seq > ? ORDER BY created_seq LIMIT ?",
            (after_seq, limit),
        )
        return [_decode_resource(r[0]) for r in rows]

    async def queues(self) -> list[Queue]:
        rows = await self._fetchall("SELECT doc FROM queues ORDER BY name")
        return [_decode_queue(r[0]) for r in rows]

    async def job_counts(self) -> list[JobCount]:
        # One statement, one snapshot: the groups and the oldest job of each.
        rows = await self._fetchall(
            "SELECT g.job_type, g.status, g.n, j.doc FROM"
            " (SELECT job_type, status, count(*) AS n, min(created_seq) AS first"
            "  FROM jobs GROUP BY job_type, status) AS g"
            " JOIN jobs AS j ON j.created_seq = g.first ORDER BY g.job_type, g.status"
        )
        return [
            JobCount(
                job_type=job_type,
                status=JobStatus(status),
                count=count,
                oldest=_decode_job(doc).created_at,
            )
            for job_type, status, count, doc in rows
        ]

    async def snapshot(self) -> Projection:
        model = Projection()
        for (doc,) in await self._fetchall("SELECT doc FROM jobs"):
            job = _decode_job(doc)
            model.jobs[job.id] = job
        for (doc,) in await self._fetchall("SELECT doc FROM marks"):
            mark = _decode_mark(doc)
            model.marks[mark.id] = mark
        for (doc,) in await self._fetchall("SELECT doc FROM assets"):
            asset = _decode_asset(doc)
            model.assets[asset.id] = asset
        for (doc,) in await self._fetchall("SELECT doc FROM resources"):
            resource = _decode_resource(doc)
            model.resources[resource.id] = resource
        model.queues = {queue.name: queue for queue in await self.queues()}
        model.seq = await self.checkpoint()
        return model


class _Scans:
    """``scan`` and ``scan_records`` over the rows of ``_chunks`` (the events
    table's columns in stored order, a chunk at a time): a mixin of each SQL
    backend, which provides ``_chunks``."""

    if TYPE_CHECKING:

        def _chunks(self, after: int, until_seq: int | None) -> AsyncIterator[list[Any]]: ...

    async def scan(self, after: int = 0, until_seq: int | None = None) -> AsyncIterator[Envelope]:
        async for rows in self._chunks(after, until_seq):
            for envelope in _envelopes(rows):
                yield envelope

    async def scan_records(
        self, after: int = 0, until_seq: int | None = None
    ) -> AsyncIterator[Record]:
        async for rows in self._chunks(after, until_seq):
            for row in rows:
                yield _record(row)


def _due(micros_due: int | None) -> datetime | None:
    """A ``run_at_us`` column as a time (``None`` stays ``None``)."""
    if micros_due is None:
        return None
    try:
        return datetime.fromtimestamp(micros_due / 1_000_000, UTC)
    except (OverflowError, ValueError, OSError, TypeError):
        # Past year 9999 (an older log), or a damaged column (verify names
        # it): never due, so the dispatcher goes on polling.
        return datetime.max.replace(tzinfo=UTC)
