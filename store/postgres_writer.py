"""One PostgreSQL write transaction (:class:`_PostgresWriter`): begin with the
append lock and the head in one round trip, stage, and commit with the
notice to other processes.

**One global, gapless order.** Every transaction that appends takes a
transaction-scoped advisory lock on the schema's append key before it reads
the head, and holds it to its commit or rollback. So appends from every
process on every host are serialised: the next ``seq`` is always the head's
plus one, nothing commits out of order, and a rolled-back transaction leaves
no gap (``seq`` is written by us, never drawn from a sequence). The lock and
the head's read are one statement of a function (``jobledger_load``) whose
head query runs after the lock is granted, with a fresh snapshot (a plain
``SELECT lock, head`` would read the head from before the wait).

**Publish after commit, across processes.** The transaction calls
``pg_notify`` with the head ``seq`` it reaches; PostgreSQL delivers the
notice to every listener only when, and if, the transaction commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from jobledger.core.faults import Faults

from .protocol import TABLES, Changes, Head, Loaded, Notice, Record, Scope, StaleWrite
from .rows import asset_row, event_row, job_row, mark_row, queue_row, resource_row
from .sqlite_decode import _decode_job, _decode_mark, _head_of
from .writing import SELECT_RUNNING, Statements, _book, _Transaction, last_of_each

__all__: list[str] = []

_INSERT_EVENT = (
    "INSERT INTO events (seq, event_id, stream, version, type, time, actor,"
    " correlation_id, causation_id, data, hash) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
)
_JOB_COLUMNS = TABLES["jobs"][1:]  # (all but the key)
_UPSERT_JOB = (
    f"INSERT INTO jobs (id, {', '.join(_JOB_COLUMNS)})"
    " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _JOB_COLUMNS)
)
_UPSERT_MARK = (
    "INSERT INTO marks (id, resource_id, job_id, created_seq, doc) VALUES ($1,$2,$3,$4,$5)"
    " ON CONFLICT (id) DO UPDATE SET resource_id = EXCLUDED.resource_id,"
    " job_id = EXCLUDED.job_id, created_seq = EXCLUDED.created_seq, doc = EXCLUDED.doc"
)
_INSERT_ASSET = "INSERT INTO assets (id, job_id, created_seq, doc) VALUES ($1,$2,$3,$4)"
_INSERT_RESOURCE = "INSERT INTO resources (id, created_seq, doc) VALUES ($1,$2,$3)"
_UPSERT_QUEUE = (
    "INSERT INTO queues (name, doc) VALUES ($1,$2) ON CONFLICT (name)"
    " DO UPDATE SET doc = EXCLUDED.doc"
)
_SET_CHECKPOINT = "UPDATE meta SET value = $1 WHERE key = 'checkpoint'"
SELECT_BY_KEY = (
    "SELECT doc FROM jobs WHERE user_id = ? AND coalesce(tenant, '') = coalesce(?, '')"
    " AND idempotency_key = ?"
)
_NOTICE_STREAMS = 50  # streams a notice names at most
_NOTICE_TEXT = 4_000  # characters of stream names a notice holds at most
_FLUSH_ROWS = 20_000  # staged rows beyond which a write runs before its commit

BEGIN_FUNCTION = """
CREATE OR REPLACE FUNCTION jobledger_load(
    key bigint, with_queues boolean, job_ids text[], mark_ids text[], streams text[]
) RETURNS TABLE (
    seq bigint, hash text, queues bytea[], jobs bytea[], marks bytea[],
    v_streams text[], v_versions bigint[]
) LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(key);
    -- A new statement after the lock: it sees every append committed before.
    RETURN QUERY SELECT h.seq, h.hash,
        CASE WHEN with_queues THEN ARRAY(SELECT q.doc FROM queues AS q) END,
        ARRAY(SELECT j.doc FROM jobs AS j WHERE j.id = ANY(job_ids)),
        ARRAY(SELECT m.doc FROM marks AS m WHERE m.id = ANY(mark_ids)),
        v.streams, v.versions
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL (SELECT e.seq, e.hash FROM events AS e ORDER BY e.seq DESC LIMIT 1) AS h
        ON true
    LEFT JOIN LATERAL (
        SELECT array_agg(g.stream ORDER BY g.stream) AS streams,
               array_agg(g.version ORDER BY g.stream) AS versions
        FROM (SELECT e.stream, max(e.version) AS version FROM events AS e
              WHERE e.stream = ANY(streams) GROUP BY e.stream) AS g
    ) AS v ON true;
