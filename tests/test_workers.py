"""Workers and their runner: claiming, wake-ups, results, failures, stopping."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

import jobledger
from jobledger import Job, JobContext, JobWorker
from jobledger.core import ValidationError


class Counting(JobWorker):
    job_types = ("count",)

    def __init__(self, runs: Counter[str], **kw: Any) -> None:
        super().__init__(**kw)
        self.runs = runs

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        self.runs[job.id] += 1
        await asyncio.sleep(0)
        return {"by": ctx.worker}


class Gate(JobWorker):
    job_types = ("gate",)

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()
        self.started = asyncio.Event()

    async def execute(self, job: Job, ctx: JobContext) -> None:
        self.started.set()
        await self.open.wait()


class Returns(JobWorker):
    job_types = ("returns",)

    class Result(msgspec.Struct):
        n: int

    async def execute(self, job: Job, ctx: JobContext) -> Any:
        kind = job.params["kind"]
        if kind == "struct":
            return self.Result(n=7)
        if kind == "none":
            return None
        if kind == "list":
            return [1, 2]
        return {"bad": object()}


async def test_many_jobs_many_workers_each_job_runs_exactly_once(db_path: Path) -> None:
    runs: Counter[str] = Counter()
    workers = [Counting(runs, name=f"w{i}", concurrency=3) for i in range(3)]
    async with jobledger.open(db_path, workers=workers) as ledger:
        jobs = await asyncio.gather(*(ledger.submit("count") for _ in range(150)))
        for job in jobs:
            assert (await ledger.wait(job.id, timeout=20)).status == "completed"
        stats = ledger.statistics()
    assert len(runs) == 150
    assert set(runs.values()) == {1}
    assert sum(w.completed for w in stats.workers) == 150
    assert sum(w.claimed for w in stats.workers) == 150


async def test_workers_take_higher_priority_first_then_submission_order(db_path: Path) -> None:
    order: list[str] = []

    class Recorder(JobWorker):
        job_types = ("rec",)

        async def execute(self, job: Job, ctx: JobContext) -> None:
            order.append(job.params["name"])

    async with jobledger.open(db_path) as ledger:
        for name, priority in (("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", 9)):
            await ledger.submit("rec", {"name": name}, priority=priority)
    async with jobledger.open(db_path, workers=[Recorder()]) as ledger:
        page = await ledger.list()
        for job in page:
            await ledger.wait(job.id, timeout=10)
    assert order == ["e", "b", "d", "a", "c"]


async def test_a_new_job_wakes_the_worker_without_waiting_for_a_poll(db_path: Path) -> None:
    runs: Counter[str] = Counter()
    # A poll interval of an hour: only the in-process wake-up can start the job.
    async with jobledger.open(db_path, workers=[Counting(runs)], poll_interval=3600) as ledger:
        await asyncio.sleep(0)  # let the worker make its first (empty) poll
        job = await ledger.submit("count")
        done = await ledger.wait(job.id, timeout=10)
        assert done.status == "completed"
        assert ledger.statistics().workers[0].polls <= 3


async def test_results_are_dicts_or_structs_and_anything_else_fails_the_job(
    db_path: Path,
) -> None:
    async with jobledger.open(db_path, workers=[Returns()]) as ledger:
        outcomes = {}
        for kind in ("struct", "none", "list", "unencodable"):
            job = await ledger.submit("returns", {"kind": kind})
            outcomes[kind] = await ledger.wait(job.id, timeout=10)
    assert outcomes["struct"].result == {"n": 7}
    assert outcomes["none"].status == "completed" and outcomes["none"].result is None
    assert outcomes["list"].status == "failed"
    assert "dict or a Struct" in (outcomes["list"].error or "")
    assert outcomes["unencodable"].status == "failed"
    assert (outcomes["unencodable"].error or "").startswith("the result was refused")


async def test_stop_lets_a_running_job_finish_within_the_timeout(db_path: Path) -> None:
    gate = Gate()
    async with jobledger.open(db_path, workers=[gate], stop_timeout=10) as ledger:
        job = await ledger.submit("gate")
        await asyncio.wait_for(gate.started.wait(), 10)
        # Open the gate only once the ledger has begun to close.
        asyncio.get_running_loop().call_soon(gate.open.set)
    async with jobledger.open(db_path) as ledger:
        assert (await ledger.get(job.id)).status == "completed"


async def test_stop_cancels_a_job_that_outlives_the_timeout_and_releases_it(
    db_path: Path,
) -> None:
    gate = Gate()
    async with jobledger.open(db_path, workers=[gate], stop_timeout=0.01) as ledger:
        job = await ledger.submit("gate")
        await asyncio.wait_for(gate.started.wait(), 10)
    async with jobledger.open(db_path) as ledger:
        back = await ledger.get(job.id)
        # Pending again, for another worker: no retry or recovery spent.
        assert (back.status, back.failures, back.recoveries, back.lease) == ("pending", 0, 0, None)
        last = (await ledger.history(job.id))[-1]
        assert last.type == "job.released" and last.actor == "worker:Gate"
        assert last.data == jobledger.core.JobReleased(
            job_id=job.id, attempt=1, reason="the worker stopped before the job finished"
        )


def test_a_worker_must_declare_job_types_and_sane_concurrency() -> None:
    class NoTypes(JobWorker):
        async def execute(self, job: Job, ctx: JobContext) -> None:
            return None

    with pytest.raises(ValidationError, match="job_types"):
        NoTypes()
    with pytest.raises(ValueError, match="concurrency"):  # (a ValueError too, as it was)
        Counting(Counter(), concurrency=0)
    assert Counting(Counter()).name == "Counting"
    assert Counting(Counter(), name="x").name == "x"


class _AppError(Exception):
    """An application's own error, knowing nothing of jobledger's classes."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class RaisesAppError(JobWorker):
    job_types = ("app-error",)

    def __init__(self, runs: Counter[str]) -> None:
        super().__init__()
        self.runs = runs

    async def execute(self, job: Job, ctx: JobContext) -> None:
        self.runs[job.id] += 1
        raise _AppError(f"final={job.params['final']}", retryable=not job.params["final"])


async def test_an_exception_whose_retryable_is_false_fails_at_once_without_the_engine_knowing_it(
    db_path: Path,
) -> None:
    # Regression: the runner knew one application error class by name (an
    # InferenceError from core); now it asks any exception's `retryable`.
    runs: Counter[str] = Counter()
    no_wait = jobledger.RetryPolicy(base_delay=0.0, jitter=False)
    async with jobledger.open(db_path, workers=[RaisesAppError(runs)]) as ledger:
        final = await ledger.submit("app-error", {"final": True}, max_retries=2)
        again = await ledger.submit("app-error", {"final": False}, max_retries=2, retry=no_wait)
        final = await ledger.wait(final.id, timeout=10)
        again = await ledger.wait(again.id, timeout=10)
    assert (final.status, final.attempt, final.error_type) == ("failed", 1, "_AppError")
    assert (again.status, again.attempt, again.error_type) == ("failed", 3, "_AppError")
    assert (runs[final.id], runs[again.id]) == (1, 3)


def test_non_retryable_error_says_so_through_the_same_attribute() -> None:
    assert jobledger.NonRetryableError.retryable is False
    assert jobledger.NonRetryableError("x").retryable is False
