"""Crash recovery: a lost worker is not a failed attempt.

A lease that expires, or whose holder is provably dead, sends the job back to
pending and spends a recovery (``max_recoveries``), never a retry; a worker
that stops on purpose releases its jobs (``job.released``); a cancel reaches
the work at its next call into its context; a stop never hangs on an
``execute`` that swallows its cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

import jobledger
import jobledger.core
from jobledger import CancelRequested, Job, JobContext, JobWorker, ManualClock
from jobledger.core import Holder, JobLeaseExpired, JobRelease, JobReleased, JobStart, this_holder
from jobledger.workers import ABANDON_AFTER

from .test_lifecycle import advance_until, status_is


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def ledger(db_path: Path) -> AsyncIterator[jobledger.Ledger]:
    """A ledger with no workers: the test plays the workers."""
    async with jobledger.open(db_path) as opened:
        yield opened


@contextlib.contextmanager
def a_live_process() -> Iterator[tuple[subprocess.Popen[bytes], Holder]]:
    """A child process of this host, alive until :func:`end` or the block's
    end, and the holder its leases would name."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    try:
        stat = Path(f"/proc/{child.pid}/stat")
        if not stat.exists():
            pytest.skip("no /proc here: only a vanished pid proves a holder dead")
        started = int(stat.read_text().rsplit(")", 1)[1].split()[19])
        yield child, msgspec.structs.replace(this_holder(), pid=child.pid, started=started)
    finally:
        end(child)


def end(child: subprocess.Popen[bytes], *, reap: bool = True) -> None:
    """Kill ``child`` (and reap it, unless ``reap`` is false: a zombie)."""
    child.kill()
    if reap:
        child.wait()
        assert child.stdin is not None
        child.stdin.close()
    else:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)


