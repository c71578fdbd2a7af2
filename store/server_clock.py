"""The database server's clock, for processes on several hosts.

Leases, timeouts and delayed jobs are judged against "now". On one host
every process reads the same wall clock; on several hosts their clocks drift
and may be set wrong, and a host whose clock runs ahead would take live
leases for expired. :class:`ServerClock` reads the time of the one server
they share instead: it measures the offset between the server's clock
(:meth:`TimedBackend.server_time`) and its base clock, from the midpoint of
a round trip, when the ledger opens (``sync``) and again every
``interval`` seconds in the background; ``now()`` is the base clock's time
moved by that offset. ``now()`` stays a cheap call that never blocks;
``monotonic`` and ``sleep`` are the base clock's.

Every process on one PostgreSQL log then agrees on "now" to within a round
trip and the drift between two measurements (milliseconds), whatever their
own clocks say.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from jobledger.core import Clock, SystemClock, get_logger

__all__ = ["CLOCK_SYNC_INTERVAL", "ServerClock", "TimedBackend", "clock_for"]

log = get_logger("store")

CLOCK_SYNC_INTERVAL = 30.0
"""Seconds between two measurements of the server's clock."""


@runtime_checkable
class TimedBackend(Protocol):
    """A backend whose server several hosts share, and whose clock it reads."""

    async def server_time(self) -> datetime:
        """The server's clock now (aware, UTC). Raises ``StorageError``."""
        ...


class ServerClock:
    """``base`` moved by the offset of ``backend``'s server clock (see the
    module docstring). Until the first ``sync`` the offset is 0."""

    def __init__(
        self,
        backend: TimedBackend,
        base: Clock | None = None,
        *,
        interval: float = CLOCK_SYNC_INTERVAL,
    ) -> None:
        self._backend = backend
        self._base = base if base is not None else SystemClock()
        self._interval = interval
        self._offset = timedelta(0)
        self._synced_at: float | None = None
        self._syncing: asyncio.Task[None] | None = None

    @property
    def offset(self) -> timedelta:
        """What is added to the base clock's time: the server's lead over it."""
        return self._offset

    async def sync(self, samples: int = 3) -> None:
        """Measure the offset now: of ``samples`` round trips, the shortest
        (the one least delayed by the network, the server or this loop)
        gives it. Raises ``StorageError`` if the server cannot be asked (the
        offset stays as it was)."""
        best: tuple[float, timedelta] | None = None
        for _ in range(max(1, samples)):
            before = self._base.now()
            began = self._base.monotonic()
            server = await self._backend.server_time()
            took = self._base.monotonic() - began
            if best is None or took < best[0]:
                best = (took, server - (before + timedelta(seconds=took / 2)))
        assert best is not None
        self._offset = best[1]
        self._synced_at = self._base.monotonic()

    def now(self) -> datetime:
        due = self._synced_at is not None and self._syncing is None
        if due and self._base.monotonic() - (self._synced_at or 0.0) >= self._interval:
            self._sync_in_background()
        return self._base.now() + self._offset

    def _sync_in_background(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._syncing = loop.create_task(self._resync(), name="jobledger-server-clock")

    async def _resync(self) -> None:
        try:
            await self.sync()
        except Exception as exc:  # the server is away: keep the last offset, try later
            log.warning(
                "reading the server's clock failed; keeping the last offset", error=str(exc)
            )
            self._synced_at = self._base.monotonic()
        finally:
            self._syncing = None

    def monotonic(self) -> float:
        return self._base.monotonic()

    async def sleep(self, seconds: float) -> None:
        await self._base.sleep(seconds)


def clock_for(backend: object, base: Clock | None = None) -> Clock:
    """The clock a ledger on ``backend`` judges time by when it is given none:
    the server's (a :class:`ServerClock`), for a backend whose server several
    hosts share, else ``base`` (default: the system clock)."""
    if isinstance(backend, TimedBackend):
        return ServerClock(backend, base)
    return base if base is not None else SystemClock()
