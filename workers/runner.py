"""The worker runner: polls, claims, executes and reports for one JobWorker.

Each of the worker's ``concurrency`` slots loops: find the next pending job
of the worker's types (highest priority, then oldest), claim it with
``job:start`` naming the version it saw, run ``execute``, and report
``job:complete`` with the result or ``job:fail`` with the error. A lost
claim (another worker got there first) is not an error: the slot looks
again.

The runner wakes at once when a ``job.created`` of one of its types is
published in this process, and otherwise polls every ``poll_interval``
seconds (for jobs written by other processes).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
import structlog

from jobledger.core import (
    Clock,
    ConcurrencyConflict,
    Envelope,
    IdFactory,
    InvalidTransition,
    Job,
    JobComplete,
    JobFail,
    JobledgerError,
    JobReader,
    JobStart,
    LedgerClosed,
    NotFound,
    SystemClock,
    ValidationError,
    evolve_job,
    get_logger,
)
from jobledger.eventbus import EventBus, Subscription

from .worker import JobContext, JobWorker, result_of

__all__ = ["WorkerRunner", "WorkerStatistics"]

log = get_logger("workers")

_MAX_ERROR = 4000


class WorkerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A runner's counters. ``active`` is the number of jobs executing now."""

    worker: str
    job_types: tuple[str, ...]
    running: bool
    slots: int
    active: int
    claimed: int
    lost_claims: int
    completed: int
    failed: int
    report_errors: int
    polls: int


