"""Clocks. Everything in jobledger that reads the time, or waits for it, takes a :class:`Clock`.

The pure core never reads a clock: the Stower reads it once per batch and
passes the time in. Timers (poll intervals, heartbeats, timeouts, grace
periods, lease sweeps) wait with ``clock.sleep``. Tests use
:class:`ManualClock` to drive all of it without sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock", "to_ms"]


@runtime_checkable
class Clock(Protocol):
    """A source of the current time, and a way to wait for it."""

    def now(self) -> datetime:
        """Return the current time as an aware UTC datetime. Never blocks."""
        ...

    def monotonic(self) -> float:
        """Return seconds from an arbitrary origin that never goes backwards."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock: wall time for timestamps, ``time.monotonic`` for durations."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when told to. For tests and simulations.

    ``sleep`` waits until :meth:`advance` has moved the monotonic clock past
    the sleeper's deadline; it never waits on real time.
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._monotonic = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    @property
    def sleepers(self) -> int:
        """How many ``sleep`` calls are waiting now (for tests to wait on)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    @property
    def deadlines(self) -> tuple[float, ...]:
        """When each waiting ``sleep`` call ends, on the monotonic clock, earliest
        first (for tests to wait until a timer is set, instead of for a duration)."""
        return tuple(sorted(when for when, _, f in self._sleepers if not f.done()))

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._monotonic + seconds, next(self._order), future))
        await future

    def advance(self, seconds: float | timedelta) -> None:
        """Move both the wall clock and the monotonic clock forward, waking
        every sleeper whose deadline has come."""
        delta = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        if delta < timedelta(0):
            raise ValueError("advance() takes a non-negative duration; use set() to step back")
        self._now += delta
        self._monotonic += delta.total_seconds()
        while self._sleepers and self._sleepers[0][0] <= self._monotonic:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def set(self, when: datetime) -> None:
        """Set the wall clock (it may step back, as real wall clocks do).

        The monotonic clock, and so every sleeper, is unaffected.
        """
        if when.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = when.astimezone(UTC)


def to_ms(when: datetime) -> int:
    """Milliseconds since the Unix epoch for an aware datetime."""
    return int(when.timestamp() * 1000)
