"""The worker runner: polls, claims, executes and reports for one JobWorker.

One dispatcher task per runner asks the read model for as many pending jobs
of the worker's types as it has free slots (highest priority, then oldest),
claims them together with concurrent ``job:start`` commands naming the
version it saw, and runs each won job in its own task: ``execute``, then
``job:complete`` with the result or ``job:fail`` with the error. A lost
claim (another worker got there first) is not an error.

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
_REPORT_GRACE = 5.0  # seconds a cancelled job's failure report may take


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
    """Runs one :class:`JobWorker` until stopped. Owns its tasks.

    One dispatcher task per runner finds work for all the worker's free
    slots at once and claims it with concurrent ``job:start`` commands (which
    the Stower commits together), so the runner's own slots never race each
    other for a job. Each claimed job runs in its own task.

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
        self._slot_free = asyncio.Event()
        self._stopping = False
        self._dispatcher: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        self._subscription: Subscription | None = None
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
        """Subscribe to wake-ups and start dispatching."""
        if self._dispatcher is not None:
            raise RuntimeError("the runner is already started")
        self._subscription = self._bus.subscribe(self._on_created, "job.created")
        self._dispatcher = asyncio.get_running_loop().create_task(
            self._supervised_dispatch(), name=f"jobledger-worker-{self.name}"
        )

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
        self._slot_free.set()
        if self._subscription is not None:
            self._subscription.unsubscribe()
            self._subscription = None
        if self._dispatcher is not None:
            await asyncio.wait([self._dispatcher])
        if self._jobs:
            _, pending = await asyncio.wait(set(self._jobs), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("jobs cancelled at stop", worker=self.name, count=len(pending))
                await asyncio.wait(pending)

    async def _supervised_dispatch(self) -> None:
        try:
            await self._dispatch()
        except asyncio.CancelledError:
            raise
        except LedgerClosed:
            log.info("worker stops dispatching: the ledger is closed", worker=self.name)
        except Exception as exc:
            # The runner itself failed (not a job: job errors are reported).
            log.critical("worker dispatcher crashed", worker=self.name, exc_info=exc)
            raise

    async def _dispatch(self) -> None:
        while not self._stopping:
            free = self.worker.concurrency - len(self._jobs)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            self._wake.clear()
            claimed = await self._claim(free)
            for job in claimed:
                task = asyncio.get_running_loop().create_task(
                    self._run(job), name=f"jobledger-job-{job.id}"
                )
                self._jobs.add(task)
                task.add_done_callback(self._job_done)
            if claimed:
                continue  # there may be more work right away
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._jobs.discard(task)
        self._slot_free.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("job task failed", worker=self.name, exc_info=task.exception())

    async def _claim(self, limit: int) -> list[Job]:
        """Claim up to ``limit`` pending jobs at once; return the ones won."""
        self._polls += 1
        candidates = await self._reader.next_pending(self._types, self._clock.now(), limit=limit)
        if not candidates or self._stopping:
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
            if isinstance(reply, ConcurrencyConflict | InvalidTransition | NotFound):
                self._lost += 1  # another worker claimed it first
                continue
            if isinstance(reply, BaseException):
                raise reply
            started: Job | None = job
            for env in reply:
                started = evolve_job(started, env)
            assert started is not None
            won.append(started)
        self._claimed += len(won)
        return won

    async def _run(self, job: Job) -> None:
        ctx = JobContext(job, worker=self.name, bus=self._bus, clock=self._clock, ids=self._ids)
        actor = f"worker:{self.name}"
        report: JobComplete | JobFail
        with structlog.contextvars.bound_contextvars(job_id=job.id, worker=self.name):
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
                stopped = JobFail(
                    job_id=job.id,
                    attempt=ctx.attempt,
                    error="the worker stopped before the job finished",
                    error_type="WorkerStopped",
                    actor=actor,
                    correlation_id=job.id,
                )
                # Report it, but never let a shutdown wait on the report forever.
                with contextlib.suppress(TimeoutError, JobledgerError):
                    await asyncio.wait_for(asyncio.shield(self._report(stopped)), _REPORT_GRACE)
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
            running=self._dispatcher is not None and not self._dispatcher.done(),
            slots=self.worker.concurrency,
            active=len(self._jobs),
            claimed=self._claimed,
            lost_claims=self._lost,
            completed=self._completed,
            failed=self._failed,
            report_errors=self._report_errors,
            polls=self._polls,
        )
