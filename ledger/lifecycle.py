"""Lifecycle: the running parts of one ledger (the log, the bus, the Stower,
the sweeper, the workers and the subscriptions' tail), started in order,
closed in the reverse order, refused once closed or in a forked child, and
supervised: when a part fails, the ledger closes loudly."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal

import msgspec

from jobledger.core import (
    Clock,
    ContentStore,
    IdFactory,
    JobType,
    LedgerClosed,
    Registry,
    get_logger,
)
from jobledger.core.faults import Faults
from jobledger.eventbus import BusStatistics, EventBus
from jobledger.store import Backend, Notices, ServerClock, clock_for, content_for
from jobledger.stower import Stower, StowerStatistics, Sweeper, SweeperStatistics
from jobledger.workers import ClaimDesk, JobWorker, QueueCapacity, WorkerRunner, WorkerStatistics

from .queues import Queues
from .subscriptions import Subscriptions

__all__ = ["Engine", "Failure", "Health", "LedgerStatistics", "PartHealth"]

log = get_logger("ledger")


class Failure(msgspec.Struct, frozen=True, kw_only=True):
    """A running part that failed: ``part`` (``"stower"``, ``"sweeper"``,
    ``"tail"`` or ``"worker:NAME"``) and the error, as ``repr`` gives it."""

    part: str
    error: str


class LedgerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Counters of every running part of a ledger, and the parts' failures
    (in the order they happened; any failure closes the ledger)."""

    path: str
    bus: BusStatistics
    stower: StowerStatistics
    sweeper: SweeperStatistics
    workers: tuple[WorkerStatistics, ...]
    failures: tuple[Failure, ...] = ()


class PartHealth(msgspec.Struct, frozen=True, kw_only=True):
    """One running part: ``running``, ``stopped`` (not started, or closed) or
    ``failed``, with its last error (``None`` unless it failed)."""

    part: str
    state: Literal["running", "stopped", "failed"]
    error: str | None = None


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """``ok`` when the ledger is open and no part failed; each part's health."""

    ok: bool
    parts: tuple[PartHealth, ...]


