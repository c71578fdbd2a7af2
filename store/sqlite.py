"""The SQLite event log, through aiosqlite.

Two connections: one writer, one reader. The writer runs every transaction
as ``BEGIN IMMEDIATE`` (a deferred BEGIN that reads and then writes fails
with SQLITE_BUSY_SNAPSHOT under concurrency) and writes a whole batch with
``executemany``; the reader (``query_only``, through aiosqlite) never sees
an uncommitted write, because in WAL mode it reads the last committed
snapshot.

The writer is not an aiosqlite connection: aiosqlite runs one statement per
await, each a thread hop (~100 µs and a loop wake-up), and a batch took
eight of them. The write connection lives on a thread of its own instead,
and each unit of work is one function run there: ``BEGIN IMMEDIATE`` with
the read of the head is one hop; every statement of the batch, the
checkpoint and ``COMMIT`` is another; loading what the cache lacks adds one.

Settings: WAL, ``synchronous=FULL`` by default (``NORMAL`` is an opt-in that
may lose the last commits on power loss but never corrupts), a busy timeout,
and a ``journal_size_limit``: once a checkpoint has let the WAL start over,
the file is cut back to ``wal_size_limit`` bytes (a long reader can make it
grow past that meanwhile). ``close`` checkpoints the WAL and truncates it
(``wal_checkpoint(TRUNCATE)``) unless another connection is reading.

Connections are not carried across ``fork``: a log belongs to the process
that opened it, and a process that finds itself forked (its pid is not the
log's) opens its own. It never uses the parent's connections (a call raises
``StorageError``) nor closes them (SQLite forbids both: closing may
checkpoint and delete the WAL under the parent). They stay in ``_OWNED``,
this module's table of the connections it opened, which only the process
that opened a connection takes it out of.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosqlite
import msgspec

from jobledger.core import (
    GENESIS_HASH,
    Asset,
    CorruptionError,
    Envelope,
    Job,
    JobStatus,
    Mark,
    Projection,
    Resource,
    StorageError,
    decode_event,
    get_logger,
)
from jobledger.core.faults import Faults

from .protocol import TABLES, Changes, Head, Loaded, RawText, RawValue, Record, Scope, StaleWrite
from .rows import asset_row, event_row, job_row, mark_row, micros, resource_row

__all__ = ["NETWORK_FILESYSTEMS", "SCHEMA_VERSION", "WAL_SIZE_LIMIT", "SqliteLog", "filesystem_of"]

log = get_logger("store")

SCHEMA_VERSION = 3
"""The schema this code writes. Older files are migrated on open (from 2 to 3:
the read model is rebuilt from the log, once)."""

WAL_SIZE_LIMIT = 8 * 1024 * 1024
"""Bytes to which the WAL file is cut back when it starts over after a
checkpoint (SQLite's ``journal_size_limit``)."""

# Each step takes the schema from version i to i+1. Never edit a released
# step: add a new one.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        seq            INTEGER PRIMARY KEY,
        event_id       TEXT    NOT NULL UNIQUE,
        stream         TEXT    NOT NULL,
        version        INTEGER NOT NULL,
        type           TEXT    NOT NULL,
        time           TEXT    NOT NULL,
        actor          TEXT    NOT NULL,
        correlation_id TEXT,
        causation_id   TEXT,
        data           BLOB    NOT NULL,
        hash           TEXT    NOT NULL,
        UNIQUE (stream, version)
    );
    CREATE TABLE jobs (
        id               TEXT    PRIMARY KEY,
        job_type         TEXT    NOT NULL,
        status           TEXT    NOT NULL,
        user_id          TEXT    NOT NULL,
        tenant           TEXT,
        priority         INTEGER NOT NULL,
        run_at_us        INTEGER,
        lease_expires_us INTEGER,
        deadline_us      INTEGER,
        finished_us      INTEGER,
        idempotency_key  TEXT,
        created_seq      INTEGER NOT NULL,
        doc              BLOB    NOT NULL
    );
    CREATE INDEX jobs_pending ON jobs (job_type, priority DESC, created_seq)
        WHERE status = 'pending';
    CREATE INDEX jobs_user ON jobs (user_id, created_seq);
    CREATE INDEX jobs_created ON jobs (created_seq);
    CREATE INDEX jobs_lease ON jobs (lease_expires_us) WHERE status = 'running';
    CREATE INDEX jobs_deadline ON jobs (deadline_us)
        WHERE status = 'running' AND deadline_us IS NOT NULL;
    CREATE INDEX jobs_finished ON jobs (finished_us) WHERE finished_us IS NOT NULL;
    CREATE UNIQUE INDEX jobs_key ON jobs (user_id, ifnull(tenant, ''), idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE TABLE assets (
        id          TEXT    PRIMARY KEY,
        job_id      TEXT    NOT NULL,
        created_seq INTEGER NOT NULL,
        doc         BLOB    NOT NULL
    );
    CREATE INDEX assets_job ON assets (job_id, created_seq);
    CREATE TABLE marks (
        id          TEXT    PRIMARY KEY,
        resource_id TEXT    NOT NULL,
        job_id      TEXT,
        created_seq INTEGER NOT NULL,
        doc         BLOB    NOT NULL
    );
    CREATE INDEX marks_resource ON marks (resource_id, created_seq);
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('checkpoint', '0');
    """,
    """
    CREATE TABLE resources (
        id          TEXT    PRIMARY KEY,
        created_seq INTEGER NOT NULL,
        doc         BLOB    NOT NULL
    );
    CREATE INDEX resources_created ON resources (created_seq);
    """,
    # 3: jobs keep their recoveries and what caused their lease and their stop
    # request (issue 13); the rows written before lack them, so the read model
    # is rebuilt from the log when the file is first opened.
    """
    UPDATE meta SET value = '0' WHERE key = 'checkpoint';
    """,
)

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
_SELECT_FOLD = "SELECT seq, event_id, stream, version, type, time, actor, data FROM events"
_SELECT_EVENTS = (
    "SELECT seq, event_id, stream, version, type, time, actor, correlation_id,"
    " causation_id, data, hash FROM events"
)

_job_decoder = msgspec.json.Decoder(Job)
_mark_decoder = msgspec.json.Decoder(Mark)
_asset_decoder = msgspec.json.Decoder(Asset)
_resource_decoder = msgspec.json.Decoder(Resource)


_DAMAGED = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB

NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs",
     "fuse.glusterfs", "fuse.sshfs", "fuse.s3fs", "lustre", "gpfs"}
)  # fmt: skip
"""File systems on which SQLite's locks and WAL's shared memory are not to be trusted."""


def filesystem_of(path: str | Path, mounts: str | None = None) -> str | None:
    """The type of the file system holding ``path`` (from ``/proc/self/mounts``,
    or ``mounts`` given as its text); ``None`` where that cannot be told."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return None
    target = Path(path).resolve().parent if Path(path).name else Path(path).resolve()
    best, fstype = -1, None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (target == Path(point) or Path(point) in target.parents) and len(point) > best:
            best, fstype = len(point), fields[2]
    return fstype


def _storage_error(exc: sqlite3.Error, message: str) -> StorageError:
    """Our error for an sqlite3 one: ``CorruptionError`` when SQLite says the
    file is damaged or not a database, ``StorageError`` otherwise."""
    if getattr(exc, "sqlite_errorcode", None) in _DAMAGED or "decode to UTF-8" in str(exc):
        return CorruptionError(message)  # (the second: a stored text that is not UTF-8)
    return StorageError(message)


def _envelope(row: Sequence[Any]) -> Envelope:
    try:
        return Envelope(
            seq=row[0],
            event_id=row[1],
            stream=row[2],
            version=row[3],
            type=row[4],
            time=datetime.fromisoformat(row[5]),
            actor=row[6],
            correlation_id=row[7],
            causation_id=row[8],
            data=decode_event(row[9]),
            hash=row[10],
        )
    except (msgspec.DecodeError, ValueError, TypeError) as exc:
        raise CorruptionError(f"event at seq {row[0]} does not decode: {exc}") from exc


def _record(row: Sequence[Any]) -> Record:
    return Record(_envelope(row), bytes(row[9]))


def _decode_job(doc: bytes) -> Job:
    try:
        return _job_decoder.decode(doc)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise CorruptionError(f"job row does not decode: {exc}") from exc


def _decode_mark(doc: bytes) -> Mark:
    try:
        return _mark_decoder.decode(doc)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise CorruptionError(f"mark row does not decode: {exc}") from exc


def _decode_resource(doc: bytes) -> Resource:
    try:
        return _resource_decoder.decode(doc)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise CorruptionError(f"resource row does not decode: {exc}") from exc


def _decode_asset(doc: bytes) -> Asset:
    try:
        return _asset_decoder.decode(doc)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise CorruptionError(f"asset row does not decode: {exc}") from exc


T = TypeVar("T")

_SELECT_HEAD = "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
_SELECT_SCHEMA = "SELECT type, name, tbl_name, sql FROM sqlite_master"


def _raw_value(value: Any, is_text: Any) -> RawValue:
    """A stored value as ``raw_rows`` yields it: a text (read as its bytes)
    decoded, or kept as :class:`RawText` when it is not UTF-8."""
    if not is_text:
        return value  # type: ignore[no-any-return]
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return RawText(value)


@functools.cache
def _made_schema() -> frozenset[tuple[str, str, str, str]]:
    """Every table and index the migrations make, as ``sqlite_master`` lists them."""
    conn = sqlite3.connect(":memory:")
    try:
        for step in _MIGRATIONS:
            for statement in step.split(";"):
                if statement.strip():
                    conn.execute(statement)
        return frozenset(_schema_entry(row) for row in conn.execute(_SELECT_SCHEMA))
    finally:
        conn.close()


def _schema_entry(row: Sequence[Any]) -> tuple[str, str, str, str]:
    kind, name, table, sql = (str(v) if v is not None else "" for v in row)
    return (kind, name, table, " ".join(sql.split()))


def _schema_findings(rows: Sequence[Sequence[Any]]) -> list[str]:
    """What differs between the file's schema and the one the migrations make:
    a table or index of ours missing or defined otherwise (dropped
    constraints, other columns), or an index or trigger added to one of our
    tables. Tables of the application's own are let be."""
    made = _made_schema()
    ours = {table for _, _, table, _ in made}
    found = {_schema_entry(row) for row in rows}
    findings = [
        f"{kind} {name!r} is not as this jobledger made it (or is missing)"
        for kind, name, _, _ in sorted(made - found)
    ]
    findings += [
        f"{kind} {name!r} on table {table!r} was not made by this jobledger"
        for kind, name, table, _ in sorted(found - made)
        if table in ours and (kind, name) not in {(k, n) for k, n, _, _ in made}
    ]
    return findings


_OWNED: set[object] = set()
"""Every connection this module opened and its process has not closed. A
child made by ``fork`` inherits the table with the parent's connections in
it: there they stay, unused and never closed (so never finalized), until the
child ends; only the process that opened a connection closes it and takes it
out (``SqliteLog.close``)."""


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

    async def close(self) -> None:
        """Checkpoint the WAL and truncate it if no other connection is reading
        (without waiting for one), close the connection and end the thread,
        even if cancelled while waiting."""

        def close() -> None:
            if self._conn is not None:
                try:
                    _truncate_wal(self._conn)
                finally:
                    self._conn.close()
                    _OWNED.discard(self._conn)
                    self._conn = None

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


def _head_of(row: Sequence[Any] | None) -> Head:
    """The head from its row (``None``: an empty log); a row of the wrong
    types (damage SQLite's dynamic typing lets through) is ``CorruptionError``."""
    if row is None:
        return Head(0, GENESIS_HASH)
    seq, digest = row
    if not isinstance(seq, int) or not isinstance(digest, str):
        raise CorruptionError(f"the log's last entry is damaged: seq {seq!r}, hash {digest!r}")
    return Head(seq, digest)


def _checkpoint_of(value: Any) -> int:
    """The read model's checkpoint from its stored text (0 if there is none)."""
    if value is None:
        return 0
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise CorruptionError(f"the read model's checkpoint is damaged: {value!r}") from exc


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
    conn: sqlite3.Connection,
) -> None:
    """Run what is still staged, then COMMIT (if a transaction was begun)."""
    _run(work, expected, conn)
    if faults is not None:
        faults.reach("store.after_insert")
    if conn.in_transaction:
        conn.execute("COMMIT")


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


