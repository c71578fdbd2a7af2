"""The SQLite writer: the one write connection on a thread of its own, the
table of connections this process owns (``_OWNED``), and one write
transaction (:class:`_SqliteWriter`: begin with the first read, stage, commit).
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from jobledger.core import (
    StorageError,
    get_logger,
)
from jobledger.core.faults import Faults

from .protocol import Changes, Head, Loaded, Record, Scope, StaleWrite
from .sqlite_decode import _decode_job, _decode_mark, _head_of
from .sqlite_watch import notify
from .writing import SELECT_RUNNING, Statements, _book, _Transaction

__all__: list[str] = []

log = get_logger("store")

_INSERT_EVENT = (
    "INSERT INTO events (seq, event_id, stream, version, type, time, actor,"
    " correlation_id, causation_id, data, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)
_UPSERT_JOB = (
    "INSERT OR REPLACE INTO jobs (id, job_type, status, user_id, tenant, priority, run_at_us,"
    " lease_expires_us, deadline_us, finished_us, idempotency_key, created_seq, doc)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_SELECT_BY_KEY = (
    "SELECT doc FROM jobs WHERE user_id = ? AND ifnull(tenant, '') = ifnull(?, '')"
    " AND idempotency_key = ?"
)
_INSERT_ASSET = "INSERT INTO assets (id, job_id, created_seq, doc) VALUES (?,?,?,?)"
_INSERT_RESOURCE = "INSERT INTO resources (id, created_seq, doc) VALUES (?,?,?)"
_UPSERT_MARK = (
    "INSERT OR REPLACE INTO marks (id, resource_id, job_id, created_seq, doc) VALUES (?,?,?,?,?)"
)

T = TypeVar("T")

_SELECT_HEAD = "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"

_OWNED: set[object] = set()
"""Every connection this module opened and its process has not closed. A
child made by ``fork`` inherits the table with the parent's connections in
it: there they stay, unused and never closed (so never finalized), until the
child ends; only the process that opened a connection closes it and takes it
out (``SqliteLog.close``)."""


_forks = [0]
"""How many times this process's line was forked: a child counts one more
than its parent had (``os.register_at_fork``), so a log can tell that it
was opened in another process without a system call on every use."""


def _count_fork() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_count_fork)


def fork_generation() -> int:
    """The number of forks this process's line has been through."""
    return _forks[0]


_SET_CHECKPOINT = "UPDATE meta SET value = ? WHERE key = 'checkpoint'"
_FLUSH_ROWS = 20_000  # staged rows beyond which a write runs before its commit


