"""Crash-point sweep (issue 6, item 1), the quick subset: a child process dies
hard (``os._exit``) at the k-th hit of each crash point; the file it leaves
keeps every invariant after recovery, and takes more work.

The full sweep, with more hits per point, is ``python tests/battery.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import jobledger
from jobledger.core.faults import CRASH_EXIT_CODE, CRASH_POINTS, CrashAt

from . import faults
from .faults import check_invariants, kill_soak, records, run_child


@pytest.mark.parametrize("point", CRASH_POINTS)
@pytest.mark.parametrize("hit", [1, 3])
async def test_a_crash_at_any_point_keeps_every_invariant(
    tmp_path: Path, point: str, hit: int
) -> None:
    db = tmp_path / "crash.db"
    crashed = run_child(db, tmp_path, crash=f"{point}:{hit}")
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr
    sent, acked = records(tmp_path)
    assert sent
    await check_invariants(db, sent, acked)
    # The recovered file goes on taking work, to the end.
    after = run_child(db, tmp_path, jobs=4)
    assert after.returncode == 0, after.stderr
    sent, acked = records(tmp_path)
    await check_invariants(db, sent, acked)


def test_the_library_reads_no_crash_point_from_the_environment(tmp_path: Path) -> None:
    """Issue 14, item 7: crash points are armed only by the ``faults`` a test
    passes in. A process with ``JOBLEDGER_CRASH`` set that opens a ledger
    without ``faults`` works to the end (it used to die at the first hit)."""
    script = (
        "import asyncio, sys, jobledger\n"
        "class W(jobledger.JobWorker):\n"
        "    job_types = ('w',)\n"
        "    async def execute(self, job, ctx):\n"
        "        await ctx.progress(50)\n"
        "        return {}\n"
        "async def main():\n"
        "    async with jobledger.open(sys.argv[1], workers=[W()]) as ledger:\n"
        "        job = await ledger.submit('w')\n"
        "        print((await ledger.wait(job.id, timeout=30)).status)\n"
        "asyncio.run(main())\n"
    )
    for point in CRASH_POINTS:
        env = {**os.environ, faults.CRASH_ENV: f"{point}:1"}
        result = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / "env.db")],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert (result.returncode, result.stdout.strip()) == (0, "completed"), result.stderr


def test_a_crash_point_is_armed_only_by_a_known_point_and_a_positive_count() -> None:
    assert repr(CrashAt.parse("stower.after_commit:3")) == "CrashAt('stower.after_commit', 3)"
    with pytest.raises(ValueError, match="expected <point>:<k>"):
        CrashAt.parse("stower.nowhere:1")
    with pytest.raises(ValueError, match="expected <point>:<k>"):
        CrashAt.parse("stower.after_commit:0")
    with pytest.raises(ValueError, match="expected one of"):
        CrashAt("store.before_insert", 1)
    with pytest.raises(ValueError, match="k must be 1 or more"):
        CrashAt("store.after_insert", 0)
    armed = CrashAt("runner.after_claim", 2)
    armed.reach("runner.mid_progress")  # another point: nothing happens
    armed.reach("runner.after_claim")  # the first hit of two: nothing yet


async def test_the_invariants_catch_a_lost_acknowledgement_and_a_stray_job(
    tmp_path: Path,
) -> None:
    db = tmp_path / "clean.db"
    assert run_child(db, tmp_path, jobs=4).returncode == 0
    sent, acked = records(tmp_path)
    assert len(acked) == 4
    await check_invariants(db, sent, acked)
    with pytest.raises(AssertionError, match="acknowledged submits missing"):
        await check_invariants(db, sent, {**acked, "never-written": "job_x"})
    with pytest.raises(AssertionError, match="never sent"):
        await check_invariants(db, sent - {next(iter(acked))}, acked)


async def test_kill_9_at_random_moments_loses_nothing_and_every_job_ends(tmp_path: Path) -> None:
    """kill -9 soak (issue 6, item 2), the quick subset: three kills."""
    figures = await kill_soak(tmp_path / "soak.db", tmp_path, kills=3, seed=6)
    # (kill_soak itself checks the invariants after each kill, that every job
    # ended, and that repeats stay within one per job running at each kill.)
    assert figures["kills"] == 3 and figures["jobs"] >= 3


async def test_a_job_that_kills_its_worker_ends_failed_after_its_attempts(
    tmp_path: Path,
) -> None:
    """Poison jobs (issue 6, item 8; issue 13): each attempt kills the process
    running it; the next process finds the holder dead and recovers the job
    at once, spending a recovery (not a retry), and after ``max_recoveries``
    recoveries the next loss ends the job failed, saying why."""
    db = tmp_path / "poison.db"
    deaths = 0
    for _ in range(6):
        result = faults.run_poison_child(db)
        if result.returncode == 0:
            break
        assert result.returncode == faults.POISON_EXIT_CODE, result.stderr
        deaths += 1
    assert deaths == 3  # max_recoveries=2: three attempts, each killed its process
    async with jobledger.open(db) as ledger:
        (job,) = (await ledger.list()).jobs
        assert (job.status, job.attempt, job.recoveries) == ("failed", 3, 2)
        assert job.error_type == "LeaseExpired" and "lost 3 times" in (job.error or "")
        history = await ledger.history(job.id)
        types = [env.type for env in history]
        assert types.count("job.started") == 3 and types.count("job.lease_expired") == 2
        assert types[-1] == "job.failed"
        assert {env.data.reason for env in history if env.type == "job.lease_expired"} == {  # type: ignore[union-attr]
            "holder"
        }
        assert (await ledger.verify()).ok


async def test_workers_in_several_processes_claim_each_job_once(tmp_path: Path) -> None:
    """Several processes on one file (issue 6, items 6 and 7): three worker
    processes race for the same 120 jobs; each job is claimed and run exactly
    once, every job completes, and no process sees an error (no "database is
    locked" reaches a caller)."""
    import asyncio
    import sys

    db = tmp_path / "shared.db"
    async with jobledger.open(db) as ledger:
        jobs = [await ledger.submit("work", {"n": n}) for n in range(120)]
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, faults.__file__, str(db), str(tmp_path), "0",
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]  # fmt: skip
    for worker in workers:
        _, stderr = await asyncio.wait_for(worker.communicate(), 120)
        assert worker.returncode == 0, stderr.decode()
    runs = [line.split() for line in (tmp_path / "sink").read_text().splitlines()]
    assert sorted(job_id for job_id, _, _ in runs) == sorted(job.id for job in jobs)  # once each
    assert {attempt for _, attempt, _ in runs} == {"1"}  # each on its first attempt
    assert len({pid for _, _, pid in runs}) >= 2  # the processes did race for them
    async with jobledger.open(db) as ledger:
        assert {job.status for job in (await ledger.list(limit=200)).jobs} == {"completed"}
        assert (await ledger.verify()).ok
