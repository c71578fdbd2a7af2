"""Clocks. Everything in jobledger that reads the time takes a :class:`Clock`.

The pure core never reads a clock: the Stower reads it once per batch and
passes the time in. Tests use :class:`ManualClock` to drive time without
sleeping.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock", "to_ms"]


@runtime_checkable
class Clock(Protocol):
    """A source of the current time."""

    def now(self) -> datetime:
        """Return the current time as an aware UTC datetime. Never blocks."""
        ...

    def monotonic(self) -> float:
        """Return seconds from an arbitrary origin that never goes backwards."""
        ...


class SystemClock:
    """The real clock: wall time for timestamps, ``time.monotonic`` for durations."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to. For tests and simulations."""

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._monotonic = 0.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float | timedelta) -> None:
        """Move both the wall clock and the monotonic clock forward."""
        delta = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        if delta < timedelta(0):
            raise ValueError("advance() takes a non-negative duration; use set() to step back")
        self._now += delta
        self._monotonic += delta.total_seconds()

    def set(self, when: datetime) -> None:
        """Set the wall clock (it may step back, as real wall clocks do).

        The monotonic clock is unaffected.
        """
        if when.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = when.astimezone(UTC)


def to_ms(when: datetime) -> int:
    """Milliseconds since the Unix epoch for an aware datetime."""
    return int(when.timestamp() * 1000)