class _WriteConnection:
    """The one write connection, on a thread of its own: ``call(fn)`` runs
    ``fn(connection)`` there, as one hop."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobledger-writer")
        self._conn: sqlite3.Connection | None = None

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise StorageError("the log is not open")
        return fn(self._conn)

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, fn)

    async def open(self, path: str, busy_ms: int, synchronous: str, wal_limit: int) -> None:
        def connect() -> None:
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {synchronous}")
                conn.execute(f"PRAGMA journal_size_limit = {wal_limit}")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            _OWNED.add(conn)

        await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    async def close(self, then: Callable[[], None] | None = None) -> None:
        """Checkpoint the WAL and truncate it if no other connection is reading
        (without waiting for one), close the connection and end the thread,
        even if cancelled while waiting. ``then`` runs on the thread last,
        after any work in flight (a commit's notice writes to a file that
        must stay open until then)."""

        def close() -> None:
            try:
                if self._conn is not None:
                    try:
                        _truncate_wal(self._conn)
                    finally:
                        self._conn.close()
                        _OWNED.discard(self._conn)
                        self._conn = None
            finally:
                if then is not None:
                    then()

        done = self._executor.submit(close)  # queued after any work in flight
        self._executor.shutdown(wait=False)
        await asyncio.wrap_future(done)


def _truncate_wal(conn: sqlite3.Connection) -> None:
    """``wal_checkpoint(TRUNCATE)`` without waiting: where another connection
    is reading, or the disk fails, the WAL stays as it is (a later checkpoint
    takes it); that is logged, not raised."""
    try:
        (busy_ms,) = conn.execute("PRAGMA busy_timeout").fetchone()
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            busy, frames, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
    except sqlite3.Error as exc:
        log.warning("checkpoint on close failed; the WAL stays", error=str(exc))
        return
    if busy:
        log.info("WAL not truncated on close: another connection is reading", frames=frames)


def _head(conn: sqlite3.Connection) -> Head:
    row = conn.execute(_SELECT_HEAD).fetchone()
    return _head_of(row)


def _run(
    work: Sequence[tuple[str, Sequence[Any]]], expected: Head | None, conn: sqlite3.Connection
) -> None:
    """Run staged statements in the transaction, beginning it first if nothing
    was read. With ``expected`` (nothing was read), the head must still be it
    and no insert may collide, or nothing is written and ``StaleWrite`` is
    raised."""
    if not conn.in_transaction:
        if not work:
            return  # nothing was read or written
        conn.execute("BEGIN IMMEDIATE")
        if expected is not None and _head(conn) != expected:
            conn.execute("ROLLBACK")
            raise StaleWrite("the head moved")
    try:
        for sql, rows in work:
            conn.executemany(sql, rows)
    except sqlite3.IntegrityError as exc:
        if expected is None:
            raise
        conn.execute("ROLLBACK")
        raise StaleWrite(f"a stream taken for new exists: {exc}") from exc


def _commit(
    work: Sequence[tuple[str, Sequence[Any]]],
    expected: Head | None,
    faults: Faults | None,
    notify_fd: int | None,
    conn: sqlite3.Connection,
) -> None:
    """Run what is still staged, then COMMIT (if a transaction was begun),
    then tell other processes through ``notify_fd`` (given when the
    transaction writes something)."""
    _run(work, expected, conn)
    if faults is not None:
        faults.reach("store.after_insert")
    if conn.in_transaction:
        conn.execute("COMMIT")
        notify(notify_fd)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _rows_in(conn: sqlite3.Connection, sql: str, ids: Sequence[str]) -> list[Any]:
    # ``sql`` has one ``{}`` for the placeholders; ids go in chunks under
    # SQLite's limit on host parameters.
    rows: list[Any] = []
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        rows.extend(conn.execute(sql.format(",".join("?" * len(chunk))), chunk).fetchall())
    return rows


class _SqliteWriter(_Transaction):
    """One write transaction. It begins (``BEGIN IMMEDIATE``) with its first
    read, in the same hop; ``append`` stages its statements, which run with
    ``COMMIT`` when the transaction ends."""

    STATEMENTS = Statements(
        insert_event=_INSERT_EVENT,
        delete_job="DELETE FROM jobs WHERE id = ?",
        upsert_job=_UPSERT_JOB,
        upsert_mark=_UPSERT_MARK,
        delete_mark="DELETE FROM marks WHERE id = ?",
        insert_asset=_INSERT_ASSET,
        insert_resource=_INSERT_RESOURCE,
        upsert_queue="INSERT OR REPLACE INTO queues (name, doc) VALUES (?,?)",
        set_checkpoint=_SET_CHECKPOINT,
    )

    def __init__(self, conn: _WriteConnection) -> None:
        super().__init__()
        self._conn = conn
        self.work: list[tuple[str, Sequence[Any]]] = []
        self._staged = 0

    def _begun(self, conn: sqlite3.Connection) -> Head:
        if self._head is None:
            conn.execute("BEGIN IMMEDIATE")
            self._head = _head(conn)
        return self._head

    async def head(self) -> Head:
        if self._head is not None:
            return self._head
        return await self._conn.call(self._begun)

    async def load(
        self,
        job_ids: Sequence[str] = (),
        mark_ids: Sequence[str] = (),
        streams: Sequence[str] = (),
        keys: Sequence[Scope] = (),
        queues: Sequence[str] | None = None,
    ) -> Loaded:
        def load(conn: sqlite3.Connection) -> tuple[Any, ...]:
            head = self._begun(conn)
            saved = running = None
            if queues is not None:
                saved = [doc for (doc,) in conn.execute("SELECT doc FROM queues")]
                running = [doc for (doc,) in conn.execute(SELECT_RUNNING)] if queues else []
            return (
                head,
                _rows_in(conn, "SELECT doc FROM jobs WHERE id IN ({})", job_ids),
                _rows_in(conn, "SELECT doc FROM marks WHERE id IN ({})", mark_ids),
                _rows_in(
                    conn,
                    "SELECT stream, max(version) FROM events WHERE stream IN ({}) GROUP BY stream",
                    streams,
                ),
                [(k, doc) for k in keys for (doc,) in conn.execute(_SELECT_BY_KEY, k)],
                saved,
                running,
            )

        head, job_rows, mark_rows, version_rows, key_rows, saved, running = await self._conn.call(
            load
        )
        jobs = [_decode_job(doc) for (doc,) in job_rows]
        marks = [_decode_mark(doc) for (doc,) in mark_rows]
        return Loaded(
            head=head,
            jobs={j.id: j for j in jobs},
            marks={m.id: m for m in marks},
            versions={stream: version for stream, version in version_rows},
            holders={k: _decode_job(doc) for k, doc in key_rows},
            queues=_book(saved, running, queues),
        )

    def _stage(self, sql: str, rows: Sequence[Any]) -> None:
        """Run ``sql`` for each of ``rows`` at commit, in staging order."""
        if rows:
            self.work.append((sql, rows))
            self._staged += len(rows)

    async def _flush_if_large(self) -> None:
        # A very large write (an import) runs as it goes, still in one transaction.
        if self._staged >= _FLUSH_ROWS:
            work, self.work, self._staged = self.work, [], 0
            await self._conn.call(functools.partial(_run, work, self.expected))

    async def append(self, records: Sequence[Record], changes: Changes) -> None:
        if not records:
            return
        await self._check_follows(records)
        self._stage_append(records, changes)
        await self._flush_if_large()