class _SqliteWriter:
    """One write transaction. It begins (``BEGIN IMMEDIATE``) with its first
    read, in the same hop; ``append`` stages its statements, which run with
    ``COMMIT`` when the transaction ends."""

    def __init__(self, conn: _WriteConnection) -> None:
        self._conn = conn
        self._head: Head | None = None
        self.expected: Head | None = None
        self.work: list[tuple[str, Sequence[Any]]] = []
        self._staged = 0

    def expect(self, head: Head) -> None:
        if self._head is not None:
            raise RuntimeError("expect() comes before any read")
        self.expected = head

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
    ) -> Loaded:
        def load(conn: sqlite3.Connection) -> tuple[Head, list[Any], list[Any], list[Any], Any]:
            head = self._begun(conn)
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
            )

        head, job_rows, mark_rows, version_rows, key_rows = await self._conn.call(load)
        jobs = [_decode_job(doc) for (doc,) in job_rows]
        marks = [_decode_mark(doc) for (doc,) in mark_rows]
        return Loaded(
            head=head,
            jobs={j.id: j for j in jobs},
            marks={m.id: m for m in marks},
            versions={stream: version for stream, version in version_rows},
            holders={k: _decode_job(doc) for k, doc in key_rows},
        )

    def stage(self, sql: str, rows: Sequence[Any]) -> None:
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
        self.stage(_INSERT_EVENT, [event_row(record) for record in records])
        self.stage("DELETE FROM jobs WHERE id = ?", [(j,) for j in changes.deleted_jobs])
        self.stage(_UPSERT_JOB, [job_row(j) for j in changes.jobs])
        self.stage(_UPSERT_MARK, [mark_row(m) for m in changes.marks])
        self.stage("DELETE FROM marks WHERE id = ?", [(m,) for m in changes.deleted_marks])
        self.stage(_INSERT_ASSET, [asset_row(a) for a in changes.assets])
        self.stage(_INSERT_RESOURCE, [resource_row(r) for r in changes.resources])
        self.stage(_SET_CHECKPOINT, [(str(records[-1].envelope.seq),)])
        await self._flush_if_large()