END $$
"""
"""The function that takes the append lock, then reads the head and what a
batch asks for (the queues' records, jobs, marks, the streams' last
versions): a write transaction's reads in one round trip."""

APPEND_FUNCTION = """
CREATE OR REPLACE FUNCTION jobledger_append(
    key bigint, expected_seq bigint, expected_hash text,
    e_seq bigint[], e_event_id text[], e_stream text[], e_version bigint[], e_type text[],
    e_time text[], e_actor text[], e_correlation text[], e_causation text[], e_data bytea[],
    e_hash text[],
    deleted_jobs text[],
    j_id text[], j_job_type text[], j_status text[], j_user_id text[], j_tenant text[],
    j_priority bigint[], j_run_at bigint[], j_lease bigint[], j_deadline bigint[],
    j_finished bigint[], j_key text[], j_created bigint[], j_doc bytea[],
    m_id text[], m_resource text[], m_job text[], m_created bigint[], m_doc bytea[],
    deleted_marks text[],
    a_id text[], a_job text[], a_created bigint[], a_doc bytea[],
    r_id text[], r_created bigint[], r_doc bytea[],
    q_name text[], q_doc bytea[],
    checkpoint text, channel text, notice text
) RETURNS text LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT AS $$
DECLARE
    head_seq bigint;
    head_hash text;
BEGIN
    IF expected_seq IS NOT NULL THEN
        -- Written without a read: commit only on the head it was decided on.
        PERFORM pg_advisory_xact_lock(key);
        SELECT e.seq, e.hash INTO head_seq, head_hash FROM events AS e ORDER BY e.seq DESC LIMIT 1;
        IF coalesce(head_seq, 0) <> expected_seq
           OR coalesce(head_hash, repeat('0', 64)) <> expected_hash THEN
            RETURN 'moved';
        END IF;
    END IF;
    BEGIN
        INSERT INTO events SELECT * FROM unnest(e_seq, e_event_id, e_stream, e_version, e_type,
            e_time, e_actor, e_correlation, e_causation, e_data, e_hash);
    EXCEPTION WHEN unique_violation THEN
        IF expected_seq IS NULL THEN
            RAISE;
        END IF;
        RETURN 'taken';  -- a stream taken for new exists
    END;
    DELETE FROM jobs WHERE id = ANY(deleted_jobs);
    INSERT INTO jobs (id, job_type, status, user_id, tenant, priority, run_at_us,
        lease_expires_us, deadline_us, finished_us, idempotency_key, created_seq, doc)
    SELECT * FROM unnest(j_id, j_job_type, j_status, j_user_id, j_tenant, j_priority, j_run_at,
        j_lease, j_deadline, j_finished, j_key, j_created, j_doc)
    ON CONFLICT (id) DO UPDATE SET job_type = EXCLUDED.job_type, status = EXCLUDED.status,
        user_id = EXCLUDED.user_id, tenant = EXCLUDED.tenant, priority = EXCLUDED.priority,
        run_at_us = EXCLUDED.run_at_us, lease_expires_us = EXCLUDED.lease_expires_us,
        deadline_us = EXCLUDED.deadline_us, finished_us = EXCLUDED.finished_us,
        idempotency_key = EXCLUDED.idempotency_key, created_seq = EXCLUDED.created_seq,
        doc = EXCLUDED.doc;
    INSERT INTO marks (id, resource_id, job_id, created_seq, doc)
    SELECT * FROM unnest(m_id, m_resource, m_job, m_created, m_doc)
    ON CONFLICT (id) DO UPDATE SET resource_id = EXCLUDED.resource_id,
        job_id = EXCLUDED.job_id, created_seq = EXCLUDED.created_seq, doc = EXCLUDED.doc;
    DELETE FROM marks WHERE id = ANY(deleted_marks);
    INSERT INTO assets (id, job_id, created_seq, doc)
    SELECT * FROM unnest(a_id, a_job, a_created, a_doc);
    INSERT INTO resources (id, created_seq, doc) SELECT * FROM unnest(r_id, r_created, r_doc);
    INSERT INTO queues (name, doc) SELECT * FROM unnest(q_name, q_doc)
    ON CONFLICT (name) DO UPDATE SET doc = EXCLUDED.doc;
    UPDATE meta SET value = checkpoint WHERE meta.key = 'checkpoint';
    PERFORM pg_notify(channel, notice);
    RETURN 'ok';
END $$
"""
"""One batch's append in one statement: the lock and the head's check (when
written without a read), the events, the read model's rows, the checkpoint
and the notice. Outside a transaction it is one round trip and one commit."""


