"""Heartbeats: renewing the leases of one runner's running jobs, together.

While any job of a runner runs, one task renews the lease of every one of
them each third of ``lease_seconds`` (one batch for all), and learns of stop
requests made in other processes from the read model. A refused renewal
means the lease is lost: ``on_lost`` is told the job's id (the runner rings
the job's alarm).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

from jobledger.core import (
    CancelRequested,
    Clock,
    JobledgerError,
    JobReader,
    LedgerClosed,
    StorageError,
    get_logger,
)

from .worker import JobContext

__all__ = ["Heartbeats"]

log = get_logger("workers")


class Heartbeats:
    """The heartbeat task of one runner. ``contexts`` is the runner's own
    table of running jobs (read, never changed here); ``count`` counts the
    renewals made."""

    def __init__(
        self,
        name: str,
        lease_seconds: float,
        clock: Clock,
        reader: JobReader,
        contexts: Mapping[str, JobContext],
        *,
        on_lost: Callable[[str], None],
    ) -> None:
        self._name = name
        self._interval = lease_seconds / 3
        self._clock = clock
        self._reader = reader
        self._contexts = contexts
        self._on_lost = on_lost
        self._task: asyncio.Task[None] | None = None
        self.count = 0

    def start(self) -> None:
        """Beat while jobs run (a no-op if already beating)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._beat_while_running(), name=self._name
            )

    async def stop(self) -> None:
        """Stop beating. Idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _beat_while_running(self) -> None:
        """Every third of the lease, renew the lease of every job running now,
        together (one batch for all of them); ends when none is running."""
        while self._contexts:
            await self._clock.sleep(self._interval)
            await asyncio.gather(*(self._heartbeat(ctx) for ctx in list(self._contexts.values())))

    async def _heartbeat(self, ctx: JobContext) -> None:
        """Renew one job's lease; learn of stop requests made elsewhere."""
        try:
            await ctx.heartbeat()
            self.count += 1
        except LedgerClosed:
            return  # the ledger is closing: the runner is being stopped too
        except CancelRequested:
            return  # the context has rung the alarm: the job is stopping
        except StorageError as exc:
            # Not refused: the disk failed (full, an I/O error). The lease holds
            # until it runs out; the next beat tries again.
            log.warning("heartbeat failed", job_id=ctx.job.id, error=str(exc))
            return
        except JobledgerError as exc:
            # StaleAttempt (another attempt owns the job) or InvalidTransition
            # (it was expired or ended elsewhere): the lease is lost.
            log.warning("heartbeat refused: lease lost", job_id=ctx.job.id, error=repr(exc))
            self._on_lost(ctx.job.id)
            return
        try:
            current = await self._reader.get_job(ctx.job.id)
        except JobledgerError as exc:  # (a read failed: the renewal stands; look next time)
            log.warning(
                "reading a job after its heartbeat failed", job_id=ctx.job.id, error=str(exc)
            )
            return
        if current is not None:
            ctx.request_stop(
                cancel=current.cancel_requested,
                suspend=current.suspend_requested,
                cause=current.stop_requested_event_id,
            )