class SqliteLog:
    """An :class:`~jobledger.store.EventLog` in one SQLite file.

    ``synchronous`` is ``"FULL"`` (default: every acknowledged commit survives
    power loss) or ``"NORMAL"`` (faster; the last commits may be lost on power
    loss, the file is never corrupted). ``busy_timeout`` is in seconds.
    ``wal_size_limit`` is the size in bytes the WAL file is cut back to once
    a checkpoint lets it start over. ``faults`` (tests only) is reached at
    ``store.after_insert`` (:mod:`jobledger.core.faults`).

    An open log belongs to the process that opened it: in a child made by
    ``fork`` every call raises ``StorageError`` and ``close`` leaves the
    parent's connections alone (never used, never closed there); the child
    opens its own log.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout: float = 10.0,
        read_chunk: int = 5000,
        wal_size_limit: int = WAL_SIZE_LIMIT,
        faults: Faults | None = None,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be 'FULL' or 'NORMAL'")
        self._path = str(path)
        self._synchronous = synchronous
        self._busy_ms = int(busy_timeout * 1000)
        self._read_chunk = read_chunk
        self._wal_limit = int(wal_size_limit)
        self._faults = faults
        self._writer: _WriteConnection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._pid = os.getpid()  # the process whose connections these are

    @property
    def path(self) -> str:
        return self._path

    # -- lifecycle -------------------------------------------------------

    async def _connect(self) -> aiosqlite.Connection:
        """A read-only aiosqlite connection."""
        conn = await aiosqlite.connect(
            self._path, isolation_level=None, iter_chunk_size=self._read_chunk
        )
        try:
            await conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            await conn.execute("PRAGMA query_only = 1")
        except BaseException:
            # An unclosed aiosqlite connection keeps its thread, and the process, alive.
            await conn.close()
            raise
        _OWNED.add(conn)
        return conn

    async def open(self) -> None:
        """Open the file, migrate its schema, and catch the read model up to the head.

        Raises ``StorageError`` if the file cannot be opened or was written by
        a newer jobledger (``CorruptionError`` if it is damaged), and then
        leaves nothing open.
        """
        if self._writer is not None:
            return
        self._warn_if_networked()
        self._pid = os.getpid()
        try:
            self._writer = _WriteConnection()
            await self._writer.open(self._path, self._busy_ms, self._synchronous, self._wal_limit)
            await self._writer.call(self._migrate)
            self._reader = await self._connect()
            await self._catch_up()
        except sqlite3.Error as exc:
            await self.close()
            raise _storage_error(exc, f"cannot open {self._path}: {exc}") from exc
        except UnicodeDecodeError as exc:  # damaged text in the file (its schema, say)
            await self.close()
            raise CorruptionError(f"cannot open {self._path}: {exc}") from exc
        except BaseException:
            # Whatever failed, no connection (and no thread) is left behind.
            await self.close()
            raise

    def _warn_if_networked(self) -> None:
        if self._path == ":memory:":
            return
        fstype = filesystem_of(self._path)
        if fstype in NETWORK_FILESYSTEMS:
            log.warning(
                "the log is on a network file system: SQLite's locking and WAL are not "
                "safe there; keep it on a local disk",
                path=self._path,
                filesystem=fstype,
            )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"{self._path} has schema {version}; this jobledger knows up to "
                    f"{SCHEMA_VERSION}: upgrade jobledger"
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[step].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                log.info("schema migrated", path=self._path, to_version=step + 1)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def _catch_up(self) -> None:
        """Fold log entries past the read model's checkpoint (a file written by a
        crashed older version, or a read model deleted by hand)."""
        # One statement, one snapshot: read apart, another process's commit
        # could fall between the two and look like a checkpoint past the head.
        (seq, digest, value), *_ = await self._fetchall(
            "SELECT (SELECT seq FROM events ORDER BY seq DESC LIMIT 1),"
            " (SELECT hash FROM events ORDER BY seq DESC LIMIT 1),"
            " (SELECT value FROM meta WHERE key = 'checkpoint')"
        )
        head = _head_of(None if seq is None else (seq, digest))
        try:
            checkpoint = _checkpoint_of(value)
        except CorruptionError:
            # Left as it is, for verify to report (a rebuild would hide it).
            log.warning("the read model's checkpoint is damaged; verify names it", value=value)
            return
        if checkpoint == head.seq:
            return
        if checkpoint > head.seq:
            raise CorruptionError(
                f"read model checkpoint {checkpoint} is past the log head {head.seq}"
            )
        log.warning("read model behind the log; rebuilding", checkpoint=checkpoint, head=head.seq)
        try:
            await self.rebuild()
        except CorruptionError as exc:  # a damaged entry: nothing was rebuilt
            log.warning("the read model cannot be rebuilt; verify names why", error=str(exc))

    async def close(self) -> None:
        """Close both connections. Idempotent. Even if cancelled half-way, each
        connection's thread is told to stop, so none keeps the process alive."""
        reader, writer = self._reader, self._writer
        self._reader = self._writer = None
        if self._pid != os.getpid():
            return  # a fork: the parent's connections stay in _OWNED, untouched
        try:
            if reader is not None:
                try:
                    await reader.close()
                except sqlite3.Error as exc:  # pragma: no cover - close failing is rare
                    log.warning("close failed", error=str(exc))
        finally:
            if reader is not None:
                reader.stop()  # a no-op for a closed connection's finished thread
                _OWNED.discard(reader)
            if writer is not None:
                try:
                    await writer.close()
                except sqlite3.Error as exc:  # pragma: no cover - close failing is rare
                    log.warning("close failed", error=str(exc))

    def _conn(self) -> _WriteConnection:
        if self._writer is None:
            raise StorageError("the log is not open")
        self._check_process()
        return self._writer

    def _read_conn(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise StorageError("the log is not open")
        self._check_process()
        return self._reader

    def _check_process(self) -> None:
        if self._pid != os.getpid():
            raise StorageError(
                f"{self._path} was opened in process {self._pid}; this is process "
                f"{os.getpid()} (a fork): open the log again here"
            )

    # -- writing ---------------------------------------------------------

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_SqliteWriter]:
        conn = self._conn()
        async with self._write_lock:
            writer = _SqliteWriter(conn)
            try:
                yield writer
                await conn.call(
                    functools.partial(_commit, writer.work, writer.expected, self._faults)
                )
            except BaseException as exc:
                # The transaction may be gone already (for example, COMMIT failed).
                with contextlib.suppress(sqlite3.Error, StorageError):
                    await asyncio.shield(conn.call(_rollback))
                if isinstance(exc, sqlite3.Error):
                    raise _storage_error(exc, f"write failed and was rolled back: {exc}") from exc
                if isinstance(exc, UnicodeDecodeError):  # a stored text that is not UTF-8
                    raise CorruptionError(f"write failed and was rolled back: {exc}") from exc
                raise

    # -- reading ---------------------------------------------------------

    @asynccontextmanager
    async def frozen(self) -> AsyncIterator[SqliteLog]:
        """A view on its own connection inside one read transaction: WAL gives
        it the snapshot of its first read until it ends."""
        self._read_conn()  # refuse when closed
        try:
            conn = await self._connect()
        except sqlite3.Error as exc:
            raise _storage_error(exc, f"cannot open a view of {self._path}: {exc}") from exc
        view = SqliteLog(self._path, read_chunk=self._read_chunk)
        view._reader = conn
        try:
            await conn.execute("BEGIN")
            await conn.execute_fetchall("SELECT value FROM meta WHERE key = 'checkpoint'")
            yield view
        finally:
            with contextlib.suppress(sqlite3.Error):
                await conn.execute("COMMIT")
            await view.close()

    async def _fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        try:
            return list(await self._read_conn().execute_fetchall(sql, args))
        except UnicodeDecodeError as exc:  # a stored text that is not UTF-8: damaged
            raise CorruptionError(f"read failed: a stored text does not decode: {exc}") from exc
        except sqlite3.Error as exc:
            raise _storage_error(exc, f"read failed: {exc}") from exc

    async def head(self) -> Head:
        rows = await self._fetchall(_SELECT_HEAD)
        return _head_of(rows[0] if rows else None)

    async def checkpoint(self) -> int:
        rows = await self._fetchall("SELECT value FROM meta WHERE key = 'checkpoint'")
        return _checkpoint_of(rows[0][0] if rows else None)

    async def _rows_after(self, after: int, limit: int) -> list[Any]:
        return await self._fetchall(
            f"{_SELECT_EVENTS} WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        )

    async def read(self, after: int = 0, limit: int = 1000) -> list[Envelope]:
        return [_envelope(r) for r in await self._rows_after(after, limit)]

    async def scan(self, after: int = 0, until_seq: int | None = None) -> AsyncIterator[Envelope]:
        async for rows in self._chunks(after, until_seq):
            for row in rows:
                yield _envelope(row)

    async def scan_records(
        self, after: int = 0, until_seq: int | None = None
    ) -> AsyncIterator[Record]:
        async for rows in self._chunks(after, until_seq):
            for row in rows:
                yield _record(row)

    async def replay(
        self, *, until_seq: int | None = None, until: datetime | None = None
    ) -> Projection:
        # The fold reads only what the evolve functions use: no correlation,
        # causation or hash (its envelopes never leave this method).
        model = Projection()
        decode, parse = decode_event, datetime.fromisoformat
        async for rows in self._chunks(0, until_seq, _SELECT_FOLD):
            for seq, event_id, stream, version, type_, time_column, actor, data in rows:
                try:
                    when = parse(time_column)
                    event = decode(data)
                except (msgspec.DecodeError, ValueError, TypeError) as exc:
                    raise CorruptionError(f"event at seq {seq} does not decode: {exc}") from exc
                if until is not None and when > until:
                    return model
                model.apply(
                    Envelope(
                        seq=seq,
                        event_id=event_id,
                        stream=stream,
                        version=version,
                        type=type_,
                        time=when,
                        actor=actor,
                        data=event,
                        hash="",
                    )
                )
        return model

    async def _chunks(
        self, after: int, until_seq: int | None, select: str = _SELECT_EVENTS
    ) -> AsyncIterator[list[Any]]:
        """The rows after ``after`` (up to ``until_seq``) in chunks of ``read_chunk``.
        The next chunk is read on the reader's thread while the caller works
        through the current one."""

        def fetch(last: int) -> asyncio.Future[list[Any]] | None:
            limit = self._read_chunk
            if until_seq is not None:
                limit = min(limit, until_seq - last)
                if limit <= 0:
                    return None
            return asyncio.ensure_future(
                self._fetchall(f"{select} WHERE seq > ? ORDER BY seq LIMIT ?", (last, limit))
            )

        pending = fetch(after)
        try:
            while pending is not None:
                rows = await pending
                pending = fetch(rows[-1][0]) if len(rows) else None
                if rows:
                    yield rows
        finally:
            if pending is not None:  # the caller stopped early
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, StorageError):
                    await pending

    async def stream(self, stream: str) -> list[Envelope]:
        rows = await self._fetchall(
            f"{_SELECT_EVENTS} WHERE stream = ? ORDER BY version", (stream,)
        )
        return [_envelope(r) for r in rows]

    async def get_job(self, job_id: str) -> Job | None:
        rows = await self._fetchall("SELECT doc FROM jobs WHERE id = ?", (job_id,))
        return _decode_job(rows[0][0]) if rows else None

    async def next_pending(
        self, job_types: Sequence[str], now: datetime, limit: int = 1
    ) -> list[Job]:
        if not job_types:
            return []
        marks = ",".join("?" * len(job_types))
        rows = await self._fetchall(
            f"SELECT doc FROM jobs WHERE status = 'pending' AND job_type IN ({marks})"
            " AND (run_at_us IS NULL OR run_at_us <= ?)"
            " ORDER BY priority DESC, created_seq LIMIT ?",
            (*job_types, micros(now), limit),
        )
        return [_decode_job(r[0]) for r in rows]

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
        micros_due = rows[0][0] if rows else None
        if micros_due is None:
            return None
        try:
            return datetime.fromtimestamp(micros_due / 1_000_000, UTC)
        except (OverflowError, ValueError, OSError, TypeError):
            # Past year 9999 (an older log), or a damaged column (verify names
            # it): never due, so the dispatcher goes on polling.
            return datetime.max.replace(tzinfo=UTC)

    async def expiring(self, now: datetime, limit: int = 500) -> list[Job]:
        us = micros(now)
        rows = await self._fetchall(
            "SELECT doc FROM jobs WHERE status = 'running'"
            " AND (lease_expires_us <= ?1 OR deadline_us <= ?1)"
            " ORDER BY min(lease_expires_us, ifnull(deadline_us, lease_expires_us)), created_seq"
            " LIMIT ?2",
            (us, limit),
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

    async def finished_before(self, cutoff: datetime, limit: int = 500) -> list[Job]:
        rows = await self._fetchall(
            "SELECT doc FROM jobs WHERE finished_us < ? ORDER BY finished_us, created_seq LIMIT ?",
            (micros(cutoff), limit),
        )
        return [_decode_job(r[0]) for r in rows]

    async def job_by_key(self, user_id: str, tenant: str | None, key: str) -> Job | None:
        rows = await self._fetchall(_SELECT_BY_KEY, (user_id, tenant, key))
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

    async def integrity(self) -> list[str]:
        rows = await self._fetchall("PRAGMA integrity_check")
        found = [str(row[0]) for row in rows]
        schema = await self._fetchall(_SELECT_SCHEMA)
        return ([] if found == ["ok"] else found) + _schema_findings(schema)

    async def raw_rows(self, table: str) -> AsyncIterator[tuple[RawValue, ...]]:
        columns = TABLES.get(table)
        if columns is None:
            raise ValueError(f"no table {table!r} in the stored shape")
        present = {row[1] for row in await self._fetchall(f"PRAGMA table_info({table})")}
        if not present:
            return
        # Each column with a flag saying whether it is stored as text: text is
        # read as its bytes, so a text that is not UTF-8 is shown, not raised.
        select = ", ".join(
            f"CASE typeof({c}) WHEN 'text' THEN CAST({c} AS BLOB) ELSE {c} END,"
            f" typeof({c}) = 'text'"
            if c in present
            else "NULL, 0"
            for c in columns
        )
        last: Any = None
        while True:
            where = "" if last is None else "WHERE rowid > ?"
            rows = await self._fetchall(
                f"SELECT rowid, {select} FROM {table} {where} ORDER BY rowid LIMIT ?",
                (self._read_chunk,) if last is None else (last, self._read_chunk),
            )
            for row in rows:
                yield tuple(_raw_value(row[i], row[i + 1]) for i in range(1, len(row), 2))
            if len(rows) < self._read_chunk:
                return
            last = rows[-1][0]

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
        model.seq = await self.checkpoint()
        return model

    async def rebuild(self) -> int:
        """Recompute the read model from the log alone, in one write transaction."""
        model = Projection()
        count = 0
        async with self.write() as writer:
            await writer.head()  # begin: no other writer until the new read model is in
            async for env in self.scan():
                model.apply(env)
                count += 1
            for table in ("jobs", "marks", "assets", "resources"):
                writer.stage(f"DELETE FROM {table}", [()])
            writer.stage(_UPSERT_JOB, [job_row(j) for j in model.jobs.values()])
            writer.stage(_UPSERT_MARK, [mark_row(m) for m in model.marks.values()])
            writer.stage(_INSERT_ASSET, [asset_row(a) for a in model.assets.values()])
            writer.stage(_INSERT_RESOURCE, [resource_row(r) for r in model.resources.values()])
            writer.stage(_SET_CHECKPOINT, [(str(model.seq),)])
        log.info("read model rebuilt", events=count, jobs=len(model.jobs))
        return count