class Engine:
    """The parts of one ledger on ``log``, wired and owned: ``start()`` opens
    the log and starts them, ``aclose()`` stops them, ``check_open()`` is
    what every service calls first.

    ``content`` is where resources' content lives: by default the folder
    beside the log's file (``PATH.content``), or in memory for a log in memory."""

    def __init__(
        self,
        log: Backend,
        *,
        workers: Sequence[JobWorker] = (),
        clock: Clock | None = None,
        poll_interval: float = 1.0,
        stop_timeout: float = 10.0,
        mailbox_size: int = 10_000,
        max_batch: int = 1_000,
        job_types: Sequence[JobType] = (),
        queues: Mapping[str, int] | None = None,
        sweep_interval: float = 1.0,
        content: ContentStore | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.log = log
        # Resources' content: given, else beside the file (in memory with a memory
        # log, in the database on PostgreSQL).
        self.content: ContentStore = content or content_for(log)
        # Time: given, else the server's on a log several hosts share, else the system's.
        self.clock = clock or clock_for(log)
        self.ids = IdFactory()
        self.registry = Registry(job_types)
        # (the capacities are checked when recorded in the log, at start)
        self._capacity = QueueCapacity()
        self._recorded = dict(queues or {})
        self.bus = EventBus(max_in_flight=mailbox_size)
        self._sweeper = Sweeper(
            self.bus,
            log,
            clock=self.clock,
            interval=sweep_interval,
            on_crash=self._supervising("sweeper"),
        )
        # One claim desk for the process's runners; the Stower asks it for
        # claims of the jobs a batch makes runnable, to decide in that batch.
        desk = ClaimDesk(log, self.clock, self._capacity)
        self._stower = Stower(
            log,
            self.bus,
            clock=self.clock,
            ids=self.ids,
            mailbox_size=mailbox_size,
            max_batch=max_batch,
            on_crash=self._supervising("stower"),
            on_commit=self._sweeper.committed,
            faults=faults,
            proposer=desk if workers else None,
        )
        self._runners = [
            WorkerRunner(
                w,
                self.bus,
                log,
                clock=self.clock,
                ids=self.ids,
                poll_interval=poll_interval,
                capacity=self._capacity,
                registry=self.registry,
                content=self.content,
                faults=faults,
                on_crash=self._supervising(f"worker:{w.name}"),
                desk=desk,
            )
            for w in workers
        ]
        self.subscriptions = Subscriptions(
            log,
            self.bus,
            self.clock,
            poll_interval=poll_interval,
            last_committed=lambda: self._stower.last_seq,
            on_crash=self._supervising("tail"),
        )
        self.queues = Queues(log, self.bus, self._capacity, self.check_open)
        self._stop_timeout = stop_timeout
        self._on_closed: list[Callable[[], None]] = []
        self._started = False
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        self._failures: list[Failure] = []
        self._pid = os.getpid()
        self._stop_hearing: Callable[[], None] | None = None
        self._stop_following: Callable[[], None] | None = None

    def _heard(self, seq: int) -> None:
        """The log told of a commit: once the committing task has yielded,
        wake the runners if it is not the Stower's own (another process
        wrote, and may have written work for them)."""
        asyncio.get_running_loop().call_soon(self._wake_runners_past, seq)

    def _wake_runners_past(self, seq: int) -> None:
        self._stower.heard(seq)
        if seq > self._stower.last_seq:
            for runner in self._runners:
                runner.wake()

    def on_closed(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` once the parts are closed (to wake whoever waits on them)."""
        self._on_closed.append(wake)

    async def start(self) -> None:
        """Open the log, start the Stower and the subscriptions, recover jobs
        whose worker was lost (expired leases and timeouts, in bounded
        batches), then start the sweeper and the workers."""
        if self._started:
            raise RuntimeError("the ledger is already started")
        self._started = True
        self._pid = os.getpid()
        await self.log.open()
        self._stop_hearing = self.log.on_commit(self._heard)
        if isinstance(self.log, Notices):  # (before the commit callbacks: see on_notice)
            self._stop_following = self.log.on_notice(self._stower.follow)
        try:
            if isinstance(self.clock, ServerClock):  # before anything is judged by it
                await self.clock.sync()
            await self._stower.start()
            await self.subscriptions.start()
            await self.queues.record(self._recorded)
            recovered = await self._sweeper.sweep()
            if recovered:
                log.info("recovered jobs of lost workers", count=recovered)
            await self._sweeper.start()
            for runner in self._runners:
                await runner.start()
        except BaseException:
            await self.aclose()
            raise
        log.info("ledger open", path=self.log.path, workers=[r.name for r in self._runners])

    async def aclose(self) -> None:
        """Stop the tail, the workers (running jobs get ``stop_timeout`` seconds
        to finish), then the Stower (commands already sent are committed),
        then close the log and wake every follower and waiter. Idempotent;
        a second call waits for the first. A part that fails to stop is
        recorded as a failure (:meth:`statistics`, :meth:`health`), not raised."""
        if self._pid != os.getpid():
            self._closed = True
            return  # a forked child: the parent's tasks and file are not ours to stop
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.get_running_loop().create_task(
                self._close(), name="jobledger-close"
            )
        if not self._closing.done():
            await self._closing

    def _supervising(self, part: str) -> Callable[[BaseException], None]:
        """What ``part`` calls when it fails."""
        return lambda exc: self._failed(part, exc)

    def _failed(self, part: str, exc: BaseException) -> None:
        """Supervision: ``part`` failed with ``exc``. Recorded and logged; every
        call from now on gets ``LedgerClosed`` naming it, and the ledger
        closes (in a task of its own: the failing part may be the caller)."""
        self._failures.append(Failure(part=part, error=repr(exc)))
        log.critical("a part of the ledger failed; closing the ledger", part=part, error=repr(exc))
        if self._closing is None and self._started:
            self._closed = True
            self._closing = asyncio.get_running_loop().create_task(
                self._close(), name="jobledger-supervision"
            )

    def _failure_text(self) -> str | None:
        if not self._failures:
            return None
        first = self._failures[0]
        return f"the ledger closed because its {first.part} failed: {first.error}"

    async def _stop(self, part: str, stopping: Awaitable[None]) -> None:
        try:
            await stopping
        except Exception as exc:
            self._failed(part, exc)

    async def _close(self) -> None:
        try:
            await self._stop("tail", self.subscriptions.aclose(self._failure_text()))
            # Together: a close takes one stop_timeout, not one per worker.
            await asyncio.gather(
                *(
                    self._stop(f"worker:{runner.name}", runner.stop(self._stop_timeout))
                    for runner in self._runners
                )
            )
            await self._stop("sweeper", self._sweeper.stop())
            await self._stop("stower", self._stower.stop())
            await self._stop("bus", self.bus.aclose())
        finally:
            for stop in (self._stop_hearing, self._stop_following):
                if stop is not None:
                    stop()
            # Even when cancelled (the whole loop torn down), the file is closed.
            await self.log.close()
        # Wake everyone waiting on this ledger so they can see it closed.
        self.subscriptions.wake_all()
        for wake in self._on_closed:
            wake()
        log.info("ledger closed", path=self.log.path, failed=[f.part for f in self._failures])

    async def wait_closed(self) -> None:
        """Return once the ledger has closed: ``aclose`` ran, or a part
        failed and supervision closed it. Cancelling the wait cancels
        nothing else."""
        if self._closing is None:
            closed = asyncio.Event()
            self._on_closed.append(closed.set)
            await closed.wait()
        else:
            await asyncio.shield(self._closing)

    def end_grace(self) -> None:
        """Cut the workers' stop grace short (see ``WorkerRunner.end_grace``)."""
        for runner in self._runners:
            runner.end_grace()

    def check_open(self) -> None:
        """``LedgerClosed`` unless started, not closed, and in the process that opened it."""
        failure = self._failure_text()
        if failure is not None:
            raise LedgerClosed(failure)
        if self._closed or not self._started:
            raise LedgerClosed("the ledger is not open")
        if self._pid != os.getpid():
            # A child made by fork: the parent's tasks and connections do not
            # run here (a call would wait forever). The child opens its own.
            raise LedgerClosed(
                f"this ledger was opened in process {self._pid}, not in this one "
                f"({os.getpid()}, a fork): open the log again here"
            )

    def statistics(self) -> LedgerStatistics:
        """Counters of the bus, the Stower and each worker. Never blocks."""
        return LedgerStatistics(
            path=self.log.path,
            bus=self.bus.statistics(),
            stower=self._stower.statistics(),
            sweeper=self._sweeper.statistics(),
            workers=tuple(r.statistics() for r in self._runners),
            failures=tuple(self._failures),
        )

    def health(self) -> Health:
        """Whether the ledger is open and no part failed, and each part's
        state and last error. Never blocks."""
        errors = {f.part: f.error for f in self._failures}  # (the last one of each part)
        running = [
            ("stower", self._stower.running),
            ("sweeper", self._sweeper.statistics().running),
            ("tail", self.subscriptions.running),
            *((f"worker:{r.name}", r.statistics().running) for r in self._runners),
        ]
        parts = tuple(
            PartHealth(part=part, state="failed", error=errors[part])
            if part in errors
            else PartHealth(part=part, state="running" if up else "stopped")
            for part, up in running
        )
        ok = self._started and not self._closed and not self._failures
        return Health(ok=ok, parts=parts)
