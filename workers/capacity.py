"""Queue capacity: how many jobs of one named queue may run at once across
all the workers of one process."""

from __future__ import annotations

from collections.abc import Callable, Mapping

__all__ = ["QueueCapacity"]


class QueueCapacity:
    """Concurrency limits per queue. A queue without a limit is unbounded.

    Never blocks: runners ``try_acquire`` a place before claiming a job and
    ``release`` it when the job ends; each release calls the listeners, so
    runners waiting for room look again at once.
    """

    def __init__(self, limits: Mapping[str, int] | None = None) -> None:
        self._limits = dict(limits or {})
        for queue, limit in self._limits.items():
            if limit < 1:
                raise ValueError(f"queue {queue!r}: capacity must be at least 1")
        self._used: dict[str, int] = {}
        self._listeners: list[Callable[[], None]] = []

    @property
    def limited(self) -> bool:
        """True if any queue has a limit."""
        return bool(self._limits)

    def limit(self, queue: str) -> int | None:
        return self._limits.get(queue)

    def in_use(self, queue: str) -> int:
        return self._used.get(queue, 0)

    def try_acquire(self, queue: str) -> bool:
        """Take a place in ``queue`` if there is one."""
        limit = self._limits.get(queue)
        used = self._used.get(queue, 0)
        if limit is not None and used >= limit:
            return False
        self._used[queue] = used + 1
        return True

    def release(self, queue: str) -> None:
        """Give back a place taken with ``try_acquire``."""
        self._used[queue] = max(0, self._used.get(queue, 0) - 1)
        for listener in self._listeners:
            listener()

    def on_release(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (which must not block) after every release."""
        self._listeners.append(listener)
