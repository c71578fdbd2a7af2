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
checkpoint and delete the WAL under the parent). They stay in ``_OWNED``
(:mod:`.sqlite_writer`), the table of the connections opened here, which only the process
that opened a connection takes it out of.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from jobledger.core import (
    CorruptionError,
    Envelope,
    NotALog,
    StorageError,
    get_logger,
)
from jobledger.core.faults import Faults

from .audit import catch_up
from .commits import tell_commit, watch_commits
from .protocol import TABLES, Head, RawValue
from .queries import _ReadModelQueries, _Scans
from .sqlite_decode import (
    _checkpoint_of,
    _envelope,
    _envelopes,
    _head_of,
    _raw_value,
    _storage_error,
)
from .sqlite_schema import _MIGRATIONS, _SELECT_SCHEMA, SCHEMA_VERSION, _schema_findings
from .sqlite_watch import CommitWatcher, Notifier
from .sqlite_writer import (
    _OWNED,
    _SELECT_BY_KEY,
    _SELECT_HEAD,
    _commit,
    _rollback,
    _SqliteWriter,
    _WriteConnection,
    fork_generation,
)

__all__ = [
    "COMPANIONS",
    "MEMORY",
    "NETWORK_FILESYSTEMS",
    "SCHEMA_VERSION",
    "WAL_SIZE_LIMIT",
    "SqliteLog",
    "filesystem_of",
]

COMPANIONS = ("-wal", "-shm", "-journal", "-notify")
"""What an SQLite log keeps beside ``PATH``: SQLite's files, and the folder
of notify files (:mod:`.sqlite_watch`)."""

MEMORY = ":memory:"
"""The path that opens a SQLite log in memory: nothing is kept after close."""


