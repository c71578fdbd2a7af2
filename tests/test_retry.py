"""Manual retry (``Ledger.retry``, ``job:retry``, ``job.retried``, ``jobledger
retry``): a failed, timed-out or cancelled job runs again with the same id,
its history kept, its attempt number going on and its budgets afresh; any
other status is refused and nothing is written. Real SQLite files."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import jobledger
from jobledger.cli import main
from jobledger.core import (
    InvalidTransition,
    JobComplete,
    JobExpire,
    JobStart,
    JobType,
    NotFound,
    ValidationError,
)

TYPES = [JobType(name="t", max_retries=1, max_recoveries=1, timeout=30)]


class Flaky(jobledger.JobWorker):
    """Fails while ``params["fail"]`` is set in ``failing`` (a set of job ids)."""

    job_types = ("t",)

    def __init__(self) -> None:
        super().__init__()
        self.failing: set[str] = set()

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> dict[str, Any]:
        if job.id in self.failing:
            raise RuntimeError("broken input")
        return {"attempt": job.attempt}


async def test_a_failed_job_runs_again_with_its_history_and_fresh_budgets(
    tmp_path: Path,
) -> None:
    worker = Flaky()
    async with jobledger.open(
        tmp_path / "jobs.db", job_types=TYPES, workers=[worker], poll_interval=0.05
    ) as ledger:
        job = await ledger.submit("t", user="alice")
        worker.failing.add(job.id)
        failed = await ledger.wait(job.id, timeout=10)
        assert (failed.status, failed.failures, failed.attempt) == ("failed", 2, 2)
        worker.failing.discard(job.id)
        retried = await ledger.retry(job.id, user="alice", reason="input fixed")
        assert retried.id == job.id
        done = await ledger.wait(job.id, timeout=10)  # waits for the new ending
        assert (done.status, done.result, done.attempt) == ("completed", {"attempt": 3}, 3)
        assert (done.failures, done.error, done.error_type) == (0, None, None)
        history = await ledger.history(job.id)
        types = [env.type for env in history]
        assert types.count("job.retried") == 1
        assert types[types.index("job.retried") - 1] == "job.failed"
        retry_event = history[types.index("job.retried")]
        assert (retry_event.actor, retry_event.data.reason) == (  # type: ignore[union-attr]
            "alice",
            "input fixed",
        )
        assert (await ledger.verify()).ok
        replayed = await ledger.replay()
        assert replayed.jobs[job.id] == await ledger.get(job.id)


async def test_timed_out_and_cancelled_jobs_retry_and_the_others_are_refused(
    tmp_path: Path,
) -> None:
    clock = jobledger.ManualClock()
    async with jobledger.open(tmp_path / "jobs.db", job_types=TYPES, clock=clock) as ledger:
        timed = await ledger.submit("t", max_retries=0)
        await ledger.send(JobStart(job_id=timed.id, worker="w", expected_version=1))
        clock.advance(31)  # past its 30 s timeout
        await ledger.send(JobExpire(job_id=timed.id, attempt=1, reason="timeout"))
        assert (await ledger.get(timed.id)).status == "timed_out"
        cancelled = await ledger.submit("t")
        await ledger.cancel(cancelled.id, reason="by mistake")
        for job in (timed, cancelled):
            again = await ledger.retry(job.id)
            assert (again.status, again.error, again.recoveries) == ("pending", None, 0)
        assert (await ledger.get(cancelled.id)).cancel_reason is None

        pending = await ledger.submit("t")
        running = await ledger.submit("t")
        await ledger.send(JobStart(job_id=running.id, worker="w", expected_version=1))
        for job_id, status in ((pending.id, "pending"), (running.id, "running")):
            head = await ledger.head()
            with pytest.raises(InvalidTransition) as refused:
                await ledger.retry(job_id)
            assert refused.value.current == status
            assert await ledger.head() == head  # nothing written


async def test_a_completed_job_is_not_retried_and_another_users_is_not_found(
    tmp_path: Path,
) -> None:
    async with jobledger.open(tmp_path / "jobs.db", job_types=TYPES) as ledger:
        job = await ledger.submit("t", user="alice")
        await ledger.send(JobStart(job_id=job.id, worker="w", expected_version=1))
        await ledger.send(JobComplete(job_id=job.id, attempt=1))
        with pytest.raises(InvalidTransition, match="completed"):
            await ledger.retry(job.id)
        cancelled = await ledger.submit("t", user="alice")
        await ledger.cancel(cancelled.id)
        with pytest.raises(NotFound):
            await ledger.retry(cancelled.id, user="bob")
        with pytest.raises(ValidationError):
            await ledger.retry(cancelled.id, reason="x" * 100_000)
        assert (await ledger.get(cancelled.id)).status == "cancelled"


def test_jobledger_retry_exits_0_and_4_for_an_ending_it_does_not_undo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "jobs.db"

    async def setup() -> tuple[str, str]:
        async with jobledger.open(db, job_types=TYPES) as ledger:
            cancelled = await ledger.submit("t")
            await ledger.cancel(cancelled.id)
            pending = await ledger.submit("t")
        return cancelled.id, pending.id

    cancelled, pending = asyncio.run(setup())
    assert main(["retry", cancelled, "--db", str(db), "--reason", "again"]) == 0
    assert capsys.readouterr().out == f"{cancelled} pending\n"
    assert main(["retry", pending, "--db", str(db)]) == 4
    err = capsys.readouterr().err
    assert err.startswith("jobledger: error: InvalidTransition") and "pending" in err
