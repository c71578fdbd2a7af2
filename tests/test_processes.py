"""Several processes on one file (issue 6, items 6, 7 and 9), the quick
subset: a worker paused past its lease is fenced off; claims raced by many
tasks in several processes; submitters, workers and subscribers in separate
processes under load; processes whose wall clocks disagree.

The full runs, with more iterations, are parts of ``python tests/battery.py``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

import jobledger
import jobledger.core

from . import faults


@pytest.mark.parametrize("successor_done", [False, True], ids=["while-rerun", "after-rerun"])
async def test_a_worker_paused_past_its_lease_cannot_change_the_job_it_lost(
    tmp_path: Path, successor_done: bool
) -> None:
    """Item 6: SIGSTOP past the lease, the job expired and claimed again by
    another process, SIGCONT: every late command is refused, nothing written."""
    figures = await faults.pause_past_the_lease(
        tmp_path / "fenced.db", successor_done=successor_done
    )
    assert figures["late"] == len(faults.LATE_COMMANDS)


async def test_claims_raced_by_many_tasks_in_several_processes_win_once_each(
    tmp_path: Path,
) -> None:
    """Item 6: three processes, eight tasks each, claim the same 20 jobs at once."""
    figures = await faults.claim_race(tmp_path / "race.db", processes=3, tasks=8, jobs=20)
    assert figures["wins"] == 20 and figures["conflicts"] == 3 * 8 * 20 - 20


async def test_subscribers_in_other_processes_see_every_event_once_in_order_under_load(
    tmp_path: Path,
) -> None:
    """Item 7: two submitter, two worker and two subscriber processes on one file."""
    figures = await faults.load(tmp_path / "load.db", tmp_path, submitters=2, jobs=40, workers=2)
    assert figures["jobs"] == 80 and figures["observed"] > 0


class Held(jobledger.JobWorker):
    """Holds its job until released."""

    job_types = ("held",)
    lease_seconds = 60.0

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> None:
        self.started.set()
        await self.release.wait()


async def _advance(ledger: jobledger.Ledger, clock: jobledger.ManualClock, seconds: int) -> None:
    """Move the clock a second at a time; after each, wait (yielding to the
    loop, no real time) until the sweeper has swept and the tasks woken ran."""
    for _ in range(seconds):
        sweeps = ledger.statistics().sweeper.sweeps
        clock.advance(1)
        for _ in range(100):  # (an in-memory log: nothing leaves the loop)
            await asyncio.sleep(0)
        assert ledger.statistics().sweeper.sweeps == sweeps + 1


async def test_a_wall_clock_jumping_forward_does_not_expire_a_live_lease() -> None:
    """Item 9, in process: the wall clock jumps an hour ahead during a 60 s
    lease; the sweeper (every second) does not expire it on the wall clock's
    word: it has watched this lease for less than its length on the monotonic
    clock, and the worker's next heartbeat renews it."""
    clock = jobledger.ManualClock()
    worker = Held()
    async with jobledger.open(None, workers=[worker], clock=clock) as ledger:
        job = await ledger.submit("held", max_retries=3)
        await asyncio.wait_for(worker.started.wait(), 5)
        clock.set(clock.now() + timedelta(hours=1))  # the jump: the wall clock only
        await _advance(ledger, clock, 30)  # sweeps every second; a heartbeat after 20 s
        running = await ledger.get(job.id)
        assert running.status == "running" and running.attempt == 1 and running.failures == 0
        assert running.lease is not None and running.lease.expires_at > clock.now()
        worker.release.set()
        done = await ledger.wait(job.id, timeout=5)
        assert (done.status, done.attempt) == ("completed", 1)
        types = [env.type for env in await ledger.history(job.id)]
        assert "job.lease_expired" not in types and "job.lease_renewed" in types


async def _claim_by_hand(ledger: jobledger.Ledger, lease_seconds: float) -> jobledger.Job:
    """A job claimed by a worker that then goes silent (no heartbeats)."""
    job = await ledger.submit("silent", max_retries=3)
    await ledger.send(
        jobledger.core.JobStart(
            job_id=job.id, worker="gone", expected_version=job.version, lease_seconds=lease_seconds
        )
    )
    return await ledger.get(job.id)


