"""Queue capacity as one process sees it: how many jobs of one named queue
its workers may run at once, and which queues the log last said were full.

The capacity that holds across processes and hosts is the one recorded in
the log (``queue.configured``), checked by the writer when it decides each
``job:start`` (:mod:`jobledger.core.queues`). This is the process's hint of
it, so that its workers do not claim jobs the writer would refuse: the
limits given to this process, and the log's queue records as last read."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from jobledger.core import Queue, ValidationError

__all__ = ["QueueCapacity"]


class QueueCapacity:
    """Concurrency limits per queue. A queue without a limit is unbounded.

    Never blocks: runners ``try_acquire`` a place before claiming a job and
    ``release`` it when the job ends; each release calls the listeners, so
    runners waiting for room look again at once.
    """

    def __init__(self, limits: Mapping[str, int] | None = None) -> None:
        self._limits: dict[str, int] = {}
        for queue, limit in (limits or {}).items():
            self.set_limit(queue, limit)
        self._used: dict[str, int] = {}
        self._listeners: list[Callable[[], None]] = []
        self._full: set[str] = set()  # full, as the log's records said when last read
        self.watching = False
        """Whether the log records a capacity: then whoever deals jobs reads
        the queues' records (``observe``) before dealing."""

    @property
    def limited(self) -> bool:
        """True if any queue has a limit, here or in the log."""
        return bool(self._limits) or self.watching

    def observe(self, queues: Iterable[Queue]) -> None:
        """The log's queue records, just read: their capacities become this
        process's limits, and a queue its record says is full takes no job
        until the next read says otherwise."""
        configured = [queue for queue in queues if queue.configured_seq]
        for queue in configured:
            self.set_limit(queue.name, queue.capacity)
        self._full = {queue.name for queue in configured if queue.full}
        self.watching = self.watching or bool(configured)

    def refused(self, queue: str) -> None:
        """The writer refused a claim because ``queue`` was full (another
        process's jobs fill it): no more of its jobs until the next read."""
        self._full.add(queue)
        self.watching = True

    def set_limit(self, queue: str, limit: int | None) -> None:
        """Change ``queue``'s limit (``None``: unbounded)."""
        if limit is None:
            self._limits.pop(queue, None)
        elif not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValidationError(
                f"queue {queue!r}: a capacity is an int of at least 1", field="queues"
            )
        else:
            self._limits[queue] = limit

    def limit(self, queue: str) -> int | None:
        return self._limits.get(queue)

    def in_use(self, queue: str) -> int:
        return self._used.get(queue, 0)

    def try_acquire(self, queue: str) -> bool:
        """Take a place in ``queue`` if there is one."""
        limit = self._limits.get(queue)
        used = self._used.get(queue, 0)
        if (limit is not None and used >= limit) or queue in self._full:
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
