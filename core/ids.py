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


# Two characters for each 10-bit chunk of the value.
_PAIRS = [_ALPHABET[i >> 5] + _ALPHABET[i & 31] for i in range(1024)]
_LOW_BITS = 30  # the last 6 characters; the 20 before them change far less often
_LOW_MASK = (1 << _LOW_BITS) - 1


def _encode_high(high: int) -> str:
    """The first 20 characters: the value's bits above the low 30."""
    return "".join([_PAIRS[(high >> shift) & 1023] for shift in range(90, -1, -10)])


class IdFactory:
    """Makes monotonic, time-ordered ids. Thread-safe; never blocks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0
        self._high = -1
        self._high_text = ""

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
            high = value >> _LOW_BITS
            if high != self._high:  # a new millisecond, or a carry: encode it once
                self._high, self._high_text = high, _encode_high(high)
            head = self._high_text
        low = value & _LOW_MASK
        return f"{prefix}_{head}{_PAIRS[low >> 20]}{_PAIRS[(low >> 10) & 1023]}{_PAIRS[low & 1023]}"


_default = IdFactory()


def new_id(prefix: str, ms: int) -> str:
    """Return a new id with ``prefix`` for time ``ms`` from the process-wide factory."""
    return _default.make(prefix, ms)
