"""The sweeper: sends ``job:expire`` for running jobs that outlived their
lease (their worker stopped renewing it: crashed, killed, hung), whose
lease's holder is provably dead, or that outlived their timeout.

It runs beside the Stower, reads the read model for candidates in bounded
batches, and leaves the decision to ``decide`` (which checks the lease and
the deadline again against the Stower's clock, so a heartbeat that lands
first wins). On open the ledger sweeps once before its workers start: the
Go seed's "resume jobs on server start".

A lease is not taken away on the wall clock's word alone. Wall clocks jump
(a step of NTP, a virtual machine resumed) and, with an injected clock, two
processes may disagree; a lease's length is a duration, and durations are
measured on the monotonic clock. So the sweeper watches every lease it sees
(from the log at each sweep, and as its own process's claims and heartbeats
are committed: :meth:`Sweeper.committed`), and expires one only when both
its wall clock says the recorded expiry has passed and it has watched that
very lease (same attempt, same expiry) unrenewed for the lease's length as
the log records it (the expiry minus the job's last event time, both written
by the worker's process) on its monotonic clock. The first sweep, on open,
has watched nothing: it takes a lease as watched since it was granted by
the wall clock's word (at most its length), so the jobs of a process that
died before this one opened are recovered at their expiry, not a whole
lease later.

A lease names its holder (host, pid, process start time). A holder on this
host whose process is gone is provably dead (:func:`holder_is_dead`): its
jobs are recovered at once (``reason="holder"``), on open and at every
sweep, without waiting for the lease. Either way the job is pending again
at once and spends a recovery, not a retry (see ``decide``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import msgspec

from jobledger.core import (
    Clock,
    CorruptionError,
    Envelope,
    Holder,
    Job,
    JobExpire,
    JobledgerError,
    LedgerClosed,
    StorageError,
    SystemClock,
    get_logger,
    holder_is_dead,
)
from jobledger.eventbus import EventBus
from jobledger.store import Schedule

__all__ = ["Sweeper", "SweeperStatistics"]

log = get_logger("sweeper")

ACTOR = "system:sweeper"

STORAGE_FAILURES_IN_A_ROW = 3
"""Sweeps in a row that may fail with a ``StorageError`` (not a
``CorruptionError``) before the sweeper counts as failed."""

_END_OF_TIME = datetime(9999, 1, 1, tzinfo=UTC)  # every lease expires before it
_LEASE_EVENTS = ("job.started", "job.lease_renewed")


class _Watched(NamedTuple):
    """A lease as the sweeper watches it: which one (``attempt``,
    ``expires_at``), since when (``since``, monotonic seconds), and how long
    it lasts (``length``, seconds, as the log records it)."""

    attempt: int
    expires_at: datetime
    since: float
    length: float

    def ran_out(self, monotonic: float) -> bool:
        return monotonic - self.since >= self.length


class SweeperStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """The sweeper's counters: sweeps made, jobs expired, expiries refused
    (a heartbeat or a report got there first)."""

    running: bool
    sweeps: int
    expired: int
    refused: int


class Sweeper:
    """Expires jobs every ``interval`` seconds of ``clock`` time, ``batch`` at
    a time, reading up to ``watch_limit`` running jobs a sweep (beyond that,
    each sweep sees only some of them).

    If a sweep fails (anything but ``LedgerClosed``), the sweeper logs it,
    stops, keeps the error (:attr:`crash`) and calls ``on_crash`` with it: the
    owner's cue to close. ``stop()`` never raises it again."""

    def __init__(
        self,
        bus: EventBus,
        log: Schedule,
        *,
        clock: Clock | None = None,
        interval: float = 1.0,
        batch: int = 500,
        watch_limit: int = 10_000,
        on_crash: Callable[[BaseException], None] | None = None,
    ) -> None:
        if interval <= 0 or batch < 1 or watch_limit < 1:
            raise ValueError("interval must be positive, batch and watch_limit at least 1")
        self._bus = bus
        self._log = log
        self._clock = clock or SystemClock()
        self._interval = interval
        self._batch = batch
        self._watch_limit = watch_limit
        self._on_crash = on_crash
        self._task: asyncio.Task[None] | None = None
        self.crash: BaseException | None = None
        """The error that stopped the sweeper's loop, if one did."""
        self._watched: dict[str, _Watched] = {}
        self._sweeps = 0
        self._expired = 0
        self._refused = 0

    async def sweep(self) -> int:
        """Expire every job that is due now (see the module's docstring), in
        batches; return how many were expired."""
        first = self._sweeps == 0
        self._sweeps += 1
        running = await self._log.expiring(_END_OF_TIME, self._watch_limit)
        now, monotonic = self._clock.now(), self._clock.monotonic()
        dead = self._dead_holders(running)
        commands = [
            command
            for job in running
            if (command := self._due(job, now, monotonic, first=first, dead=dead)) is not None
        ]
        if len(running) < self._watch_limit:  # all of them: forget the ended ones
            seen = {job.id for job in running}
            self._watched = {k: v for k, v in self._watched.items() if k in seen}
        total = 0
        for start in range(0, len(commands), self._batch):
            total += await self._expire(commands[start : start + self._batch])
        return total

    @staticmethod
    def _dead_holders(running: Sequence[Job]) -> frozenset[Holder]:
        """The holders of ``running``'s leases that are provably dead (each
        asked once)."""
        holders = {job.lease.holder for job in running if job.lease and job.lease.holder}
        return frozenset(holder for holder in holders if holder_is_dead(holder))

    def _due(
        self,
        job: Job,
        now: datetime,
        monotonic: float,
        *,
        first: bool,
        dead: frozenset[Holder] = frozenset(),
    ) -> JobExpire | None:
        """The expiry of ``job`` if it is due at ``now``; watches its lease."""
        lease = job.lease
        if lease is None:  # (a running job always holds one)
            return None
        watched = self._watched.get(job.id)
        if watched is None or (watched.attempt, watched.expires_at) != (
            job.attempt,
            lease.expires_at,
        ):
            # New since the last sweep (or running on open): watched from now;
            # on open, from its grant as the wall clock tells (at most its length).
            granted = lease.granted_at or job.updated_at  # (a lease read before it was kept)
            length = max(0.0, (lease.expires_at - granted).total_seconds())
            since = monotonic
            if first:
                since -= min(length, max(0.0, (now - granted).total_seconds()))
            watched = _Watched(job.attempt, lease.expires_at, since, length)
            self._watched[job.id] = watched
        holder = None
        if lease.holder is not None and lease.holder in dead:
            reason, holder = "holder", lease.holder
        elif lease.expires_at <= now and watched.ran_out(monotonic):
            reason = "lease"
        elif job.deadline is not None and job.deadline <= now:
            reason = "timeout"
        else:
            return None
        # The cause: the grant of the lease that was lost, or the start of the
        # attempt that ran past its deadline.
        cause = lease.started_event_id if reason == "timeout" else lease.granted_event_id
        return JobExpire(
            job_id=job.id,
            attempt=job.attempt,
            reason=reason,
            holder=holder,
            actor=ACTOR,
            correlation_id=job.id,
            causation_id=cause,
        )

    def committed(self, envelopes: Sequence[Envelope]) -> None:
        """Watch the leases that claims and heartbeats committed in this
        process give, from the moment of the commit (the Stower calls this
        before it publishes them). Never blocks."""
        for env in envelopes:
            if env.type not in _LEASE_EVENTS:
                continue
            attempt = getattr(env.data, "attempt", None)
            expires_at = getattr(env.data, "lease_expires_at", None)
            if isinstance(attempt, int) and isinstance(expires_at, datetime):
                length = max(0.0, (expires_at - env.time).total_seconds())
                self._watched[env.stream] = _Watched(
                    attempt, expires_at, self._clock.monotonic(), length
                )

    async def _expire(self, commands: list[JobExpire]) -> int:
        """Send ``commands`` at once; return how many were accepted."""
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
        return done

    async def start(self) -> None:
        """Start sweeping every ``interval``."""
        if self._task is not None:
            raise RuntimeError("the sweeper is already started")
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="jobledger-sweeper")

    async def _loop(self) -> None:
        failed = 0  # storage failures in a row
        try:
            while True:
                await self._clock.sleep(self._interval)
                try:
                    await self.sweep()
                    failed = 0
                except CorruptionError:
                    raise  # damage does not heal
                except StorageError as exc:
                    # A disk that is full or busy for a moment: the next sweep
                    # tries again; one that keeps failing is a failure.
                    failed += 1
                    if failed >= STORAGE_FAILURES_IN_A_ROW:
                        raise
                    log.warning("a sweep failed; trying again", error=str(exc), failed=failed)
        except LedgerClosed:
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Kept and handed to the owner, not raised again at stop().
            log.critical("sweeper crashed", exc_info=exc)
            self.crash = exc
            if self._on_crash is not None:
                self._on_crash(exc)

    async def stop(self) -> None:
        """Stop sweeping. Idempotent; never raises a crash (see :attr:`crash`)."""
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
