"""Commits of other processes on a PostgreSQL log, and the server's clock: a
mixin of :class:`~jobledger.store.postgres.PostgresLog`.

One connection a log LISTENs on the schema's channel; each notice names the
head another process committed and is told to ``on_commit``. A notice is a
hint: the listeners read the log. While the listening connection is down,
the head is polled every ``poll_interval`` and the connection is made again;
while it is up, it is asked to answer every ``LISTENER_CHECK`` seconds (a
connection whose peer vanished without a word looks open until written to).
The same connection, idle but for notices, reads the server's clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from jobledger.core import get_logger

from .commits import tell_commit, watch_commits
from .postgres_driver import _driver, _failure
from .protocol import Head, Notice

__all__ = ["LISTENER_CHECK"]

log = get_logger("store")

LISTENER_CHECK = 30.0
"""Seconds between two checks that the listening connection still answers."""


_notice_decoder = msgspec.json.Decoder(Notice | int)
"""A notice's payload: a :class:`Notice`, or a bare ``seq``."""


class _Listening:
    """The log provides the members declared here for the type checker."""

    if TYPE_CHECKING:
        _channel: str
        _listener: Any
        _listener_lock: asyncio.Lock
        _single: Any
        _poll_interval: float
        _connect_timeout: float
        _commit_callbacks: list[Callable[[int], None]]
        _notice_callbacks: list[Callable[[Notice], None]]
        _told: int
        _writer: Any

        @property
        def path(self) -> str: ...

        async def _connect(self) -> Any: ...

        async def head(self) -> Head: ...

        async def _fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Any]: ...

    async def _listen(self) -> None:
        conn = await self._connect()
        try:
            await conn.add_listener(self._channel, self._notified)
        except BaseException:
            conn.terminate()  # (never left open behind a failure or a cancel)
            raise
        self._listener = conn

    def _notified(self, _conn: Any, pid: int, _channel: str, payload: str) -> None:
        """A commit's notice: a :class:`Notice` (an append), or a bare
        ``seq`` (the read model replaced). Another process's notice goes to
        the notice callbacks first, then its ``seq`` to the commit callbacks."""
        try:
            notice = _notice_decoder.decode(payload)
        except msgspec.DecodeError:  # (a ValidationError too)
            log.warning("a commit notice that is not one", payload=payload[:100])
            return
        if isinstance(notice, int):
            self._tell(notice)
            return
        writer = self._writer
        own = writer is not None and not writer.is_closed() and writer.get_server_pid() == pid
        if not own:
            tell_commit(self._notice_callbacks, notice)
        self._tell(notice.seq)

    async def _watch(self) -> None:
        """While the listener's connection is down: poll the head (a commit
        missed meanwhile is told) and reconnect it. While it is up, look
        every ``LISTENER_CHECK`` seconds that it still answers (a connection
        whose peer vanished without a word looks open until written to)."""
        loop = asyncio.get_running_loop()
        checked = loop.time()
        while True:
            await asyncio.sleep(self._poll_interval)
            listener = self._listener
            if listener is not None and not listener.is_closed():
                if loop.time() - checked < LISTENER_CHECK:
                    continue
                checked = loop.time()
                try:
                    async with self._listener_lock:
                        await asyncio.wait_for(listener.fetchval("SELECT 1"), self._connect_timeout)
                    continue
                except Exception as exc:  # (no answer: taken for lost)
                    log.warning("the commit listener does not answer", error=repr(exc))
            try:
                self._tell((await self.head()).seq)
                if listener is not None:
                    listener.terminate()
                self._listener = None
                await self._listen()
                log.info("listening for commits again", path=self.path)
                self._tell((await self.head()).seq)  # (what came while reconnecting)
            except Exception as exc:
                log.warning("the commit listener is down; polling", error=str(exc))

    def on_notice(self, callback: Callable[[Notice], None]) -> Callable[[], None]:
        """Other processes' commits, as their notices tell them (``Notices``)."""
        return watch_commits(self._notice_callbacks, callback)

    def on_commit(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """Commits made through this object, at once; other processes' by
        their notice on the schema's channel (or the fallback poll)."""
        return watch_commits(self._commit_callbacks, callback)

    def _tell(self, seq: int) -> None:
        if seq > self._told:
            self._told = seq
            tell_commit(self._commit_callbacks, seq)

    async def server_time(self) -> datetime:
        """The server's clock now (``clock_timestamp()``): what a
        :class:`~jobledger.store.ServerClock` judges leases and delays by, so
        that hosts whose clocks disagree agree on "now"."""
        # On the listener's connection (idle but for notices), so the round
        # trip a ServerClock times is the query's, not a wait for a reader.
        conn = self._listener
        if conn is None or conn.is_closed() or self._single is not None:
            rows = await self._fetchall("SELECT clock_timestamp()")
            value = rows[0][0]
        else:
            asyncpg = _driver()
            try:
                async with self._listener_lock:
                    value = await conn.fetchval("SELECT clock_timestamp()")
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                raise _failure(exc, "reading the server's clock failed") from exc
        assert isinstance(value, datetime)
        return value.astimezone(UTC)
