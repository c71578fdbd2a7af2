"""The PostgreSQL event log, through asyncpg (the ``jobledger[postgres]`` extra).

Many processes on many hosts share one log. Three kinds of connection, per
log: one **writer** (every write transaction, one at a time in a process; the
append lock orders them across processes: :mod:`.postgres_writer`), a small
**pool** of readers, and one **listener** that LISTENs on the schema's
channel, so every other process's commit is told to ``on_commit`` at once. A
notice is a hint: the listener reads nothing, its callbacks read the log. If
the listener's connection drops, a fallback poll of the head covers the gap
while it reconnects, so a lost notice delays an event, never loses it.

A lost connection during a commit is resolved, not guessed: the writer
reconnects and looks up the batch's first event id. If it is there, the
batch committed; if not, nothing of it did (a transaction is all or
nothing), and the write raises :class:`~jobledger.store.StaleWrite` so the
Stower decides the batch again on fresh state.

Every error of the driver or the network is a ``StorageError``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from jobledger.core import Envelope, NotALog, StorageError, get_logger
from jobledger.core.faults import Faults

from .audit import catch_up
from .postgres_driver import _code_version, _driver, _failure, _is_lost, _numbered
from .postgres_listen import _Listening
from .postgres_schema import (
    _CREATE_VERSION_TABLE,
    _MIGRATIONS,
    SCHEMA_VERSION,
    channel_of,
    check_schema_name,
    lock_key,
    shown_dsn,
)
from .postgres_writer import APPEND_FUNCTION, BEGIN_FUNCTION, SELECT_BY_KEY, _PostgresWriter
from .protocol import TABLES, Head, Notice, RawValue, StaleWrite
from .queries import _ReadModelQueries, _Scans
from .sqlite_decode import _envelope, _envelopes, _head_of

__all__ = ["DEFAULT_SCHEMA", "PostgresLog"]

log = get_logger("store")

DEFAULT_SCHEMA = "jobledger"
"""The PostgreSQL schema a log keeps its tables in unless told another."""

_SELECT_EVENTS = (
    "SELECT seq, event_id, stream, version, type, time, actor, correlation_id,"
    " causation_id, data, hash FROM events"
)
_SELECT_HEAD = "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"


async def _reset(conn: Any) -> None:
    """Make a read connection fit for the next reader as it goes back to the
    pool: end a transaction a cancelled reader left open. (asyncpg's own
    reset also unlocks advisory locks, closes cursors, unlistens and resets
    settings, one round trip on every read's way out; the readers take no
    session lock, cursor, listener or setting.)"""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class PostgresLog(_Listening, _Scans, _ReadModelQueries):
    """An :class:`~jobledger.store.EventLog` in one PostgreSQL schema.

    ``dsn`` is a libpq connection URL (``postgresql://user@host:5432/db``)
    without jobledger's own options; ``schema`` (default ``jobledger``) is
    where the tables live, made on first open (lower-case letters, digits
    and ``_``). ``pool_size`` bounds the reading connections;
    ``poll_interval`` is how often the head is polled while the listener's
    connection is down (never while it is up). ``faults`` (tests only) is
    reached at ``store.after_insert``. ``migrate=False`` (a read-only use)
    refuses a schema that is missing or older than this code's with a
    ``StorageError`` naming ``jobledger migrate`` instead of making or
    migrating it.
    """

    _SELECT_BY_KEY = SELECT_BY_KEY

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        pool_size: int = 4,
        read_chunk: int = 5000,
        poll_interval: float = 1.0,
        connect_timeout: float = 10.0,
        faults: Faults | None = None,
        migrate: bool = True,
    ) -> None:
        self._dsn = dsn
        self._migrate_allowed = migrate
        self._schema = check_schema_name(schema)
        self._pool_size = max(1, int(pool_size))
        self._read_chunk = read_chunk
        self._poll_interval = poll_interval
        self._connect_timeout = connect_timeout
        self._faults = faults
        self._append_key = lock_key(self._schema, "append")
        self._channel = channel_of(self._schema)
        self._writer: Any = None
        self._pool: Any = None
        self._listener: Any = None
        self._watching: asyncio.Task[None] | None = None
        self._single: Any = None  # a frozen view's one connection, in its transaction
        self._single_lock = asyncio.Lock()
        self._listener_lock = asyncio.Lock()  # the listener's queries: its check, the clock
        self._write_lock = asyncio.Lock()
        self._commit_callbacks: list[Callable[[int], None]] = []
        self._notice_callbacks: list[Callable[[Notice], None]] = []
        self._told = 0
        self._open = False

    @property
    def path(self) -> str:
        """The server and schema, for messages (never the password)."""
        return f"{shown_dsn(self._dsn)}#{self._schema}"

    @property
    def schema(self) -> str:
        return self._schema

    # -- lifecycle -------------------------------------------------------

    async def _connect(self) -> Any:
        asyncpg = _driver()
        return await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout,
            server_settings={
                "search_path": f'"{self._schema}"',
                "application_name": f"jobledger:{self._schema}",
            },
        )

    async def open(self) -> None:
        """Connect, make or migrate the schema, and catch the read model up
        to the head. Raises ``StorageError`` (the server cannot be reached,
        refuses the login, or holds a newer schema) and then leaves nothing open."""
        if self._open:
            return
        asyncpg = _driver()
        try:
            self._writer = await self._connect()
            await self._migrate(self._writer)
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._pool_size,
                timeout=self._connect_timeout,
                reset=_reset,
                server_settings={
                    "search_path": f'"{self._schema}"',
                    "application_name": f"jobledger:{self._schema}",
                },
            )
            self._open = True
            rows = await self._fetchall(
                "SELECT (SELECT seq FROM events ORDER BY seq DESC LIMIT 1),"
                " (SELECT hash FROM events ORDER BY seq DESC LIMIT 1),"
                " (SELECT value FROM meta WHERE key = 'checkpoint')"
            )
            seq, digest, value = rows[0]
            await catch_up(self, _head_of(None if seq is None else (seq, digest)), value)
            self._told = (await self.head()).seq
            await self._listen()
            self._watching = asyncio.get_running_loop().create_task(
                self._watch(), name="jobledger-postgres-watch"
            )
        except StorageError:
            await self.close()
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            await self.close()
            raise _failure(exc, f"cannot open {self.path}") from exc
        except BaseException:
            await self.close()
            raise

    async def _migrate(self, conn: Any) -> None:
        if not self._migrate_allowed:
            await self._check_version(conn)  # (a reading use: no DDL, no lock)
            return
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1)", lock_key(self._schema, "migrate")
            )
            await self._refuse_foreign(conn)
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')
            await conn.execute(f'SET LOCAL search_path TO "{self._schema}"')
            await conn.execute(_CREATE_VERSION_TABLE)
            row = await conn.fetchrow(
                "SELECT version, written_by FROM schema_version ORDER BY version DESC LIMIT 1"
            )
            version, written_by = (0, None) if row is None else (row[0], row[1])
            self._refuse_version(version, written_by)
            for step in range(version, SCHEMA_VERSION):
                await conn.execute(_MIGRATIONS[step])
                log.info("schema migrated", path=self.path, to_version=step + 1)
            await conn.execute(BEGIN_FUNCTION)
            await conn.execute(APPEND_FUNCTION)
            if version != SCHEMA_VERSION:
                await conn.execute("DELETE FROM schema_version")
                await conn.execute(
                    "INSERT INTO schema_version (version, written_by) VALUES ($1, $2)",
                    SCHEMA_VERSION,
                    _code_version(),
                )

    async def _refuse_foreign(self, conn: Any) -> None:
        """``NotALog`` for a schema that holds tables and no jobledger
        version table: another application's (jobledger never adds its
        tables beside them)."""
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
            self._schema,
        )
        names = {row[0] for row in tables}
        if names and "schema_version" not in names:
            raise NotALog(
                f"{self.path} is not a jobledger log: schema {self._schema!r} holds another "
                f"application's tables ({', '.join(sorted(names)[:5])}); nothing was changed"
            )

    async def _check_version(self, conn: Any) -> None:
        """Refuse a schema that is missing, older or newer than this code's,
        reading only (what a role that may only read can do)."""
        table = f'"{self._schema}".schema_version'
        row = None
        if await conn.fetchval("SELECT to_regclass($1)", table) is not None:
            columns = await conn.fetch(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = $1 AND table_name = 'schema_version'",
                self._schema,
            )
            by = "written_by" if any(c[0] == "written_by" for c in columns) else "NULL"
            row = await conn.fetchrow(
                f"SELECT version, {by} FROM {table} ORDER BY version DESC LIMIT 1"
            )
        version, written_by = (0, None) if row is None else (row[0], row[1])
        self._refuse_version(version, written_by)
        if row is None:
            await self._refuse_foreign(conn)
        if version == 0:  # (nothing there: a missing log, as a missing file is)
            raise NotALog(
                f"{self.path} holds no jobledger log; this jobledger writes {SCHEMA_VERSION}: "
                "open it to write, or run `jobledger migrate --db URL`, to make one"
            )
        if version < SCHEMA_VERSION:
            raise StorageError(
                f"{self.path} has schema {version}; this jobledger writes {SCHEMA_VERSION}: "
                "run `jobledger migrate --db URL` first"
            )

    def _refuse_version(self, version: int, written_by: str | None) -> None:
        """``StorageError`` for a schema newer than this code's."""
        if version > SCHEMA_VERSION:
            by = f" (written by jobledger {written_by})" if written_by else ""
            raise StorageError(
                f"{self.path} has schema {version}{by}; this jobledger "
                f"{_code_version()} knows up to {SCHEMA_VERSION}: upgrade jobledger"
                + (f" to {written_by} or later" if written_by else "")
            )

    async def close(self) -> None:
        """Close every connection. Idempotent. A write in flight ends first
        (up to ``connect_timeout``); a write that waited for it is refused."""
        was_open, self._open = self._open, False
        if was_open and self._write_lock.locked():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._connect_timeout), self._write_lock:
                    pass
        watching, self._watching = self._watching, None
        if watching is not None:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watching
        listener, self._listener = self._listener, None
        writer, self._writer = self._writer, None
        pool, self._pool = self._pool, None
        for conn in (listener, writer):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), self._connect_timeout)
                if not conn.is_closed():
                    conn.terminate()
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self._connect_timeout)
            except Exception:
                pool.terminate()

    def _check_open(self) -> None:
        if not self._open and self._single is None:
            raise StorageError("the log is not open")

    # -- writing ---------------------------------------------------------

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_PostgresWriter]:
        self._check_open()
        if self._single is not None:
            raise StorageError("a frozen view is read-only")
        asyncpg = _driver()
        async with self._write_lock:
            self._check_open()  # (closed while this write waited for the lock)
            if self._writer is None or self._writer.is_closed():  # lost, and not back yet
                try:
                    self._writer = await self._connect()
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                    raise _failure(exc, "write failed: cannot reach the server") from exc
            writer = _PostgresWriter(self._writer, self._append_key, self._channel)
            committed: int | None = None
            try:
                yield writer
                await writer.commit(self._faults, asyncpg.UniqueViolationError)
                committed = writer.committed_seq
            except BaseException as exc:
                if _is_lost(exc):
                    committed = await self._resolve_lost(writer, exc)
                else:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(writer.rollback())
                    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
                        raise _failure(exc, "write failed and was rolled back") from exc
                    raise
        if committed is not None:
            self._tell(committed)

    async def _resolve_lost(self, writer: _PostgresWriter, exc: BaseException) -> int | None:
        """The connection was lost mid-transaction: reconnect, end the old
        session for certain (its COMMIT may still be on its way: a slow
        fsync, a synchronous replica), wait for its append lock, and only
        then look for the batch's first event: there, the batch committed;
        absent, nothing of it was written (``StaleWrite``: decide again)."""
        asyncpg = _driver()
        old, self._writer = self._writer, None
        old_pid = writer.server_pid
        with contextlib.suppress(Exception):
            old.terminate()
        if not self._open:
            raise StorageError(f"write failed, connection lost ({exc}); the log is closed") from exc
        try:
            self._writer = conn = await self._connect()
            async with conn.transaction():
                if old_pid is not None:  # waits (up to 10 s) until the old session is gone
                    await conn.execute("SELECT pg_terminate_backend($1, 10000)", old_pid)
                await conn.execute("SELECT pg_advisory_xact_lock($1)", self._append_key)
                event_id = writer.first_event_id
                seq = (
                    await conn.fetchval("SELECT seq FROM events WHERE event_id = $1", event_id)
                    if event_id is not None and writer.committed_seq is not None
                    else None
                )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as again:
            raise _failure(
                again, f"write failed, connection lost ({exc}); the outcome cannot be told"
            ) from exc
        if seq is not None:
            log.warning("connection lost at commit; the batch had committed", seq=seq)
            return writer.committed_seq
        raise StaleWrite(f"connection lost before the commit ({exc}); nothing was written") from exc

    # -- reading ---------------------------------------------------------

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[Any]:
        """A connection to read on: the frozen view's own, or one of the pool's."""
        self._check_open()
        if self._single is not None:
            async with self._single_lock:
                yield self._single
            return
        async with self._pool.acquire() as conn:
            yield conn

    async def _fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        asyncpg = _driver()
        for attempt in (1, 2):
            try:
                async with self._reading() as conn:
                    return list(await conn.fetch(_numbered(sql), *args))
            except Exception as exc:
                # A pooled connection the server ended while idle: read again
                # on another (once; a frozen view's snapshot cannot be had again).
                if attempt == 1 and self._single is None and _is_lost(exc):
                    continue
                failed = asyncpg.PostgresError | asyncpg.InterfaceError | OSError | TimeoutError
                if isinstance(exc, failed) or _is_lost(exc):
                    raise _failure(exc, "read failed") from exc
                raise
        raise AssertionError("unreachable")

    async def head(self) -> Head:
        rows = await self._fetchall(_SELECT_HEAD)
        return _head_of(tuple(rows[0]) if rows else None)

    async def checkpoint(self) -> int:
        from .sqlite_decode import _checkpoint_of

        rows = await self._fetchall("SELECT value FROM meta WHERE key = 'checkpoint'")
        return _checkpoint_of(rows[0][0] if rows else None)

    async def read(self, after: int = 0, limit: int = 1000) -> list[Envelope]:
        return _envelopes(
            await self._fetchall(
                f"{_SELECT_EVENTS} WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            )
        )

    async def _chunks(self, after: int, until_seq: int | None) -> AsyncIterator[list[Any]]:
        last = after
        while True:
            limit = self._read_chunk
            if until_seq is not None:
                limit = min(limit, until_seq - last)
                if limit <= 0:
                    return
            rows = await self._fetchall(
                f"{_SELECT_EVENTS} WHERE seq > ? ORDER BY seq LIMIT ?", (last, limit)
            )
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    async def stream(self, stream: str) -> list[Envelope]:
        rows = await self._fetchall(
            f"{_SELECT_EVENTS} WHERE stream = ? ORDER BY version", (stream,)
        )
        return [_envelope(r) for r in rows]

    # -- audit -----------------------------------------------------------

    @asynccontextmanager
    async def frozen(self) -> AsyncIterator[PostgresLog]:
        self._check_open()
        from .postgres_audit import made_shape

        async with self._pool.acquire() as conn:
            with contextlib.suppress(Exception):  # (a role that may not create: no comparison)
                await made_shape(conn)  # what integrity compares with: made once, before read-only
            view = PostgresLog(self._dsn, schema=self._schema, read_chunk=self._read_chunk)
            view._single = conn
            tx = conn.transaction(isolation="repeatable_read", readonly=True)
            await tx.start()
            try:
                await conn.fetch("SELECT value FROM meta WHERE key = 'checkpoint'")  # the snapshot
                yield view
            finally:
                view._single = None
                with contextlib.suppress(Exception):
                    await tx.rollback()

    async def integrity(self) -> list[str]:
        from .postgres_audit import schema_findings

        async with self._reading() as conn:
            return await schema_findings(conn, self._schema)

    async def raw_rows(self, table: str) -> AsyncIterator[tuple[RawValue, ...]]:
        columns = TABLES.get(table)
        if columns is None:
            raise ValueError(f"no table {table!r} in the stored shape")
        present = {
            r[0]
            for r in await self._fetchall(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = ? AND table_name = ?",
                (self._schema, table),
            )
        }
        if not present:
            return
        key = columns[0]
        select = ", ".join(c if c in present else "NULL" for c in columns)
        if key not in present:  # (a damaged table without its key: all of it, in one read)
            for row in await self._fetchall(f"SELECT {select} FROM {table}"):
                yield tuple(row)
            return
        last: Any = None
        while True:
            where = "" if last is None else f"WHERE {key} > ?"
            args: tuple[Any, ...] = (
                (self._read_chunk,) if last is None else (last, self._read_chunk)
            )
            rows = await self._fetchall(
                f"SELECT {select} FROM {table} {where} ORDER BY {key} LIMIT ?", args
            )
            for row in rows:
                yield tuple(row)
            if len(rows) < self._read_chunk:
                return
            last = rows[-1][0]