def _memory_folder() -> str | None:
    """Where a SQLite log in memory keeps its file: ``/dev/shm`` (a RAM file
    system) where this system has one, else the temporary folder."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


log = get_logger("store")

WAL_SIZE_LIMIT = 8 * 1024 * 1024
"""Bytes to which the WAL file is cut back when it starts over after a
checkpoint (SQLite's ``journal_size_limit``)."""


_SELECT_EVENTS = (
    "SELECT seq, event_id, stream, version, type, time, actor, correlation_id,"
    " causation_id, data, hash FROM events"
)


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


class SqliteLog(_Scans, _ReadModelQueries):
    """An :class:`~jobledger.store.EventLog` in one SQLite file.

    ``synchronous`` is ``"FULL"`` (default: every acknowledged commit survives
    power loss) or ``"NORMAL"`` (faster; the last commits may be lost on power
    loss, the file is never corrupted). ``busy_timeout`` is in seconds.
    ``wal_size_limit`` is the size in bytes the WAL file is cut back to once
    a checkpoint lets it start over. ``watch`` (default on) watches the
    file for other processes' commits, to tell ``on_commit`` listeners at
    once (:mod:`.sqlite_watch`; Linux); without it they learn of them by
    their own polls. ``migrate=False`` (a read-only use: the command line's
    reading commands) refuses a file of an older schema with a
    ``StorageError`` naming ``jobledger migrate`` instead of migrating it.
    ``faults`` (tests only) is reached at ``store.after_insert``
    (:mod:`jobledger.core.faults`).

    An open log belongs to the process that opened it: in a child made by
    ``fork`` every call raises ``StorageError`` and ``close`` leaves the
    parent's connections alone (never used, never closed there); the child
    opens its own log.
    """

    _SELECT_BY_KEY = _SELECT_BY_KEY

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout: float = 10.0,
        read_chunk: int = 5000,
        wal_size_limit: int = WAL_SIZE_LIMIT,
        faults: Faults | None = None,
        watch: bool = True,
        migrate: bool = True,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be 'FULL' or 'NORMAL'")
        self._path = str(path)
        self._file = self._path  # the file SQLite opens (a fresh one on tmpfs in memory)
        self._memory_dir: str | None = None
        self._commit_callbacks: list[Callable[[int], None]] = []
        self._told = 0  # the last seq the callbacks were told of
        self._watch = watch
        self._migrate_allowed = migrate
        self._watcher: CommitWatcher | None = None
        self._notifier: Notifier | None = None
        self._synchronous = synchronous
        self._busy_ms = int(busy_timeout * 1000)
        self._read_chunk = read_chunk
        self._wal_limit = int(wal_size_limit)
        self._faults = faults
        self._writer: _WriteConnection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._pid = os.getpid()  # the process whose connections these are
        self._generation = fork_generation()  # ... told apart without a system call

    @property
    def path(self) -> str:
        return self._path

    # -- lifecycle -------------------------------------------------------

    async def _connect(self) -> aiosqlite.Connection:
        """A read-only aiosqlite connection."""
        conn = await aiosqlite.connect(
            self._file, isolation_level=None, iter_chunk_size=self._read_chunk
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
        self._generation = fork_generation()
        try:
            if self._path == MEMORY:
                self._memory_dir = tempfile.mkdtemp(prefix="jobledger-", dir=_memory_folder())
                self._file = os.path.join(self._memory_dir, "log.db")
            self._writer = _WriteConnection()
            await self._writer.open(self._file, self._busy_ms, self._synchronous, self._wal_limit)
            await self._writer.call(self._migrate)
            self._reader = await self._connect()
            await self._catch_up()
            self._told = (await self.head()).seq
            if self._path != MEMORY:  # (in memory, no other process can commit)
                self._start_notifying()
        except sqlite3.Error as exc:
            await self.close()
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:
                raise NotALog(f"cannot open {self._path}: not a jobledger log ({exc})") from exc
            raise _storage_error(exc, f"cannot open {self._path}: {exc}") from exc
        except UnicodeDecodeError as exc:  # damaged text in the file (its schema, say)
            await self.close()
            raise CorruptionError(f"cannot open {self._path}: {exc}") from exc
        except BaseException:
            # Whatever failed, no connection (and no thread) is left behind.
            await self.close()
            raise

    def _warn_if_networked(self) -> None:
        if self._path == MEMORY:
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
            if version == 0 and self._has_tables(conn):
                raise NotALog(
                    f"{self._path} is not a jobledger log: an SQLite database of another "
                    "application (it has tables, and no jobledger schema); nothing was changed"
                )
            if version < SCHEMA_VERSION and not self._migrate_allowed and self._has_tables(conn):
                raise StorageError(
                    f"{self._path} has schema {version}; this jobledger writes "
                    f"{SCHEMA_VERSION}: run `jobledger migrate --db {self._path}` first"
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

    @staticmethod
    def _has_tables(conn: sqlite3.Connection) -> bool:
        """Whether the file holds a log at all (an empty file is made, not migrated)."""
        return conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is not None

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
        await catch_up(self, _head_of(None if seq is None else (seq, digest)), value)

    async def close(self) -> None:
        """Close both connections. Idempotent. Even if cancelled half-way, each
        connection's thread is told to stop, so none keeps the process alive."""
        reader, writer = self._reader, self._writer
        self._reader = self._writer = None
        watcher, self._watcher = self._watcher, None
        notifier, self._notifier = self._notifier, None
        if self._generation != fork_generation():
            return  # a fork: the parent's connections stay in _OWNED, untouched
        if watcher is not None:
            watcher.stop()
        if notifier is not None and writer is None:
            notifier.close()
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
                    # The notify file closes on the writer's thread, after a
                    # commit in flight has written its notice: closed before,
                    # its number could be another file's by then.
                    await writer.close(notifier.close if notifier is not None else None)
                except sqlite3.Error as exc:  # pragma: no cover - close failing is rare
                    log.warning("close failed", error=str(exc))
            if self._memory_dir is not None:  # in memory: nothing is kept after close
                shutil.rmtree(self._memory_dir, ignore_errors=True)
                self._memory_dir = None

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
        if self._generation != fork_generation():
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
                notify_fd = None
                if self._notifier is not None and writer.committed_seq is not None:
                    notify_fd = self._notifier.fd
                await conn.call(
                    functools.partial(
                        _commit,
                        writer.work,
                        writer.expected,
                        # (a transaction that only read inserts nothing: no crash point)
                        self._faults if writer.work or writer.committed_seq else None,
                        notify_fd,
                    )
                )
                committed = writer.committed_seq
            except BaseException as exc:
                # The transaction may be gone already (for example, COMMIT failed).
                with contextlib.suppress(sqlite3.Error, StorageError):
                    await asyncio.shield(conn.call(_rollback))
                if isinstance(exc, sqlite3.Error):
                    raise _storage_error(exc, f"write failed and was rolled back: {exc}") from exc
                if isinstance(exc, UnicodeDecodeError):  # a stored text that is not UTF-8
                    raise CorruptionError(f"write failed and was rolled back: {exc}") from exc
                raise
        if committed is not None:
            self._tell(committed)

    def on_commit(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """Commits made through this object, at once; commits of other
        processes (or other objects on the file) as soon as the kernel says
        the WAL was written, where it can (:class:`CommitWatcher`)."""
        return watch_commits(self._commit_callbacks, callback)

    def _start_notifying(self) -> None:
        """Make this log's notify file (to tell other processes of its
        commits) and watch the others' (unless ``watch=False``)."""
        self._notifier = Notifier(self._file)
        if self._watch:
            watcher = CommitWatcher(self._file, self._notifier.name, self._tell)
            if watcher.start():
                self._watcher = watcher

    def _tell(self, seq: int) -> None:
        if seq > self._told:
            self._told = seq
            tell_commit(self._commit_callbacks, seq)

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
        view = SqliteLog(self._file, read_chunk=self._read_chunk)
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
        return _envelopes(await self._rows_after(after, limit))

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