class WorkerRunner:
    """Runs one :class:`JobWorker` until stopped. Owns its slot tasks.

    ``stop(timeout)`` stops claiming, lets running jobs finish for up to
    ``timeout`` seconds, then cancels them; a cancelled job is reported
    failed ("worker stopped").
    """

    def __init__(
        self,
        worker: JobWorker,
        bus: EventBus,
        reader: JobReader,
        *,
        clock: Clock | None = None,
        ids: IdFactory | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self.worker = worker
        self._bus = bus
        self._reader = reader
        self._clock = clock or SystemClock()
        self._ids = ids or IdFactory()
        self._poll_interval = poll_interval
        self._types = tuple(worker.job_types)
        self._type_set = frozenset(self._types)
        self._wake = asyncio.Event()
        self._stopping = False
        self._slots: list[asyncio.Task[None]] = []
        self._subscription: Subscription | None = None
        self._active = 0
        self._claimed = 0
        self._lost = 0
        self._completed = 0
        self._failed = 0
        self._report_errors = 0
        self._polls = 0

    @property
    def name(self) -> str:
        return self.worker.name

    async def start(self) -> None:
        """Subscribe to wake-ups and start the slots."""
        if self._slots:
            raise RuntimeError("the runner is already started")
        self._subscription = self._bus.subscribe(self._on_created, "job.created")
        loop = asyncio.get_running_loop()
        self._slots = [
            loop.create_task(self._supervised_slot(i), name=f"jobledger-worker-{self.name}-{i}")
            for i in range(self.worker.concurrency)
        ]

    def _on_created(self, env: Envelope) -> None:
        if getattr(env.data, "job_type", None) in self._type_set:
            self._wake.set()

    def wake(self) -> None:
        """Look for work now instead of at the next poll. Never blocks."""
        self._wake.set()

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; give running jobs ``timeout`` seconds; then cancel them."""
        self._stopping = True
        self._wake.set()
        if self._subscription is not None:
            self._subscription.unsubscribe()
            self._subscription = None
        if not self._slots:
            return
        _, pending = await asyncio.wait(self._slots, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("jobs cancelled at stop", worker=self.name, count=len(pending))
            await asyncio.wait(pending)
        self._slots = []

    async def _supervised_slot(self, number: int) -> None:
        try:
            await self._slot()
        except asyncio.CancelledError:
            raise
        except LedgerClosed:
            log.info("worker slot ends: the ledger is closed", worker=self.name, slot=number)
        except Exception as exc:
            # The runner itself failed (not the job: job errors are reported).
            log.critical("worker slot crashed", worker=self.name, slot=number, exc_info=exc)
            raise

    async def _slot(self) -> None:
        while not self._stopping:
            self._wake.clear()
            job = await self._claim_next()
            if job is not None:
                await self._run(job)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)

    async def _claim_next(self) -> Job | None:
        self._polls += 1
        candidates = await self._reader.next_pending(
            self._types, self._clock.now(), limit=self.worker.concurrency
        )
        for job in candidates:
            if self._stopping:
                return None
            try:
                envelopes = await self._bus.send(
                    JobStart(
                        job_id=job.id,
                        worker=self.name,
                        expected_version=job.version,
                        lease_seconds=self.worker.lease_seconds,
                        actor=f"worker:{self.name}",
                        correlation_id=job.id,
                    )
                )
            except (ConcurrencyConflict, InvalidTransition, NotFound):
                self._lost += 1  # another worker claimed it first
                continue
            self._claimed += 1
            started: Job | None = job
            for env in envelopes:
                started = evolve_job(started, env)
            return started
        return None

    async def _run(self, job: Job) -> None:
        ctx = JobContext(job, worker=self.name, bus=self._bus, clock=self._clock, ids=self._ids)
        actor = f"worker:{self.name}"
        self._active += 1
        report: JobComplete | JobFail
        with structlog.contextvars.bound_contextvars(job_id=job.id, worker=self.name):
            try:
                try:
                    value: Any = await self.worker.execute(job, ctx)
                    report = JobComplete(
                        job_id=job.id,
                        attempt=ctx.attempt,
                        result=result_of(value),
                        actor=actor,
                        correlation_id=job.id,
                    )
                except asyncio.CancelledError:
                    await asyncio.shield(
                        self._report(
                            JobFail(
                                job_id=job.id,
                                attempt=ctx.attempt,
                                error="the worker stopped before the job finished",
                                error_type="WorkerStopped",
                                actor=actor,
                                correlation_id=job.id,
                            )
                        )
                    )
                    raise
                except Exception as exc:
                    log.info("job raised", error=repr(exc))
                    report = JobFail(
                        job_id=job.id,
                        attempt=ctx.attempt,
                        error=(str(exc) or type(exc).__name__)[:_MAX_ERROR],
                        error_type=type(exc).__name__[:200],
                        actor=actor,
                        correlation_id=job.id,
                    )
                await self._report(report)
            finally:
                self._active -= 1

    async def _report(self, report: JobComplete | JobFail) -> None:
        try:
            await self._bus.send(report)
        except LedgerClosed:
            raise
        except ValidationError as exc:
            if isinstance(report, JobComplete):
                # The result itself was refused (too large, not JSON): the job fails
                # with the reason rather than staying running.
                await self._report(
                    JobFail(
                        job_id=report.job_id,
                        attempt=report.attempt,
                        error=f"the result was refused: {exc}"[:_MAX_ERROR],
                        error_type="InvalidResult",
                        actor=report.actor,
                        correlation_id=report.correlation_id,
                    )
                )
                return
            self._report_errors += 1
            log.warning("report refused", report=type(report).__name__, error=repr(exc))
            return
        except JobledgerError as exc:
            # For example StaleAttempt: the claim was lost while executing.
            self._report_errors += 1
            log.warning("report refused", report=type(report).__name__, error=repr(exc))
            return
        if isinstance(report, JobComplete):
            self._completed += 1
        else:
            self._failed += 1

    def statistics(self) -> WorkerStatistics:
        """A snapshot of the runner's counters. Never blocks."""
        return WorkerStatistics(
            worker=self.name,
            job_types=self._types,
            running=any(not t.done() for t in self._slots),
            slots=len(self._slots),
            active=self._active,
            claimed=self._claimed,
            lost_claims=self._lost,
            completed=self._completed,
            failed=self._failed,
            report_errors=self._report_errors,
            polls=self._polls,
        )
