"""Queue capacity in the log: how ``queue:configure`` is decided, how a
queue's record is folded, and the check that keeps a full queue from
starting another job.

A queue's capacity is an event (``queue.configured``), so every process and
host that shares the log sees the same one. Its record (:class:`Queue`)
counts the queue's running jobs: each fold of a job that starts or stops
running moves the count, in the same transaction as the event. The writer
checks the count when it decides a ``job:start``, inside the append
transaction that serialises every writer, so the capacity holds across all
of them. Queues never configured have no record and cost nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping

from .commands import QueueConfigure
from .errors import QueueFull
from .events import AnyEvent, Envelope, QueueConfigured
from .models import Job, Queue
from .status import JobStatus

__all__ = [
    "count_running",
    "decide_configure",
    "evolve_queue",
    "queue_book",
    "queue_room",
    "track_running",
]


def evolve_queue(queue: Queue | None, env: Envelope, running: int) -> Queue:
    """Fold a ``queue.configured`` into the queue's record. ``running`` is
    the count of its jobs running now, used when the queue had no record."""
    event = env.data
    assert isinstance(event, QueueConfigured)
    if queue is None:
        queue = Queue(name=event.queue, running=running)
    return Queue(
        name=queue.name,
        capacity=event.capacity,
        running=queue.running,
        configured_seq=env.seq,
    )


def count_running(name: str, jobs: Iterable[Job | None]) -> int:
    """How many of ``jobs`` are of queue ``name`` and running."""
    return sum(
        1 for job in jobs if job is not None and job.queue == name and job.status is _RUNNING
    )


def track_running(
    queues: MutableMapping[str, Queue], before: Job | None, after: Job | None
) -> str | None:
    """Move the running count of the job's queue, in ``queues``, when the job
    starts or stops running (``after`` is ``None`` for a deleted job).
    Returns the queue's name when its record changed."""
    was = before is not None and before.status is _RUNNING
    now = after is not None and after.status is _RUNNING
    if was == now:
        return None
    job = after if after is not None else before
    assert job is not None
    queue = queues.get(job.queue)
    if queue is None:  # not configured: nothing to count
        return None
    queues[job.queue] = Queue(
        name=queue.name,
        capacity=queue.capacity,
        running=max(0, queue.running + (1 if now else -1)),
        configured_seq=queue.configured_seq,
    )
    return job.queue


def queue_book(
    saved: Iterable[Queue], names: Iterable[str], running: Mapping[str, int]
) -> dict[str, Queue]:
    """Every saved queue record, plus an unsaved one (``configured_seq`` 0,
    no capacity) for each of ``names`` that has none, counting its running
    jobs from ``running`` (queue name to count): what ``LogWriter.load``
    answers when asked for the queues."""
    book = {queue.name: queue for queue in saved}
    for name in names:
        if name not in book:
            book[name] = Queue(name=name, running=running.get(name, 0))
    return book


def decide_configure(command: QueueConfigure, queue: Queue | None) -> list[AnyEvent]:
    """The event of ``queue:configure`` against the queue's record (``None``,
    or not yet configured, for a queue never configured): none when the
    queue is configured with the capacity asked for already, so a process
    that records the same capacity at every start writes nothing."""
    if queue is not None and queue.configured_seq and queue.capacity == command.capacity:
        return []
    return [QueueConfigured(queue=command.queue, capacity=command.capacity)]


def queue_room(job: Job, queue: Queue | None) -> None:
    """Raise ``QueueFull`` if ``job``'s queue may not start another job."""
    if queue is not None and queue.full:
        assert queue.capacity is not None
        raise QueueFull(queue.name, queue.capacity)


_RUNNING = JobStatus.RUNNING