@pytest.mark.parametrize("jump", [timedelta(hours=1), timedelta(hours=-1)], ids=["ahead", "back"])
async def test_a_dead_lease_is_expired_after_its_length_whatever_the_wall_clock_did(
    jump: timedelta,
) -> None:
    """Item 9, in process: the wall clock jumps during a dead worker's 10 s
    lease. Jumping ahead, the lease is expired once the sweeper has watched it
    for its 10 s on the monotonic clock, not before. Jumping back, the expiry
    also waits for the wall clock to pass the recorded expiry again (``decide``
    checks it): a jump back of J delays recovery by J, no more."""
    clock = jobledger.ManualClock()
    async with jobledger.open(None, clock=clock) as ledger:
        job = await _claim_by_hand(ledger, 10)
        clock.set(clock.now() + jump)
        await _advance(ledger, clock, 9)
        assert (await ledger.get(job.id)).status == "running"  # 9 s of 10: alive
        await _advance(ledger, clock, 1)
        if jump < timedelta(0):
            assert (await ledger.get(job.id)).status == "running"  # the wall clock says no
            clock.advance(-jump - timedelta(seconds=1))  # 1 s short of the expiry on the wall
            for _ in range(100):
                await asyncio.sleep(0)
            assert (await ledger.get(job.id)).status == "running"
            await _advance(ledger, clock, 1)  # now the wall clock is at the recorded expiry
        back = await ledger.get(job.id)
        assert (back.status, back.error_type, back.failures, back.recoveries) == (
            "pending",
            "LeaseExpired",
            0,
            1,
        )
        expired = (await ledger.history(job.id))[-1]
        assert expired.type == "job.lease_expired" and expired.time >= job.lease.expires_at  # type: ignore[union-attr]


@pytest.mark.parametrize("offset", [-3600.0, 3600.0], ids=["behind", "ahead"])
async def test_a_worker_whose_clock_is_an_hour_off_keeps_its_live_lease(
    tmp_path: Path, offset: float
) -> None:
    """Item 9, out of process: a worker an hour behind (or ahead) of the
    process sweeping every 0.05 s keeps its 2 s lease through three renewals."""
    figures = await faults.skewed_worker(tmp_path / "skew.db", offset, dies=False, lease=2.0)
    assert figures["renewals"] >= 3


async def test_a_dead_worker_whose_clock_ran_ahead_is_recovered_at_once_by_its_holder(
    tmp_path: Path,
) -> None:
    """Item 9, out of process (issue 13): killed holding a 30 s lease, a
    worker whose clock ran an hour ahead is recovered at once: its holder is
    provably dead, so neither its lease nor the clocks are waited for."""
    figures = await faults.skewed_worker(tmp_path / "dead.db", 3600, dies=True, lease=30)
    assert figures["seconds"] < 30


async def test_processes_with_clocks_hours_apart_under_load_keep_order_and_leases(
    tmp_path: Path,
) -> None:
    """Items 7 and 9: the load with workers and submitters an hour behind
    and ahead: no lease expired, each job run once, every subscriber in
    ``seq`` order, though the recorded times go back and forth."""
    figures = await faults.load(
        tmp_path / "skew.db", tmp_path, submitters=2, jobs=20, workers=2, offsets=[-3600, 3600]
    )
    assert figures["jobs"] == 40 and figures["times_going_back"] > 0


async def test_a_command_refused_on_a_stale_cache_is_decided_again_on_the_log(
    db_path: Path,
) -> None:
    """Defect found by item 9: a Stower decided on its cache and, when it
    refused every command of a batch, wrote nothing and so never checked that
    no other process had appended. A job this process submitted (cached as
    pending) and another process claimed could then never be completed,
    renewed or expired from this process: the sweeper's expiries were refused
    as "not running" for ever. Two ledgers on one file stand for the two
    processes (each has its own Stower and cache)."""
    async with jobledger.open(db_path) as here, jobledger.open(db_path) as there:
        job = await here.submit("work")  # cached here as pending
        await there.send(
            jobledger.core.JobStart(job_id=job.id, worker="there", expected_version=job.version)
        )
        (completed,) = await here.send(jobledger.core.JobComplete(job_id=job.id, attempt=1))
        assert completed.type == "job.completed"
        with pytest.raises(jobledger.InvalidTransition):  # a refusal on facts stands
            await here.send(jobledger.core.JobComplete(job_id=job.id, attempt=1))
        assert (await there.get(job.id)).status == "completed"


async def test_a_command_taken_as_in_effect_on_a_stale_cache_is_decided_again(
    db_path: Path,
) -> None:
    """Found in review: the stale-cache check covered only refusals. A cancel
    of a job cached here as cancel-requested, which another process has since
    completed, was accepted here as already in effect; on the log it is an
    ``InvalidTransition``, as the other process answers."""
    async with jobledger.open(db_path) as here, jobledger.open(db_path) as there:
        job = await here.submit("work")
        await there.send(
            jobledger.core.JobStart(job_id=job.id, worker="there", expected_version=job.version)
        )
        await here.cancel(job.id)  # read from the log: running, so a request; cached here
        await there.send(jobledger.core.JobComplete(job_id=job.id, attempt=1))
        with pytest.raises(jobledger.InvalidTransition):
            await here.send(jobledger.core.JobCancel(job_id=job.id))
        with pytest.raises(jobledger.InvalidTransition):
            await there.send(jobledger.core.JobCancel(job_id=job.id))
