"""The Stower's batch planning: what one batch is decided against.

Before the Stower writes a batch it plans it (:class:`_Plan`: which jobs,
marks, streams and idempotency keys its commands name, and which of them its
cache lacks), collapses each job attempt's progress reports into the last
(:func:`_coalesce_progress`), and decides every command against a
:class:`_BatchState`: the cached and loaded entities overlaid with the
effect of the batch's earlier commands. :class:`_Cache` keeps what recent
batches wrote, so a batch that names only known entities reads nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import msgspec

from jobledger.core import (
    Asset,
    Command,
    Job,
    JobCreate,
    JobledgerError,
    JobProgress,
    Mark,
    Queue,
    Resource,
)
from jobledger.eventbus import Reply
from jobledger.store import Changes, Record

__all__: list[str] = []


class _BatchState:
    """The state ``decide`` sees inside one batch: the cache, overlaid with the
    effect of the batch's earlier commands. ``None`` marks a deleted entity."""

    def __init__(
        self,
        jobs: dict[str, Job | None],
        marks: dict[str, Mark | None],
        versions: dict[str, int],
        keys: dict[tuple[str, str | None, str], str],
        queues: dict[str, Queue],
    ) -> None:
        self.jobs = jobs
        self.marks = marks
        self.created: dict[str, Asset | Resource] = {}  # assets and resources: made once
        self.versions = versions
        self.keys = keys
        self.queues = queues  # every queue's record (a copy: the batch may roll back)
        self.dirty: set[tuple[str, str]] = set()  # (kind, id) of what this batch changed
        self.dirty_queues: set[str] = set()

    def changes(self) -> Changes:
        """The read-model rows this batch changed."""
        changes = Changes()
        for kind, key in self.dirty:
            if kind == "job":
                job = self.jobs[key]
                if job is None:
                    changes.deleted_jobs.append(key)
                else:
                    changes.jobs.append(job)
            elif kind == "mark":
                mark = self.marks[key]
                if mark is None:
                    changes.deleted_marks.append(key)
                else:
                    changes.marks.append(mark)
            else:
                made = self.created[key]
                if isinstance(made, Asset):
                    changes.assets.append(made)
                else:
                    changes.resources.append(made)
        for name in self.dirty_queues:
            queue = self.queues[name]
            if queue.configured_seq:  # (an unsaved record only counts, until configured)
                changes.queues.append(queue)
        return changes

    def entry(self, kind: str, key: str) -> tuple[Job | Mark | Asset | Resource | None, int]:
        """What the cache keeps for ``(kind, key)``: the entity (or ``None``) and
        its stream's version."""
        value: Job | Mark | Asset | Resource | None = (
            self.jobs[key]
            if kind == "job"
            else self.marks[key]
            if kind == "mark"
            else self.created.get(key)
        )
        return value, self.versions.get(key, 0)

    def job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def mark(self, mark_id: str) -> Mark | None:
        return self.marks.get(mark_id)

    def version(self, stream: str) -> int:
        return self.versions.get(stream, 0)

    def job_by_key(self, user_id: str, tenant: str | None, key: str) -> Job | None:
        job_id = self.keys.get((user_id, tenant, key))
        return None if job_id is None else self.jobs.get(job_id)

    def queue(self, name: str) -> Queue | None:
        return self.queues.get(name)


class _Cache:
    """A bounded LRU of the entities the Stower decided on lately, as committed."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[tuple[str, str], Any] = OrderedDict()

    def get(self, key: tuple[str, str]) -> Any:
        value = self.entries.get(key)
        if value is not None:
            self.entries.move_to_end(key)
        return value

    def put(self, key: tuple[str, str], value: Any) -> None:
        self.entries[key] = value
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)

    def clear(self) -> None:
        self.entries.clear()

    def drop(self, stream: str) -> None:
        """Forget the job or mark whose stream is ``stream``."""
        self.entries.pop(("job", stream), None)
        self.entries.pop(("mark", stream), None)


_Written = tuple[list[Record], _BatchState, list[Reply | BaseException]]


class _Plan:
    """What one batch needs: what the cache had (``jobs``, ``marks``,
    ``versions``) and what must be read."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job | None] = {}
        self.marks: dict[str, Mark | None] = {}
        self.versions: dict[str, int] = {}
        self.missing_jobs: dict[str, None] = {}  # (dicts: ordered sets)
        self.missing_marks: dict[str, None] = {}
        self.new_streams: list[str] = []
        self.keys: list[tuple[str, str | None, str]] = []
        self.configured: list[str] = []  # the queues the batch's ``queue:configure`` name
        self.from_cache = False

    def known(
        self, commands: Sequence[Command | JobledgerError], queues: dict[str, Queue] | None
    ) -> bool:
        """Whether the batch can be decided without reading: the queues'
        records known (``queues``), no queue configured, no idempotency key,
        no new asset, no mark outside the cache, and each job outside the
        cache named by its ``job:create`` commands alone."""
        if self.keys or self.new_streams or self.missing_marks or self.configured:
            return False
        if queues is None:
            return False
        if not self.missing_jobs:
            return True
        guessed = set(self.missing_jobs)
        return all(
            isinstance(command, JobCreate)
            for command in commands
            if isinstance(command, Command) and getattr(command, "job_id", None) in guessed
        )

    def wanted(
        self,
    ) -> tuple[list[str], list[str], list[str], list[tuple[str, str | None, str]]]:
        """The arguments of ``LogWriter.load``."""
        jobs, marks = list(self.missing_jobs), list(self.missing_marks)
        queues = [f"queue:{name}" for name in self.configured]
        return jobs, marks, jobs + marks + self.new_streams + queues, self.keys


def _coalesce_progress(commands: list[Command | JobledgerError]) -> dict[int, int]:
    """Progress reports of one job attempt in one batch collapse into the last:
    returns superseded index → surviving index. (A worker may report often;
    the log keeps at most one progress event per job attempt per batch.) A
    checkpoint is never lost: if the survivor carries none, it takes the
    latest one of those it supersedes (``commands`` is updated in place)."""
    last: dict[tuple[str, int], int] = {}
    checkpoints: dict[tuple[str, int], dict[str, Any]] = {}
    for index, command in enumerate(commands):
        if isinstance(command, JobProgress):
            key = (command.job_id, command.attempt)
            last[key] = index
            if command.checkpoint is not None:
                checkpoints[key] = command.checkpoint
    survivors: dict[int, int] = {}
    for index, command in enumerate(commands):
        if isinstance(command, JobProgress):
            key = (command.job_id, command.attempt)
            survivor = last[key]
            if survivor != index:
                survivors[index] = survivor
            elif command.checkpoint is None and key in checkpoints:
                commands[index] = msgspec.structs.replace(command, checkpoint=checkpoints[key])
    return survivors