def dead_holder() -> Holder:
    """The holder of a process of this host that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return msgspec.structs.replace(this_holder(), pid=child.pid)


async def claim(ledger: jobledger.Ledger, job: Job, *, holder: Holder | None, lease: float) -> int:
    """Claim ``job`` as a worker elsewhere would; returns the attempt."""
    [env] = await ledger.send(
        JobStart(
            job_id=job.id,
            worker="ghost",
            expected_version=job.version,
            lease_seconds=lease,
            holder=holder,
            actor="worker:ghost",
        )
    )
    return int(env.data.attempt)  # type: ignore[union-attr]


async def types(ledger: jobledger.Ledger, job_id: str) -> list[str]:
    return [env.type for env in await ledger.history(job_id)]


# -- a lost lease spends a recovery ----------------------------------------------


async def test_an_expired_lease_sends_the_job_back_without_spending_a_retry(
    db_path: Path, clock: ManualClock
) -> None:
    async with jobledger.open(db_path, clock=clock) as ledger:
        job = await ledger.submit("t")  # max_retries 0: no retry to spend
        assert (job.max_retries, job.max_recoveries, job.recoveries) == (0, 3, 0)
        await claim(ledger, job, holder=None, lease=30)
        await advance_until(clock, lambda: status_is(ledger, job.id, "pending"))
        back = await ledger.get(job.id)
        assert (back.status, back.failures, back.recoveries, back.lease) == ("pending", 0, 1, None)
        assert back.error_type == "LeaseExpired"
        expired = (await ledger.history(job.id))[-1]
        assert expired.actor == "system:sweeper"
        assert isinstance(expired.data, JobLeaseExpired)
        assert (expired.data.recovery, expired.data.reason) == (1, "lease")
        assert back.run_at is not None and back.run_at <= clock.now()  # runnable at once


async def test_a_job_that_keeps_losing_its_workers_fails_past_its_recoveries(
    db_path: Path, clock: ManualClock
) -> None:
    async with jobledger.open(db_path, clock=clock) as ledger:
        job = await ledger.submit("t", max_recoveries=2, max_retries=5)
        job_id = job.id
        for attempt, then in ((1, "pending"), (2, "pending"), (3, "failed")):
            current = await ledger.get(job_id)
            assert await claim(ledger, current, holder=None, lease=30) == attempt
            await advance_until(clock, lambda then=then: status_is(ledger, job_id, then))  # type: ignore[misc]
        done = await ledger.get(job.id)
        assert (done.status, done.recoveries, done.error_type) == ("failed", 2, "LeaseExpired")
        assert done.error == (
            "the job's worker was lost 3 times (max_recoveries is 2); "
            "the job may be what kills its workers"
        )
        assert await types(ledger, job.id) == [
            "job.created",
            *["job.started", "job.lease_expired"] * 2,
            "job.started",
            "job.failed",
        ]


async def test_max_recoveries_comes_from_the_job_type_unless_the_submit_names_one(
    db_path: Path,
) -> None:
    poison = jobledger.JobType(name="poison", max_recoveries=0)
    async with jobledger.open(db_path, job_types=[poison]) as ledger:
        assert (await ledger.submit("poison")).max_recoveries == 0
        assert (await ledger.submit("poison", max_recoveries=7)).max_recoveries == 7
        assert (await ledger.submit("other")).max_recoveries == 3
        for bad in (-1, 1001):
            with pytest.raises(jobledger.ValidationError, match="max_recoveries"):
                await ledger.submit("t", max_recoveries=bad)


# -- a worker that stops on purpose releases its job ------------------------------


async def test_a_release_puts_the_job_back_at_once_and_spends_nothing(
    ledger: jobledger.Ledger,
) -> None:
    job = await ledger.submit("t")
    attempt = await claim(ledger, job, holder=this_holder(), lease=60)
    [env] = await ledger.send(JobRelease(job_id=job.id, attempt=attempt, actor="worker:ghost"))
    assert env.data == JobReleased(job_id=job.id, attempt=1)
    back = await ledger.get(job.id)
    assert (back.status, back.failures, back.recoveries, back.lease) == ("pending", 0, 0, None)
    # The next claim is a new attempt; the released one is fenced.
    assert await claim(ledger, back, holder=None, lease=60) == 2
    with pytest.raises(jobledger.core.StaleAttempt):
        await ledger.send(JobRelease(job_id=job.id, attempt=1))


async def test_a_release_of_a_job_asked_to_stop_ends_it_as_asked(db_path: Path) -> None:
    pausable = jobledger.JobType(name="pausable", suspendable=True)
    async with jobledger.open(db_path, job_types=[pausable]) as ledger:
        cancelled = await ledger.submit("t")
        await claim(ledger, cancelled, holder=None, lease=60)
        await ledger.cancel(cancelled.id)
        await ledger.send(JobRelease(job_id=cancelled.id, attempt=1))
        assert (await ledger.get(cancelled.id)).status == "cancelled"
        job = await ledger.submit("pausable")
        await claim(ledger, job, holder=None, lease=60)
        await ledger.suspend(job.id)
        await ledger.send(JobRelease(job_id=job.id, attempt=1))
        assert (await ledger.get(job.id)).status == "suspended"


async def test_a_pending_job_cannot_be_released(ledger: jobledger.Ledger) -> None:
    job = await ledger.submit("t")
    with pytest.raises(jobledger.InvalidTransition) as refused:
        await ledger.send(JobRelease(job_id=job.id, attempt=1))
    assert (refused.value.current, refused.value.target) == ("pending", "pending")


# -- holders ----------------------------------------------------------------------


def test_a_holder_is_dead_only_when_provably_so() -> None:
    me = this_holder()
    assert me.pid == os.getpid() and me.host
    assert not jobledger.core.holder_is_dead(me)
    assert jobledger.core.holder_is_dead(dead_holder())
    # Alive, or not provable from here: another host, another pid namespace,
    # an unknown start time of a live pid.
    parent = msgspec.structs.replace(me, pid=os.getppid(), started=None)
    for alive in (
        msgspec.structs.replace(me, host=me.host + "-elsewhere", pid=2**22 + 1),
        msgspec.structs.replace(dead_holder(), pids="pid:[1]"),
        parent,
    ):
        assert not jobledger.core.holder_is_dead(alive), alive
    # This very process: alive, even when its start time cannot be read.
    assert not jobledger.core.holder_is_dead(msgspec.structs.replace(me, started=None))
    # A pid that lives on in another process (started at another time) is dead.
    parent_started = msgspec.structs.replace(me, pid=os.getppid(), started=(me.started or 0) + 1)
    assert jobledger.core.holder_is_dead(parent_started)
    # This host name in another boot may be another machine (a cloned image):
    # not proof. Nor is a value no process has; and nothing raises.
    for unproven in (
        msgspec.structs.replace(dead_holder(), boot="another-boot"),
        msgspec.structs.replace(me, pid=2**70),
        msgspec.structs.replace(me, pid=-5),
    ):
        assert not jobledger.core.holder_is_dead(unproven), unproven


async def test_a_crafted_holder_is_refused_and_stops_no_sweep(
    db_path: Path, clock: ManualClock
) -> None:
    """A holder no process can have (a pid of 2**70 made ``kill`` overflow
    and stopped the sweeper for good) is refused with a typed error and
    writes nothing; the sweeper goes on (and ``holder_is_dead`` never raises
    for one already in a log: the test above)."""
    async with jobledger.open(db_path, clock=clock) as ledger:
        job = await ledger.submit("t")
        for bad in ({"pid": 2**70}, {"pid": 0}, {"host": ""}, {"host": "h" * 256}):
            crafted = msgspec.structs.replace(this_holder(), **bad)
            with pytest.raises(jobledger.ValidationError, match="holder"):
                await claim(ledger, job, holder=crafted, lease=30)
        assert await ledger.head() == 1
        other = await ledger.submit("t")
        await claim(ledger, other, holder=None, lease=30)
        await advance_until(clock, lambda: status_is(ledger, other.id, "pending"))
        assert ledger.statistics().sweeper.running


def test_a_killed_holder_is_dead_even_before_its_parent_reaps_it() -> None:
    """A process killed with SIGKILL is a zombie until its parent waits for it:
    it holds its pid and start time but never runs again."""
    with a_live_process() as (child, holder):
        assert not jobledger.core.holder_is_dead(holder)  # alive
        end(child, reap=False)  # a zombie now
        assert jobledger.core.holder_is_dead(holder)
    assert jobledger.core.holder_is_dead(holder)  # reaped


async def test_on_open_the_jobs_of_a_dead_holder_are_recovered_at_once(
    db_path: Path, clock: ManualClock
) -> None:
    async with jobledger.open(db_path, clock=clock, sweep_interval=3600) as ledger:
        dead = await ledger.submit("t")
        await claim(ledger, dead, holder=dead_holder(), lease=3600)
        remote = await ledger.submit("t")
        elsewhere = msgspec.structs.replace(this_holder(), host="another-host")
        await claim(ledger, remote, holder=elsewhere, lease=3600)
    async with jobledger.open(db_path, clock=clock, sweep_interval=3600) as ledger:
        # No time has passed and the lease has an hour to go: the holder is dead.
        back = await ledger.get(dead.id)
        assert (back.status, back.recoveries, back.failures) == ("pending", 1, 0)
        expired = (await ledger.history(dead.id))[-1]
        assert isinstance(expired.data, JobLeaseExpired)
        assert (expired.data.reason, expired.data.recovery) == ("holder", 1)
        assert back.error == "the worker of attempt 1 was lost (its process died)"
        # A holder on another host cannot be proven dead: it keeps its lease.
        assert (await ledger.get(remote.id)).status == "running"


async def test_a_holder_that_dies_while_the_ledger_runs_is_found_at_the_next_sweep(
    db_path: Path, clock: ManualClock
) -> None:
    async with jobledger.open(db_path, clock=clock, sweep_interval=1) as ledger:
        job = await ledger.submit("t")
        with a_live_process() as (child, holder):
            await claim(ledger, job, holder=holder, lease=3600)
            sweeps = ledger.statistics().sweeper.sweeps
            await advance_until(clock, lambda: swept_since(ledger, sweeps), limit=3)
            assert (await ledger.get(job.id)).status == "running"  # alive: kept
            end(child)
            await advance_until(clock, lambda: status_is(ledger, job.id, "pending"), limit=3)
        expired = (await ledger.history(job.id))[-1]
        assert (expired.data.reason, expired.actor) == ("holder", "system:sweeper")  # type: ignore[union-attr]


async def swept_since(ledger: jobledger.Ledger, sweeps: int) -> bool:
    return ledger.statistics().sweeper.sweeps > sweeps


async def test_an_expiry_must_name_the_leases_own_dead_holder(
    ledger: jobledger.Ledger,
) -> None:
    job = await ledger.submit("t")
    await claim(ledger, job, holder=this_holder(), lease=60)
    for holder in (None, dead_holder()):
        with pytest.raises(jobledger.ValidationError, match="holder"):
            await ledger.send(
                jobledger.core.JobExpire(job_id=job.id, attempt=1, reason="holder", holder=holder)
            )
    assert (await ledger.get(job.id)).status == "running"


async def test_a_lease_running_out_while_no_one_watched_is_recovered_at_its_expiry(
    db_path: Path, clock: ManualClock
) -> None:
    """A process opening while another host's lease still runs watches it from
    its grant, not from the open: it is recovered at its expiry, not a whole
    lease later."""
    elsewhere = msgspec.structs.replace(this_holder(), host="another-host")
    async with jobledger.open(db_path, clock=clock, sweep_interval=3600) as ledger:
        job = await ledger.submit("t")
        await claim(ledger, job, holder=elsewhere, lease=30)
    clock.advance(20)  # closed 20 s into the 30 s lease
    async with jobledger.open(db_path, clock=clock, sweep_interval=1) as ledger:
        assert (await ledger.get(job.id)).status == "running"
        await advance_until(clock, lambda: status_is(ledger, job.id, "pending"))
        expired = (await ledger.history(job.id))[-1]
        lease_end = (await ledger.history(job.id))[1].data.lease_expires_at  # type: ignore[union-attr]
        assert lease_end <= expired.time <= lease_end + timedelta(seconds=2)


# -- the README's promise, with every setting at its default ------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    import jobledger

    class Slow(jobledger.JobWorker):
        job_types = ("slow",)

        async def execute(self, job, ctx):
            print("running", job.id, flush=True)
            await asyncio.Event().wait()  # runs until the process is killed

    async def main():
        async with jobledger.open(sys.argv[1], workers=[Slow() for _ in range(5)]) as ledger:
            for n in range(5):
                job = await ledger.submit("slow", {"n": n})
                print("acknowledged", job.id, flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())
    """
)


