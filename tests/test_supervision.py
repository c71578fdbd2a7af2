"""Supervision: every running part of a ledger has an owner. When one fails
(the Stower, the sweeper, a worker's dispatcher, the tail), the failure is
logged, counted in ``statistics()``, reported by ``health()``, and the
ledger closes loudly: the next caller, every waiter and every follower get
``LedgerClosed`` naming the part, and ``aclose()`` raises nothing.

Real ledgers on real files; each part is made to fail for real: the log
closed under the sweeper, a damaged entry written by another process for the
tail, and a bug at a crash point of the ``faults`` seam for the Stower and a
worker's dispatcher (the seam's contract is that ``reach`` never raises, so
a raise there is exactly an unexpected failure of the part's own code)."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import jobledger
from jobledger import Envelope, Job, JobContext, JobWorker, LedgerClosed, ManualClock
from jobledger.lifecycle import Failure, Health, PartHealth
from jobledger.store import SqliteLog
from jobledger.stower.sweeper import STORAGE_FAILURES_IN_A_ROW

from .conftest import eventually

FAILED = "a part of the ledger failed; closing the ledger"


class BugAt:
    """Faults that raise ``RuntimeError`` the ``k``-th time ``point`` is reached."""

    def __init__(self, point: str, k: int = 1) -> None:
        self.point = point
        self.k = k
        self.hits = 0

    def reach(self, point: str) -> None:
        if point == self.point:
            self.hits += 1
            if self.hits == self.k:
                raise RuntimeError(f"bug at {point}")


class Idle(JobWorker):
    """Claims jobs of type ``t`` and never finishes them (until cancelled)."""

    job_types = ("t",)

    async def execute(self, job: Job, ctx: JobContext) -> None:
        await asyncio.Event().wait()


class Watched:
    """One waiter and one follower on a ledger, both blocked before the failure."""

    def __init__(self, ledger: jobledger.Ledger, job_id: str) -> None:
        self.ledger = ledger
        self.waiter = asyncio.create_task(ledger.wait(job_id))
        self.events = ledger.events(follow=True)
        self.follower = asyncio.create_task(self._follow(self.events))
        self.seen: list[Envelope] = []

    async def _follow(self, events: AsyncIterator[Envelope]) -> None:
        async for env in events:
            self.seen.append(env)

    async def blocked(self) -> None:
        # (who is waiting, not for how long: both are registered and asleep)
        await eventually(
            lambda: (
                bool(self.ledger._waiting._waiters)
                and bool(self.ledger._subscriptions._followers)
                and bool(self.seen)
            )
        )


async def assert_closed_loudly(
    ledger: jobledger.Ledger,
    watched: Watched,
    part: str,
    error: str,
    caplog: pytest.LogCaptureFixture,
    *,
    follower_meets_it: bool = False,
) -> None:
    """The failure of ``part`` (with ``error`` in its repr) is logged, counted,
    unhealthy, raised to the next caller, the waiter and the follower (or,
    ``follower_meets_it``, the follower reads the damage itself first)."""
    with pytest.raises(LedgerClosed) as waited:
        await asyncio.wait_for(watched.waiter, 10)
    if follower_meets_it:
        with pytest.raises(jobledger.core.CorruptionError, match=re.escape(error)):
            await asyncio.wait_for(watched.follower, 10)
        loud = [waited]
    else:
        with pytest.raises(LedgerClosed) as followed:
            await asyncio.wait_for(watched.follower, 10)
        loud = [waited, followed]
    with pytest.raises(LedgerClosed) as called:
        await ledger.submit("t")
    for raised in (*loud, called):
        assert str(raised.value).startswith(f"the ledger closed because its {part} failed: ")
        assert error in str(raised.value)
    failures = ledger.statistics().failures
    assert [f.part for f in failures] == [part]
    assert isinstance(failures[0], Failure) and error in failures[0].error
    health = ledger.health()
    assert isinstance(health, Health) and health.ok is False
    failed = [p for p in health.parts if p.state == "failed"]
    assert [p.part for p in failed] == [part]
    assert failed[0].error is not None and error in failed[0].error
    records = [r for r in caplog.records if r.getMessage() == FAILED]
    assert [getattr(r, "part", None) for r in records] == [part]
    assert records[0].levelno == logging.CRITICAL
    await ledger.aclose()  # raises nothing: the failure was collected
    await ledger.aclose()


async def test_a_healthy_ledger_reports_every_part_running(db_path: Path) -> None:
    async with jobledger.open(db_path, workers=[Idle(name="idle")]) as ledger:
        assert ledger.health() == Health(
            ok=True,
            parts=(
                PartHealth(part="stower", state="running"),
                PartHealth(part="sweeper", state="running"),
                PartHealth(part="tail", state="running"),
                PartHealth(part="worker:idle", state="running"),
            ),
        )
        assert ledger.statistics().failures == ()
    health = ledger.health()
    assert health.ok is False
    assert {p.state for p in health.parts} == {"stopped"}
    with pytest.raises(LedgerClosed, match=r"^the ledger is not open$"):
        await ledger.submit("t")


async def test_a_sweeper_whose_log_fails_closes_the_ledger_loudly(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    log = SqliteLog(db_path)
    ledger = jobledger.Ledger(log, clock=clock, sweep_interval=1.0, poll_interval=3600.0)
    await ledger.start()
    with caplog.at_level(logging.WARNING, logger="jobledger"):
        job = await ledger.submit("t")
        watched = Watched(ledger, job.id)
        await watched.blocked()
        await log.close()  # the file goes away under the running ledger
        # A failing sweep is tried again; the third in a row is a failure.
        for _ in range(STORAGE_FAILURES_IN_A_ROW):
            sweeps = ledger.statistics().sweeper.sweeps
            clock.advance(1.0)  # the sweeper's next sweep reads it
            deadline = asyncio.get_running_loop().time() + 10
            while ledger.statistics().sweeper.sweeps == sweeps:
                assert asyncio.get_running_loop().time() < deadline, "no sweep"
                await asyncio.sleep(0)
        assert "a sweep failed; trying again" in caplog.text
        await assert_closed_loudly(
            ledger, watched, "sweeper", "StorageError('the log is not open')", caplog
        )


async def test_a_crashed_stower_closes_the_ledger_loudly(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = jobledger.Ledger(
        SqliteLog(db_path), clock=ManualClock(), faults=BugAt("stower.before_begin", k=2)
    )
    await ledger.start()
    with caplog.at_level(logging.WARNING, logger="jobledger"):
        job = await ledger.submit("t")
        watched = Watched(ledger, job.id)
        await watched.blocked()
        # The command in the crashing batch is answered, not left hanging.
        with pytest.raises(LedgerClosed, match="the Stower crashed"):
            await asyncio.wait_for(ledger.submit("t"), 10)
        await assert_closed_loudly(
            ledger, watched, "stower", "RuntimeError('bug at stower.before_begin')", caplog
        )
    async with jobledger.open(db_path) as reopened:  # nothing of the crashed batch
        assert [j.id for j in await reopened.list()] == [job.id]


async def test_a_crashed_worker_dispatcher_closes_the_ledger_loudly(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = jobledger.Ledger(
        SqliteLog(db_path),
        workers=[Idle(name="idle")],
        faults=BugAt("runner.after_claim"),
        stop_timeout=1.0,
    )
    await ledger.start()
    with caplog.at_level(logging.WARNING, logger="jobledger"):
        other = await ledger.submit("other")  # not the worker's: stays pending
        watched = Watched(ledger, other.id)
        await watched.blocked()
        await ledger.submit("t")  # claimed, then the dispatcher fails
        await assert_closed_loudly(
            ledger, watched, "worker:idle", "RuntimeError('bug at runner.after_claim')", caplog
        )


async def test_a_tail_that_meets_a_damaged_entry_closes_the_ledger_loudly(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    # Not told of the other writer's commit (watch=False): its tail finds it
    # at its next look, after the damage.
    ledger = jobledger.Ledger(SqliteLog(db_path, watch=False), clock=clock, poll_interval=1.0)
    await ledger.start()
    with caplog.at_level(logging.WARNING, logger="jobledger"):
        job = await ledger.submit("t")
        watched = Watched(ledger, job.id)
        await watched.blocked()
        async with jobledger.open(db_path) as elsewhere:  # another writer on the file
            await elsewhere.submit("t")
        conn = sqlite3.connect(db_path)
        with conn:
            conn.execute("UPDATE events SET data = X'00FF' WHERE seq = 2")
        conn.close()
        clock.advance(1.0)  # the tail's next look finds seq 2, which does not decode
        # (the tail wakes the follower first: it reads seq 2 and meets the damage)
        await assert_closed_loudly(
            ledger,
            watched,
            "tail",
            "event at seq 2 does not decode",
            caplog,
            follower_meets_it=True,
        )


async def test_the_tail_waits_on_the_ledgers_clock(db_path: Path) -> None:
    """Where no notification comes (``watch=False``: a system without inotify),
    another process's commit reaches a waiter at the tail's next look, which
    comes after ``poll_interval`` seconds of the injected clock (a minute here,
    advanced at once), not of real time. (With notifications it comes at
    once: tests/test_wakeup.py.)"""
    clock = ManualClock()
    ledger = jobledger.Ledger(SqliteLog(db_path, watch=False), clock=clock, poll_interval=60.0)
    await ledger.start()
    try:
        job = await ledger.submit("t")
        waiter = asyncio.create_task(ledger.wait(job.id))
        await eventually(lambda: bool(ledger._waiting._waiters))
        async with jobledger.open(db_path) as elsewhere:
            await elsewhere.cancel(job.id)
        clock.advance(59.9)
        for _ in range(50):  # (turns of the loop: the tail is not due yet)
            await asyncio.sleep(0)
        assert not waiter.done()
        clock.advance(0.1)
        done = await asyncio.wait_for(waiter, 10)
        assert done.status == "cancelled"
    finally:
        await ledger.aclose()
