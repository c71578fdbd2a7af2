"""Claiming: how a runner gets its jobs (a mixin of :class:`~jobledger.workers.WorkerRunner`).

Two ways, both ending in a fenced ``job:start`` that names the version of
the job it saw. The runner's dispatcher asks the claim desk for jobs and
sends their claims itself (``_claim``); and while the runner has a free
slot, the Stower may claim a job for it in the batch that frees the slot
(the desk's :class:`~jobledger.workers.desk.Idle`: ``free``, ``claim_for``,
``reserve``, ``unreserve``, ``accept``). Either way a slot is held from the
moment a claim is made until it is answered, so a runner never runs more
jobs at once than its ``concurrency``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING

from jobledger.core import (
    ConcurrencyConflict,
    Holder,
    InvalidTransition,
    Job,
    JobStart,
    NotFound,
    QueueFull,
    StorageError,
    ValidationError,
    evolve_job,
    get_logger,
)
from jobledger.eventbus import EventBus

from .capacity import QueueCapacity
from .desk import ClaimDesk
from .worker import JobWorker

__all__: list[str] = []

log = get_logger("workers")


class _Claiming:
    """The claiming half of a runner. The runner provides the attributes
    declared here for the type checker, and ``_start`` (run a job won)."""

    if TYPE_CHECKING:
        worker: JobWorker
        _bus: EventBus
        _desk: ClaimDesk
        _capacity: QueueCapacity
        _holder: Holder
        _types: tuple[str, ...]
        _type_set: frozenset[str]
        _counts: dict[str, int]
        _claimed_at: datetime
        _stopping: bool
        _failed: Exception | None
        _jobs: set[asyncio.Task[None]]
        _reserved: int
        _claiming: int
        _finishing: int
        _wake: asyncio.Event
        _slot_free: asyncio.Event
        _none_reserved: asyncio.Event

        @property
        def name(self) -> str: ...

        def _start(self, job: Job) -> None: ...

    async def _claim(self, limit: int) -> list[Job]:
        """Claim up to ``limit`` pending jobs at once; return the ones won."""
        self._counts["polls"] += 1
        # The slots asked for are held while the desk deals: the Stower must
        # not propose a claim for one of them meanwhile (the runner would
        # then run more jobs at once than its concurrency).
        self._claiming += limit
        try:
            candidates, self._claimed_at = await self._desk.deal(self._types, limit)
        finally:
            self._claiming -= limit
        if not candidates:
            return []
        self._claiming += len(candidates)
        try:
            return await self._propose(candidates)
        finally:
            self._claiming -= len(candidates)
            self._desk.answered(job.id for job in candidates)

    async def _propose(self, candidates: list[Job]) -> list[Job]:
        """Send a fenced claim for each of ``candidates`` (dealt to this
        runner, with their queue places taken); return the ones won."""
        if self._stopping:
            for job in candidates:
                self._capacity.release(job.queue)
            return []
        actor = f"worker:{self.name}"
        replies = await asyncio.gather(
            *(
                self._bus.send(
                    JobStart(
                        job_id=job.id,
                        worker=self.name,
                        expected_version=job.version,
                        lease_seconds=self.worker.lease_seconds,
                        holder=self._holder,
                        actor=actor,
                        correlation_id=job.id,
                    )
                )
                for job in candidates
            ),
            return_exceptions=True,
        )
        won: list[Job] = []
        for job, reply in zip(candidates, replies, strict=True):
            if isinstance(reply, BaseException):
                self._capacity.release(job.queue)
                if isinstance(reply, QueueFull):  # other processes' jobs fill it
                    self._capacity.refused(job.queue)
                    self._counts["full"] += 1
                    continue
                if isinstance(reply, ConcurrencyConflict | InvalidTransition | NotFound):
                    self._counts["lost"] += 1  # another worker claimed it first
                    continue
                if isinstance(reply, ValidationError):  # e.g. not due yet on the Stower's clock
                    continue
                if isinstance(reply, StorageError):  # rolled back: not claimed
                    log.warning("a claim failed", job_id=job.id, error=str(reply))
                    continue
                raise reply
            started: Job | None = job
            for env in reply:
                started = evolve_job(started, env)
            assert started is not None
            won.append(started)
        self._counts["claimed"] += len(won)
        return won

    # -- claims the Stower proposes for it while idle (the desk's ``Idle``) --

    @property
    def job_types(self) -> frozenset[str]:
        return self._type_set

    def free(self) -> int:
        busy = len(self._jobs) - self._finishing + self._reserved + self._claiming
        return 0 if self._stopping else self.worker.concurrency - busy

    def running(self) -> int:
        return len(self._jobs)

    def claim_for(self, job: Job) -> JobStart:
        return JobStart(
            job_id=job.id,
            worker=self.name,
            expected_version=job.version,
            lease_seconds=self.worker.lease_seconds,
            holder=self._holder,
            actor=f"worker:{self.name}",
            correlation_id=job.id,
        )

    def reserve(self) -> None:
        self._reserved += 1
        self._none_reserved.clear()

    def unreserve(self) -> None:
        self._reserved -= 1
        if not self._reserved:
            self._none_reserved.set()
        # Not started: the slot is free again, for the dispatcher (which may
        # be waiting for a slot that only this reservation held).
        self._slot_free.set()
        self._wake.set()

    def accept(self, job: Job) -> None:
        self._counts["claimed"] += 1
        self._counts["proposed"] += 1
        try:
            self._start(job)  # (a stopping runner runs it too: its stop releases it)
        except Exception as exc:
            # This runner failed, not the Stower that hands it the job: its
            # dispatcher raises it, as if it had claimed the job itself.
            self._failed = exc
            self._slot_free.set()
            self._wake.set()
            if self._stopping:
                log.error("starting a job failed", worker=self.name, exc_info=exc)
        finally:
            self._reserved -= 1
            if not self._reserved:
                self._none_reserved.set()