class Quick(JobWorker):
    job_types = ("slow",)

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        await ctx.progress(100)
        return {"n": job.params["n"]}


async def test_kill_9_while_five_jobs_run_and_every_acknowledged_job_completes(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(db), stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        seen: dict[str, list[str]] = {"acknowledged": [], "running": []}
        while len(seen["acknowledged"]) < 5 or len(seen["running"]) < 5:
            line = (await asyncio.wait_for(child.stdout.readline(), 30)).decode().split()
            assert len(line) == 2, line
            seen[line[0]].append(line[1])
        acknowledged = seen["acknowledged"]
        assert sorted(seen["running"]) == sorted(acknowledged)  # all five run now
    finally:
        child.kill()
        await child.wait()
    opened = time.time()
    async with jobledger.open(db, workers=[Quick()]) as ledger:
        for job_id in acknowledged:
            done = await ledger.wait(job_id, timeout=30)
            assert (done.status, done.result, done.failures) == (
                "completed",
                {"n": acknowledged.index(job_id)},
                0,
            )
            history = await ledger.history(job_id)
            assert [env.type for env in history] == [
                "job.created",
                "job.started",
                "job.lease_expired",
                "job.started",
                "job.progressed",
                "job.completed",
            ]
            recovered = history[2]
            assert recovered.data.reason == "holder"  # type: ignore[union-attr]
            assert recovered.time.timestamp() - opened < 5


# -- a cancel reaches the work at its next call into its context -------------------


class Looping(JobWorker):
    """Reports progress in a loop and never looks at ``ctx.stopping``."""

    job_types = ("loop",)
    stop_grace = 3600.0  # the grace must not be what ends it
    progress_interval = 0.0

    def __init__(self) -> None:
        super().__init__()
        self.step = asyncio.Event()
        self.reported = asyncio.Event()
        self.raised: list[BaseException] = []

    async def execute(self, job: Job, ctx: JobContext) -> None:
        try:
            for n in range(1000):
                await ctx.progress(n / 10)
                self.reported.set()
                await self.step.wait()
                self.step.clear()
        except CancelRequested as exc:
            self.raised.append(exc)
            raise


async def test_a_cancel_reaches_a_running_job_at_its_next_context_call(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker = Looping()
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        await _cancel_reaches_the_context(db_path, worker)
        gc.collect()  # an exception nobody retrieved is reported when its task goes
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text


async def _cancel_reaches_the_context(db_path: Path, worker: Looping) -> None:
    async with jobledger.open(db_path, workers=[worker]) as ledger:
        job = await ledger.submit("loop")
        await asyncio.wait_for(worker.reported.wait(), 10)
        await ledger.cancel(job.id)
        worker.step.set()  # its next call into the context
        done = await ledger.wait(job.id, timeout=10)
        assert done.status == "cancelled"
        assert [type(e) for e in worker.raised] == [CancelRequested]
        assert await types(ledger, job.id) == [
            "job.created",
            "job.started",
            "job.progressed",
            "job.cancel_requested",
            "job.cancelled",
        ]


async def test_after_a_cancel_request_the_stower_refuses_the_jobs_work(
    ledger: jobledger.Ledger,
) -> None:
    """Whichever process asked for the cancel: the work's next command is refused."""
    job = await ledger.submit("t")
    await claim(ledger, job, holder=None, lease=60)
    await ledger.cancel(job.id)
    head = await ledger.head()
    doc = jobledger.Annotation.on_text("doc", "some text", 0, 4, motivation="highlighting")
    for command in (
        jobledger.core.JobProgress(job_id=job.id, attempt=1, percent=5),
        jobledger.core.JobHeartbeat(job_id=job.id, attempt=1),
        jobledger.core.MarkCreate(
            mark_id="mark_x", resource_id="doc", annotation=doc, job_id=job.id, attempt=1
        ),
        jobledger.core.AssetCreate(
            asset_id="asset_x", job_id=job.id, attempt=1, asset_type="f", storage_path="a", size=1
        ),
    ):
        with pytest.raises(CancelRequested) as refused:
            await ledger.send(command)
        assert refused.value.job_id == job.id
    assert await ledger.head() == head
    # Its ending is still taken: a failure report ends it cancelled, not failed.
    await ledger.send(jobledger.core.JobFail(job_id=job.id, attempt=1, error="stopped"))
    assert (await ledger.get(job.id)).status == "cancelled"


# -- a stop never hangs --------------------------------------------------------------


class Stubborn(JobWorker):
    """Swallows the first cancellation and carries on."""

    job_types = ("stubborn",)

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.done = asyncio.Event()
        self.swallowed = 0

    async def execute(self, job: Job, ctx: JobContext) -> None:
        self.started.set()
        while True:
            try:
                await self.done.wait()
                return
            except asyncio.CancelledError:
                self.swallowed += 1
                if self.swallowed > 1:
                    raise


async def test_close_returns_even_when_execute_swallows_its_cancellation(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker = Stubborn()
    loop = asyncio.get_running_loop()
    with caplog.at_level(logging.WARNING, logger="jobledger"):
        async with jobledger.open(db_path, workers=[worker], stop_timeout=0.05) as ledger:
            job = await ledger.submit("stubborn")
            await asyncio.wait_for(worker.started.wait(), 10)
            closing = loop.time()
        took = loop.time() - closing
    worker.done.set()  # (lets the abandoned execute end with the test)
    assert worker.swallowed == 1
    assert took < 0.05 + ABANDON_AFTER + 5  # returned: not hung on the execute
    warnings = [r for r in caplog.records if "abandoned" in r.getMessage()]
    assert [r.worker for r in warnings] == ["Stubborn"]  # type: ignore[attr-defined]
    async with jobledger.open(db_path) as ledger:
        back = await ledger.get(job.id)
        assert (back.status, back.failures, back.recoveries) == ("pending", 0, 0)
        assert (await types(ledger, job.id))[-1] == "job.released"


# -- causation: an auditor can follow what caused what ------------------------------


class FailsOnce(JobWorker):
    job_types = ("flaky",)

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, int]:
        await ctx.progress(50)
        if job.attempt == 1:
            raise RuntimeError("first attempt fails")
        return {"attempt": job.attempt}


async def test_events_name_the_event_that_caused_them(db_path: Path, clock: ManualClock) -> None:
    retry = jobledger.RetryPolicy(base_delay=1, jitter=False)
    async with jobledger.open(db_path, workers=[FailsOnce()]) as ledger:
        job = await ledger.submit("flaky", max_retries=1, retry=retry)
        await ledger.wait(job.id, timeout=30)
        history = await ledger.history(job.id)
    by_type: dict[str, list[jobledger.Envelope]] = {}
    for env in history:
        by_type.setdefault(env.type, []).append(env)
    first, second = by_type["job.started"]
    # A retry scheduled by a failure names the start of the attempt that failed;
    # each report of an attempt names that attempt's start.
    [scheduled] = by_type["job.retry_scheduled"]
    assert scheduled.causation_id == first.event_id
    assert [env.causation_id for env in by_type["job.progressed"]] == [
        first.event_id,
        second.event_id,
    ]
    assert by_type["job.completed"][0].causation_id == second.event_id

    async with jobledger.open(db_path, clock=clock) as ledger:
        # A lease expiry found by the sweeper names the grant of the lost lease.
        lost = await ledger.submit("t")
        await claim(ledger, lost, holder=None, lease=30)
        [renewal] = await ledger.send(jobledger.core.JobHeartbeat(job_id=lost.id, attempt=1))
        await advance_until(clock, lambda: status_is(ledger, lost.id, "pending"))
        expired = (await ledger.history(lost.id))[-1]
        assert expired.type == "job.lease_expired" and expired.causation_id == renewal.event_id


async def test_a_cancel_that_ends_a_running_job_names_the_request(db_path: Path) -> None:
    worker = Looping()
    async with jobledger.open(db_path, workers=[worker]) as ledger:
        job = await ledger.submit("loop")
        await asyncio.wait_for(worker.reported.wait(), 10)
        await ledger.cancel(job.id)
        worker.step.set()
        await ledger.wait(job.id, timeout=10)
        *_, requested, cancelled = await ledger.history(job.id)
    assert requested.type == "job.cancel_requested" and cancelled.type == "job.cancelled"
    assert cancelled.causation_id == requested.event_id


# -- a file written before this version ---------------------------------------------


async def test_a_file_of_schema_2_is_rebuilt_once_and_verifies(db_path: Path) -> None:
    """Jobs written by the version before kept no recoveries, no lease events
    and no stop request's event: a replay fills them in. Opened by this
    version (schema 3), the read model is rebuilt from the log once, so verify
    is clean and the sweeper can name a lost lease's cause."""
    async with jobledger.open(db_path) as ledger:
        running = await ledger.submit("t")
        await claim(ledger, running, holder=None, lease=60)
        stopping = await ledger.submit("t")
        await claim(ledger, stopping, holder=None, lease=60)
        await ledger.cancel(stopping.id)
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:  # as schema 2 left them
        for job_id, doc in db.execute("SELECT id, doc FROM jobs").fetchall():
            job = json.loads(doc)
            for name in ("max_recoveries", "recoveries", "stop_requested_event_id"):
                del job[name]
            for name in ("started_event_id", "granted_event_id"):
                job["lease"].pop(name)
            db.execute("UPDATE jobs SET doc = ? WHERE id = ?", (json.dumps(job), job_id))
        db.execute("PRAGMA user_version = 2")
    async with jobledger.open(db_path) as ledger:
        report = await ledger.verify()
        assert report.ok, report.problems
        started = (await ledger.history(running.id))[1]
        assert (await ledger.get(running.id)).lease.started_event_id == started.event_id  # type: ignore[union-attr]
        requested = (await ledger.history(stopping.id))[-1]
        assert (await ledger.get(stopping.id)).stop_requested_event_id == requested.event_id


async def test_jobledger_history_tells_a_recovery_and_a_release(
    db_path: Path, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobledger.cli import main

    async with jobledger.open(db_path, clock=clock, sweep_interval=3600) as ledger:
        job = await ledger.submit("t")
        holder = dead_holder()
        await claim(ledger, job, holder=holder, lease=60)
        await ledger.send(
            jobledger.core.JobExpire(job_id=job.id, attempt=1, reason="holder", holder=holder)
        )
        await claim(ledger, await ledger.get(job.id), holder=None, lease=60)
        await ledger.send(JobRelease(job_id=job.id, attempt=2, reason="shutting down"))
    assert await asyncio.to_thread(main, ["history", job.id, "--db", str(db_path)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # (the table wraps long lines)
    assert "attempt 1: worker lost (its process died); recovery 1, pending" in out
    assert "attempt 2 given back by its worker: shutting down" in out