class _PostgresWriter(_Transaction):
    """One write transaction on the write connection. It begins (the append
    lock, then the head) with its first read; ``append`` stages its
    statements, which run at ``commit``."""

    STATEMENTS = Statements(
        insert_event=_INSERT_EVENT,
        delete_job="DELETE FROM jobs WHERE id = $1",
        upsert_job=_UPSERT_JOB,
        upsert_mark=_UPSERT_MARK,
        delete_mark="DELETE FROM marks WHERE id = $1",
        insert_asset=_INSERT_ASSET,
        insert_resource=_INSERT_RESOURCE,
        upsert_queue=_UPSERT_QUEUE,
        set_checkpoint=_SET_CHECKPOINT,
    )

    def __init__(self, conn: Any, append_key: int, channel: str) -> None:
        super().__init__()
        self._conn = conn
        self._key = append_key
        self._channel = channel
        self._tx: Any = None
        self._work: list[tuple[str, Sequence[tuple[Any, ...]]]] = []
        self._staged = 0
        self.first_event_id: str | None = None  # to tell, after a lost connection, if it landed
        self._batch: tuple[Sequence[Record], Changes] | None = None  # the one append, if one
        self._appends = 0
        self._ran = False  # staged work already ran (a large write): no one-statement path
        # What the commit's notice tells other processes (see ``notice``).
        self._previous: int | None = None
        self._last_hash = ""
        self._streams: set[str] = set()
        self._queues_changed = False
        self.server_pid: int | None = conn.get_server_pid() if conn is not None else None

    async def _begin(self) -> Head:
        """Begin, take the append lock and read the head (once)."""
        if self._head is None:
            await self._read(False, (), (), ())
        assert self._head is not None
        return self._head

    async def _read(
        self,
        with_queues: bool,
        job_ids: Sequence[str],
        mark_ids: Sequence[str],
        streams: Sequence[str],
    ) -> Any:
        """Begin and take the append lock if not yet done, and read the head
        (the first time), the queues' documents (``with_queues``), the jobs'
        and marks' documents and the streams' last versions, in one round
        trip (``jobledger_load``). The row it answers."""
        first = self._head is None
        if first:
            self._tx = self._conn.transaction()
            await self._tx.start()
        row = await self._conn.fetchrow(
            _CALL_LOAD, self._key, with_queues, list(job_ids), list(mark_ids), list(streams)
        )
        if first:
            self._head = _head_of(None if row[0] is None else (row[0], row[1]))
        return row

    async def head(self) -> Head:
        return await self._begin()

    async def load(
        self,
        job_ids: Sequence[str] = (),
        mark_ids: Sequence[str] = (),
        streams: Sequence[str] = (),
        keys: Sequence[Scope] = (),
        queues: Sequence[str] | None = None,
    ) -> Loaded:
        row = await self._read(queues is not None, job_ids, mark_ids, streams)
        head = self._head
        assert head is not None
        conn = self._conn
        by_key = SELECT_BY_KEY.replace("?", "$1", 1).replace("?", "$2", 1).replace("?", "$3", 1)
        holders: dict[Scope, Any] = {}
        for key in keys:
            holder = await conn.fetchrow(by_key, *key)
            if holder is not None:
                holders[key] = _decode_job(holder[0])
        saved = running = None
        if queues is not None:
            saved = row[2]
            running = [r[0] for r in await conn.fetch(SELECT_RUNNING)] if queues else []
        jobs = [_decode_job(doc) for doc in row[3]]
        marks = [_decode_mark(doc) for doc in row[4]]
        return Loaded(
            head=head,
            jobs={j.id: j for j in jobs},
            marks={m.id: m for m in marks},
            versions=dict(zip(row[5] or (), row[6] or (), strict=True)),
            holders=holders,
            queues=_book(saved, running, queues),
        )

    def notice(self) -> str:
        """The commit's notice on the schema's channel: a :class:`Notice`
        (JSON) for appends, so that another process's writer that knew the
        log up to ``previous`` knows it up to the new head without reading;
        the bare ``seq`` when the read model was replaced (an import, a
        rebuild), which tells only that something changed."""
        seq = self.committed_seq
        assert seq is not None
        if self._replaced or self._previous is None:
            return str(seq)
        streams: list[str] | None = sorted(self._streams)
        if len(self._streams) > _NOTICE_STREAMS or sum(map(len, self._streams)) > _NOTICE_TEXT:
            streams = None  # too many to name (a notice holds at most 8000 bytes)
        notice = Notice(seq, self._last_hash, self._previous, self._queues_changed, streams)
        return msgspec.json.encode(notice).decode()

    def _stage(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Run ``sql`` for each of ``rows`` (``[()]``: once, with no
        parameters) at commit, in staging order."""
        if rows:
            self._work.append((sql, rows))
            self._staged += len(rows)

    async def _run(self) -> None:
        work, self._work, self._staged = self._work, [], 0
        self._ran = self._ran or bool(work)
        for sql, rows in work:
            if rows == [()]:
                await self._conn.execute(sql)
            else:
                await self._conn.executemany(sql, rows)

    async def append(self, records: Sequence[Record], changes: Changes) -> None:
        if not records:
            return
        await self._check_follows(records)
        if self.first_event_id is None:
            self.first_event_id = records[0].envelope.event_id
            self._previous = records[0].envelope.seq - 1
        self._last_hash = records[-1].envelope.hash
        self._streams.update(record.envelope.stream for record in records)
        self._queues_changed = self._queues_changed or bool(changes.queues)
        self._appends += 1
        self._batch = (records, changes) if self._appends == 1 else None
        self._stage_append(records, changes)
        if self._staged >= _FLUSH_ROWS and self._head is not None:
            await self._run()  # a very large write (an import) runs as it goes, in one transaction

    async def commit(self, faults: Faults | None, unique_violation: type[Exception]) -> None:
        """Run what is staged and commit, telling other processes of the new
        head (``pg_notify``, delivered at commit). With ``expect`` (nothing
        read), the head must still be the one expected and no stream taken
        for new may exist: otherwise ``StaleWrite``, nothing written."""
        if self._batch is not None and not (self._replaced or self._ran) and faults is None:
            try:
                await self._append_at_once(*self._batch)
            except unique_violation as exc:  # (read first, yet taken for new by expect())
                if self.expected is None:
                    raise
                raise StaleWrite(f"a stream taken for new exists: {exc}") from exc
            return
        if self._head is None:
            if not self._work:
                return  # nothing was read or written
            head = await self._begin()
            if self.expected is not None and head != self.expected:
                raise StaleWrite("the head moved")
        wrote = self._ran or bool(self._work)  # (one that only read inserts nothing)
        try:
            await self._run()
        except unique_violation as exc:
            if self.expected is None:
                raise
            raise StaleWrite(f"a stream taken for new exists: {exc}") from exc
        if faults is not None and wrote:
            faults.reach("store.after_insert")
        seq = self.committed_seq
        if seq is not None:
            await self._conn.execute("SELECT pg_notify($1, $2)", self._channel, self.notice())
        await self._tx.commit()
        self._tx = None

    async def _append_at_once(self, records: Sequence[Record], changes: Changes) -> None:
        """The batch in one statement (``jobledger_append``): alone, when
        nothing was read (one round trip, its own transaction, the head
        checked under the lock); else inside the transaction, then commit.
        (With crash points armed, the statement by statement way runs, so
        that ``store.after_insert`` falls between the inserts and COMMIT.)"""
        expected = self.expected if self._head is None else None
        seq = self.committed_seq
        assert seq is not None
        events = _columns([event_row(r) for r in records], 11)
        jobs = _columns([job_row(j) for j in last_of_each(changes.jobs)], 13)
        marks = _columns([mark_row(m) for m in last_of_each(changes.marks)], 5)
        assets = _columns([asset_row(a) for a in changes.assets], 4)
        resources = _columns([resource_row(r) for r in changes.resources], 3)
        queues = _columns([queue_row(q) for q in last_of_each(changes.queues, "name")], 2)
        outcome = await self._conn.fetchval(
            _CALL_APPEND,
            self._key,
            None if expected is None else expected.seq,
            None if expected is None else expected.hash,
            *events,
            list(changes.deleted_jobs),
            *jobs,
            *marks,
            list(changes.deleted_marks),
            *assets,
            *resources,
            *queues,
            str(seq),
            self._channel,
            self.notice(),
        )
        if outcome == "moved":
            raise StaleWrite("the head moved")
        if outcome == "taken":
            raise StaleWrite("a stream taken for new exists")
        if self._tx is not None:
            await self._tx.commit()
            self._tx = None

    async def rollback(self) -> None:
        """Roll back, if a transaction was begun and is still open."""
        tx, self._tx = self._tx, None
        if tx is not None:
            await tx.rollback()


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as ``width`` columns (the arrays a ``jobledger_append`` takes)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


_CALL_LOAD = "SELECT * FROM jobledger_load($1, $2, $3::text[], $4::text[], $5::text[])"
_CALL_APPEND = "SELECT jobledger_append({})".format(", ".join(f"${i}" for i in range(1, 47)))
