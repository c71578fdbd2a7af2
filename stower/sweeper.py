"""The sweeper: sends ``job:expire`` for running jobs that outlived their
lease (their worker stopped renewing it: crashed, killed, hung) or their
timeout.

It runs beside the Stower, reads the read model for candidates in bounded
batches, and leaves the decision to ``decide`` (which checks the lease and
the deadline again against the Stower's clock, so a heartbeat that lands
first wins). On open the ledger sweeps once before its workers start: the
Go seed's "resume jobs on server start".
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec

from jobledger.core import (
    Clock,
    JobExpire,
    JobledgerError,
    LedgerClosed,
    SystemClock,
    get_logger,
)
from jobledger.eventbus import EventBus
from jobledger.store import EventLog

__all__ = ["Sweeper", "SweeperStatistics"]

log = get_logger("sweeper")

ACTOR = "system:sweeper"


class SweeperStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """The sweeper's counters: sweeps made, jobs expired, expiries refused
    (a heartbeat or a report got there first)."""

    running: bool
    sweeps: int
    expired: int
    refused: int


class Sweeper:
    """Expires jobs every ``interval`` seconds of ``clock`` time, ``batch`` at a time."""

    def __init__(
        self,
        bus: EventBus,
        log: EventLog,
        *,
        clock: Clock | None = None,
        interval: float = 1.0,
        batch: int = 500,
    ) -> None:
        if interval <= 0 or batch < 1:
            raise ValueError("interval must be positive and batch at least 1")
        self._bus = bus
        self._log = log
        self._clock = clock or SystemClock()
        self._interval = interval
        self._batch = batch
        self._task: asyncio.Task[None] | None = None
        self._sweeps = 0
        self._expired = 0
        self._refused = 0

    async def sweep(self) -> int:
        """Expire every job that is due now, in batches; return how many were expired."""
        self._sweeps += 1
        total = 0
        while True:
            jobs = await self._log.expiring(self._clock.now(), self._batch)
            if not jobs:
                return total
            now = self._clock.now()
            commands = []
            for job in jobs:
                assert job.lease is not None
                deadline = job.deadline
                reason = "lease" if job.lease.expires_at <= now else "timeout"
                if reason == "timeout" and (deadline is None or deadline > now):
                    continue
                commands.append(
                    JobExpire(
                        job_id=job.id,
                        attempt=job.attempt,
                        reason=reason,
                        actor=ACTOR,
                        correlation_id=job.id,
                    )
                )
            results = await asyncio.gather(
                *(self._bus.send(c) for c in commands), return_exceptions=True
            )
            done = 0
            for command, result in zip(commands, results, strict=True):
                if isinstance(result, LedgerClosed):
                    raise result
                if isinstance(result, JobledgerError):
                    self._refused += 1  # renewed, reported or expired meanwhile
                elif isinstance(result, BaseException):
                    raise result
                else:
                    done += 1
                    log.info("job expired", job_id=command.job_id, reason=command.reason)
            self._expired += done
            total += done
            if len(jobs) < self._batch or done == 0:
                return total

    async def start(self) -> None:
        """Start sweeping every ``interval``."""
        if self._task is not None:
            raise RuntimeError("the sweeper is already started")
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="jobledger-sweeper")

    async def _loop(self) -> None:
        try:
            while True:
                await self._clock.sleep(self._interval)
                await self.sweep()
        except LedgerClosed:
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.critical("sweeper crashed", exc_info=exc)
            raise

    async def stop(self) -> None:
        """Stop sweeping. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def statistics(self) -> SweeperStatistics:
        """A snapshot of the sweeper's counters. Never blocks."""
        return SweeperStatistics(
            running=self._task is not None and not self._task.done(),
            sweeps=self._sweeps,
            expired=self._expired,
            refused=self._refused,
        )
