"""The worker runner: polls, claims, executes, heartbeats and reports for one JobWorker.

One dispatcher task per runner asks the read model for as many pending jobs
of the worker's types as it has free slots (highest priority, then oldest;
skipping jobs whose queue is at capacity), claims them together with
concurrent ``job:start`` commands naming the version it saw, and runs each
won job in its own task. While jobs run, one heartbeat task per runner
renews the leases of all of them every third of ``lease_seconds`` (one
batch for all), and the runner enforces each job's timeout and passes cancel
and suspend requests to its context; when ``execute`` ends, it reports how
(see :mod:`jobledger.workers.worker`). A lost claim (another worker got there
first) is not an error. Nothing else runs beside a job: a lost lease, a stop
request or a timer rings the job's alarm, a future its task waits on.

A claim names this process as the lease's holder (:func:`this_holder`), so
that if the process dies, a ledger on the same host recovers its jobs at
once. A runner that stops on purpose releases the lease of every job it
cancels (``job:release``): the job is pending again at once and spends
neither a retry nor a recovery. An ``execute`` that will not stop when
cancelled (it swallows ``CancelledError``) is abandoned after
``ABANDON_AFTER`` seconds, its lease released, with a warning naming the
worker: a stop never hangs on it.

The runner wakes at once when a ``job.created`` (or a retry, a resume, an
expired lease) of one of its types is published in this process, or a queue
place frees up, and otherwise polls every ``poll_interval`` seconds of its
clock (for jobs written by other processes, and for delayed jobs coming due).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog

from jobledger.core import (
    Clock,
    ContentStore,
    Envelope,
    IdFactory,
    Job,
    JobCancel,
    JobComplete,
    JobFail,
    JobledgerError,
    JobPartial,
    JobReader,
    JobRelease,
    JobSuspend,
    LedgerClosed,
    Registry,
    StorageError,
    SystemClock,
    ValidationError,
    get_logger,
    this_holder,
)
from jobledger.core.faults import Faults
from jobledger.eventbus import EventBus, Subscription

from .capacity import QueueCapacity
from .claiming import _Claiming
from .desk import ClaimDesk
from .heartbeats import Heartbeats
from .reports import MAX_ERROR, Report, report_of
from .statistics import WorkerStatistics
from .worker import JobContext, JobWorker

__all__ = ["ABANDON_AFTER", "WorkerRunner", "WorkerStatistics"]

log = get_logger("workers")

_REPORT_GRACE = 5.0  # seconds a cancelled job's last report may take
_WAKING_EVENTS = (
    "job.created",
    "job.retry_scheduled",
    "job.lease_expired",
    "job.released",
    "job.resumed",
    "job.retried",
)

ABANDON_AFTER = 1.0
"""Seconds a cancelled ``execute`` gets to end before the runner gives up on
it (it swallowed the cancellation): its lease is released and a warning
names the worker. Real time: it bounds how long a stop can take."""


class _Alarm:
    """Why a running job must be looked at: ``rung`` resolves when ``ring`` is
    first called after the last ``take``; ``take`` returns the reasons so far."""

    __slots__ = ("reasons", "rung")

    def __init__(self) -> None:
        self.reasons: set[str] = set()
        self.rung: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def ring(self, reason: str) -> None:
        self.reasons.add(reason)
        if not self.rung.done():
            self.rung.set_result(None)

    def take(self) -> set[str]:
        reasons, self.reasons = self.reasons, set()
        self.rung = asyncio.get_running_loop().create_future()
        return reasons


class WorkerRunner(_Claiming):
    """Runs one :class:`JobWorker` until stopped. Owns its tasks.

    ``stop(timeout)`` stops claiming, lets running jobs finish for up to
    ``timeout`` seconds, then cancels them and releases their leases
    (``job.released``): each is pending again at once, for another worker,
    having spent neither a retry nor a recovery. ``faults`` (reliability
    tests only) is reached at the runner's crash points, and at its jobs'
    (:mod:`jobledger.core.faults`). If the dispatcher itself fails (not a
    job: a job's error is reported), it is logged and ``on_crash`` is called
    with the error (the owner's cue to close); without ``on_crash`` the
    dispatcher's task ends with it.
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
        capacity: QueueCapacity | None = None,
        registry: Registry | None = None,
        content: ContentStore | None = None,
        faults: Faults | None = None,
        on_crash: Callable[[BaseException], None] | None = None,
        desk: ClaimDesk | None = None,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self.worker = worker
        self._bus = bus
        self._reader = reader
        self._clock = clock or SystemClock()
        self._ids = ids or IdFactory()
        self._poll_interval = poll_interval
        self._capacity = capacity or QueueCapacity()
        self._registry = registry or Registry()
        self._content = content
        self._faults = faults
        self._on_crash = on_crash
        self._capacity.on_release(self.wake)
        self._desk = desk or ClaimDesk(reader, self._clock, self._capacity)
        self._types = tuple(worker.job_types)
        self._type_set = frozenset(self._types)
        self._wake = asyncio.Event()
        self._graceless = asyncio.Event()  # end_grace(): stop without waiting for jobs
        self._slot_free = asyncio.Event()
        self._reserved = 0  # slots held for claims the Stower proposed for this runner
        self._claiming = 0  # slots held for claims this runner sent itself
        self._finishing = 0  # jobs whose work has ended, their report not yet answered
        self._none_reserved = asyncio.Event()
        self._none_reserved.set()
        self._stopping = False
        self._failed: Exception | None = None  # starting a proposed job failed (raised here)
        self._dispatcher: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        self._contexts: dict[str, JobContext] = {}
        self._alarms: dict[str, _Alarm] = {}
        self._heartbeats = Heartbeats(
            f"jobledger-heartbeats-{worker.name}",
            worker.lease_seconds,
            self._clock,
            reader,
            self._contexts,
            on_lost=self._lease_lost,
        )
        self._subscriptions: list[Subscription] = []
        self._holder = this_holder()  # (taken again at start: a forked child is another)
        self._claimed_at = datetime.min.replace(tzinfo=UTC)  # when the last claim looked
        self._counts = dict.fromkeys(
            (
                "claimed",
                "lost",
                "full",
                "completed",
                "failed",
                "ended_otherwise",
                "timed_out",
                "report_errors",
                "polls",
                "released",
                "abandoned",
                "proposed",
            ),
            0,
        )

    @property
    def name(self) -> str:
        return self.worker.name

    async def start(self) -> None:
        """Subscribe to wake-ups and stop requests, and start dispatching."""
        if self._dispatcher is not None:
            raise RuntimeError("the runner is already started")
        self._holder = this_holder()
        self._subscriptions = [
            self._bus.subscribe(self._on_ready, *_WAKING_EVENTS),
            self._bus.subscribe(
                self._on_stop_request, "job.cancel_requested", "job.suspend_requested"
            ),
        ]
        self._dispatcher = asyncio.get_running_loop().create_task(
            self._supervised_dispatch(), name=f"jobledger-worker-{self.name}"
        )
        # While it has a free slot, the Stower may claim a job for it in the
        # batch that makes the job runnable, or that ends its previous job.
        self._desk.offer(self)

    def _on_ready(self, env: Envelope) -> None:
        job_type = getattr(env.data, "job_type", None)
        if job_type is None or job_type in self._type_set:
            self._wake.set()  # (retries and resumes do not name their type: look anyway)

    def _on_stop_request(self, env: Envelope) -> None:
        ctx = self._contexts.get(env.stream)
        if ctx is not None:
            ctx.request_stop(
                cancel=env.type == "job.cancel_requested",
                suspend=env.type == "job.suspend_requested",
                cause=env.event_id,
            )

    def wake(self) -> None:
        """Look for work now instead of at the next poll. Never blocks."""
        self._wake.set()

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; give running jobs ``timeout`` seconds; then cancel them
        and release their leases. Returns within about ``timeout`` plus
        ``ABANDON_AFTER`` plus the 5 s a last report may take, whatever
        ``execute`` does."""
        self._stopping = True
        self._wake.set()
        self._slot_free.set()
        for subscription in self._subscriptions:
            subscription.unsubscribe()
        self._subscriptions = []
        self._desk.withdraw(self)
        if self._dispatcher is not None:
            await asyncio.wait([self._dispatcher])
        if self._reserved:  # a claim proposed for it is in a batch: see how it ends
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._none_reserved.wait(), _REPORT_GRACE)
        if self._jobs:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            graceless = asyncio.ensure_future(self._graceless.wait())
            try:
                while self._jobs and not graceless.done() and loop.time() < deadline:
                    await asyncio.wait(
                        {*self._jobs, graceless},
                        timeout=deadline - loop.time(),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
            finally:
                graceless.cancel()
        pending = set(self._jobs)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("jobs cancelled at stop", worker=self.name, count=len(pending))
            await asyncio.wait(pending)
        await self._heartbeats.stop()

    def end_grace(self) -> None:
        """Cut a stop's grace short: the jobs still running are cancelled now
        and their leases released (as when the grace runs out). Before a
        stop, the stop that comes then has no grace. Never blocks."""
        self._graceless.set()

    # -- dispatching -----------------------------------------------------

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
            if self._on_crash is None:
                raise
            self._on_crash(exc)  # the owner collects it (and closes)

    async def _dispatch(self) -> None:
        while not self._stopping:
            if self._failed is not None:
                raise self._failed
            free = self.free()
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            self._wake.clear()
            try:
                claimed = await self._claim(free)
            except StorageError as exc:
                # The disk failed (full, an I/O error): nothing was claimed, or
                # a claim is in doubt. Try again at the next poll.
                log.warning("claiming failed; trying again", worker=self.name, error=str(exc))
                await self._nap(self._poll_interval)
                continue
            for job in claimed:
                self._start(job)
            if claimed:
                continue  # there may be more work right away
            await self._nap(await self._until_due())

    def _start(self, job: Job) -> None:
        """Run a job this runner has claimed, in a task of its own."""
        if self._faults is not None:
            self._faults.reach("runner.after_claim")
        task = asyncio.get_running_loop().create_task(
            self._run(job), name=f"jobledger-job-{job.id}"
        )
        self._jobs.add(task)
        task.add_done_callback(self._job_done)

    async def _until_due(self) -> float:
        """Seconds until the next poll: the poll interval, or sooner if a
        delayed job (a retry in its backoff) comes due before it."""
        try:
            due = await self._desk.next_due(self._types)
            wait = (due - self._clock.now()).total_seconds() if due is not None else None
        except (StorageError, ArithmeticError, ValueError) as exc:  # no row stops dispatching
            log.warning("finding the next due job failed", worker=self.name, error=repr(exc))
            return self._poll_interval
        if wait is None:
            return self._poll_interval
        if wait <= 0:
            if due is not None and due > self._claimed_at:
                # It came due after the claim looked: look again now.
                return 0.0
            # Due but not claimed (its queue is full, or another worker won):
            # a release or a new event wakes us; otherwise poll as usual.
            return self._poll_interval
        return min(self._poll_interval, wait)

    async def _nap(self, seconds: float) -> None:
        """Wait for a wake-up or ``seconds``, whichever comes first."""
        woken = asyncio.ensure_future(self._wake.wait())
        timer = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait([woken, timer], return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            timer.cancel()

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._jobs.discard(task)
        self._slot_free.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("job task failed", worker=self.name, exc_info=task.exception())

    # -- running one job -------------------------------------------------

    async def _run(self, job: Job) -> None:
        alarm = _Alarm()
        ctx = JobContext(
            job,
            worker=self.name,
            bus=self._bus,
            clock=self._clock,
            ids=self._ids,
            lease_seconds=self.worker.lease_seconds,
            progress_interval=self.worker.progress_interval,
            on_stop=lambda: alarm.ring("stop"),
            content=self._content,
            reader=self._reader,
            faults=self._faults,
        )
        self._contexts[job.id] = ctx
        self._alarms[job.id] = alarm
        self._heartbeats.start()
        finished = False
        try:
            with structlog.contextvars.bound_contextvars(job_id=job.id, worker=self.name):
                log.info("job started", job_type=job.job_type, attempt=job.attempt)
                try:
                    report = await self._execute(job, ctx, alarm)
                except asyncio.CancelledError:
                    log.info("job released", reason="the worker stopped")
                    # Stopped before the work ended: give the job back, for another worker.
                    released = JobRelease(
                        job_id=job.id,
                        attempt=ctx.attempt,
                        reason="the worker stopped before the job finished",
                        actor=ctx.actor,
                        correlation_id=job.id,
                        causation_id=ctx.cause,
                    )
                    await self._settle(asyncio.ensure_future(self._report(released)))
                    raise
                # The work has ended: its report goes out even if a stop comes now
                # (releasing a finished job would run it again). Its slot is free
                # for the next job, which the Stower may claim in the report's batch.
                finished = True
                log.info("job ended", report=type(report).__struct_config__.tag)
                self._finishing += 1
                finishing = asyncio.ensure_future(self._finish(job, ctx, report))
                try:
                    await asyncio.shield(finishing)
                except asyncio.CancelledError:
                    await self._settle(finishing)
                    raise
        finally:
            if finished:
                self._finishing -= 1
            self._contexts.pop(job.id, None)
            self._alarms.pop(job.id, None)
            self._capacity.release(job.queue)

    async def _finish(self, job: Job, ctx: JobContext, report: Report) -> None:
        """Send what is held back, then the report of how the work ended."""
        with contextlib.suppress(JobledgerError):
            await ctx.flush()
        if isinstance(report, JobCancel | JobSuspend) and report.causation_id is None:
            # Stopped by a refusal: the request's event is in the read model.
            with contextlib.suppress(JobledgerError):
                current = await self._reader.get_job(job.id)
                if current is not None and current.stop_requested_event_id is not None:
                    cause = current.stop_requested_event_id
                    report = msgspec.structs.replace(report, causation_id=cause)
        await self._report(report)

    @staticmethod
    async def _settle(last: asyncio.Future[None]) -> None:
        """Give a stopping runner's last report ``_REPORT_GRACE`` seconds to be
        committed; then give up on it (the lease runs out, and the job is
        recovered). Its outcome is retrieved either way."""
        done, _ = await asyncio.wait({last}, timeout=_REPORT_GRACE)
        if not done:
            last.cancel()
        elif not last.cancelled() and last.exception() is not None:
            log.warning("a last report failed", error=repr(last.exception()))

    async def _execute(self, job: Job, ctx: JobContext, alarm: _Alarm) -> Report:
        """Run ``execute`` under the job's timeout, its lease and stop requests;
        return the command that reports how it ended.

        No task watches the job: the heartbeat ticker rings ``alarm`` when the
        lease is lost, the context rings it when a stop is requested, and a
        timer (only for a job with a timeout, or once a stop has been asked)
        when time is up."""
        execution = asyncio.ensure_future(self.worker.execute(job, ctx))
        deadline = self._timer(job.timeout, alarm, "timeout") if job.timeout else None
        grace: asyncio.Task[None] | None = None
        timed_out = False
        if ctx.stopping:
            alarm.ring("stop")
        try:
            while not execution.done():
                await asyncio.wait((execution, alarm.rung), return_when=asyncio.FIRST_COMPLETED)
                if execution.done():
                    break
                reasons = alarm.take()
                if "lease" in reasons:
                    # The lease is lost (expired and taken over, or the job was
                    # decided elsewhere): stop the work rather than run it twice.
                    log.warning("lease lost; stopping the work", job_id=job.id)
                    await self._cancel(execution)
                elif "timeout" in reasons and not ctx.stopping:
                    timed_out = True
                    await self._cancel(execution)
                elif "grace" in reasons:
                    await self._cancel(execution)  # it ignored the request to stop
                elif "stop" in reasons and grace is None:
                    grace = self._timer(self.worker.stop_grace, alarm, "grace")
                    if deadline is not None:
                        deadline.cancel()  # a job asked to stop is no longer timed
        finally:
            for timer in (deadline, grace):
                if timer is not None:
                    timer.cancel()
            if not execution.done():  # we are being cancelled (shutdown): so is the work
                await self._cancel(execution)
        return self._ending(job, ctx, execution, timed_out)

    def _timer(self, seconds: float, alarm: _Alarm, reason: str) -> asyncio.Task[None]:
        """Ring ``alarm`` with ``reason`` after ``seconds`` of the runner's clock."""
        timer = asyncio.ensure_future(self._clock.sleep(seconds))
        timer.add_done_callback(lambda t: None if t.cancelled() else alarm.ring(reason))
        return timer

    async def _cancel(self, execution: asyncio.Future[Any]) -> None:
        """Cancel ``execute`` and wait for it to end, at most ``ABANDON_AFTER``
        seconds: one that swallows the cancellation is abandoned (it runs on,
        fenced: its lease is gone) with a warning naming the worker."""
        execution.cancel()
        done, _ = await asyncio.wait([execution], timeout=ABANDON_AFTER)
        if not done:
            # Whatever it ends with later is retrieved, never reported as lost.
            execution.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._counts["abandoned"] += 1
            log.warning(
                "execute did not stop when cancelled; abandoned, its lease released",
                worker=self.name,
            )
            return
        if not execution.cancelled():
            execution.exception()  # (retrieved: it ended the way it ended)

    def _ending(
        self, job: Job, ctx: JobContext, execution: asyncio.Future[Any], timed_out: bool
    ) -> Report:
        if timed_out and not (ctx.cancel_requested or ctx.suspend_requested):
            self._counts["timed_out"] += 1
        return report_of(job, ctx, execution, timed_out=timed_out, registry=self._registry)

    def _lease_lost(self, job_id: str) -> None:
        alarm = self._alarms.get(job_id)
        if alarm is not None:
            alarm.ring("lease")

    async def _report(self, report: Report) -> None:
        try:
            await self._bus.send(report)
        except LedgerClosed:
            raise
        except ValidationError as exc:
            if isinstance(report, JobComplete | JobPartial):
                # The result itself was refused (too large, not JSON): the job fails
                # with the reason rather than staying running.
                await self._report(
                    JobFail(
                        job_id=report.job_id,
                        attempt=report.attempt,
                        error=f"the result was refused: {exc}"[:MAX_ERROR],
                        error_type="InvalidResult",
                        retryable=False,
                        actor=report.actor,
                        correlation_id=report.correlation_id,
                        causation_id=report.causation_id,
                    )
                )
                return
            self._counts["report_errors"] += 1
            log.warning("report refused", report=type(report).__name__, error=repr(exc))
            return
        except JobledgerError as exc:
            # For example StaleAttempt: the claim was lost while executing.
            self._counts["report_errors"] += 1
            log.warning("report refused", report=type(report).__name__, error=repr(exc))
            return
        kind = (
            "completed"
            if isinstance(report, JobComplete)
            else "failed"
            if isinstance(report, JobFail)
            else "released"
            if isinstance(report, JobRelease)
            else "ended_otherwise"
        )
        self._counts[kind] += 1

    def statistics(self) -> WorkerStatistics:
        """A snapshot of the runner's counters. Never blocks."""
        counts = self._counts
        return WorkerStatistics(
            worker=self.name,
            job_types=self._types,
            running=self._dispatcher is not None and not self._dispatcher.done(),
            slots=self.worker.concurrency,
            active=len(self._jobs),
            claimed=counts["claimed"],
            lost_claims=counts["lost"],
            completed=counts["completed"],
            failed=counts["failed"],
            ended_otherwise=counts["ended_otherwise"],
            timed_out=counts["timed_out"],
            heartbeats=self._heartbeats.count,
            report_errors=counts["report_errors"],
            polls=counts["polls"],
            released=counts["released"],
            abandoned=counts["abandoned"],
            proposed=counts["proposed"],
            refused_full=counts["full"],
        )
