"""Time-ordered, sortable identifiers.

An id is ``<prefix>_`` followed by 26 characters of Crockford base32: 48 bits
of milliseconds since the Unix epoch, then 80 bits that are random for the
first id of each millisecond and incremented for the next ones (the ULID
monotonic scheme). Ids made by one :class:`IdFactory` therefore sort in the
order they were made, and ids from different processes sort by time.
"""

from __future__ import annotations

import os
import threading

__all__ = ["IdFactory", "new_id"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1


# Two characters for each 10-bit chunk: 13 lookups make the 26 characters.
_PAIRS = [_ALPHABET[i >> 5] + _ALPHABET[i & 31] for i in range(1024)]
_SHIFTS = tuple(range(120, -1, -10))


def _encode(value: int) -> str:
    """The 26 Crockford base32 characters of a 128-bit ``value``, most significant first."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


class IdFactory:
    """Makes monotonic, time-ordered ids. Thread-safe; never blocks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def make(self, prefix: str, ms: int) -> str:
        """Return a new id for ``ms`` milliseconds since the epoch.

        If ``ms`` is not after the last one used (several ids in one
        millisecond, or a clock that stepped back), the previous timestamp is
        kept and the random part is incremented, so ids never go backwards.
        """
        with self._lock:
            if ms > self._last_ms:
                self._last_ms = ms
                self._last_random = int.from_bytes(os.urandom(10), "big") >> 1
            else:
                self._last_random += 1
                if self._last_random > _RANDOM_MAX:  # pragma: no cover - 2**79 ids in one ms
                    self._last_ms += 1
                    self._last_random = 0
            value = (self._last_ms << _RANDOM_BITS) | self._last_random
        return f"{prefix}_{_encode(value)}"


_default = IdFactory()


def new_id(prefix: str, ms: int) -> str:
    """Return a new id with ``prefix`` for time ``ms`` from the process-wide factory."""
    return _default.make(prefix, ms)
