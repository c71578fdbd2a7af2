"""The claim desk: the runners of one process never race for a job."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import jobledger
from jobledger.core import ManualClock
from jobledger.store import MemoryLog
from jobledger.workers import ClaimDesk, QueueCapacity

from .conftest import create, running


class Noop(jobledger.JobWorker):
    job_types = ("noop",)

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> Any:
        await ctx.progress(50)
        return {"by": self.name}


async def test_four_plain_workers_lose_no_claim_and_run_each_job_once(tmp_path: Path) -> None:
    workers = [Noop(name=f"w{i}") for i in range(4)]
    async with jobledger.open(tmp_path / "j.db", workers=workers) as ledger:
        jobs = await asyncio.gather(*(ledger.submit("noop", {"i": i}) for i in range(200)))
        done = await asyncio.gather(*(ledger.wait(j.id, timeout=60) for j in jobs))
        assert {j.status for j in done} == {"completed"}
        stats = ledger.statistics()
        assert sum(w.lost_claims for w in stats.workers) == 0
        assert sum(w.claimed for w in stats.workers) == 200
        assert sum(w.completed for w in stats.workers) == 200
        for job in jobs:
            history = await ledger.history(job.id)
            assert [e.type for e in history] == [
                "job.created",
                "job.started",
                "job.progressed",
                "job.completed",
            ]
        assert (await ledger.verify()).ok


async def test_the_desk_deals_each_job_to_one_runner_with_one_read() -> None:
    async with running(MemoryLog()) as engine:
        for i in range(6):
            await engine.bus.send(create(f"j{i}", job_type="a" if i % 2 else "b"))
        desk = ClaimDesk(engine.log, ManualClock(), QueueCapacity())
        (first, _), (second, _) = await asyncio.gather(
            desk.deal(["a", "b"], 2), desk.deal(["a", "b"], 3)
        )
        assert desk.reads == 1  # one turn, one kind of runner: one read
        assert [j.id for j in first] == ["j0", "j1"]
        assert [j.id for j in second] == ["j2", "j3", "j4"]  # none dealt twice
        only_a, _ = await desk.deal(["a"], 5)
        assert [j.id for j in only_a] == ["j5"]  # its type, and not dealt yet
        again, _ = await desk.deal(["a", "b"], 10)  # all are dealt: none until settled
        assert again == []
        desk.settle(["j0", "j3"])
        back, _ = await desk.deal(["a", "b"], 10)
        assert [j.id for j in back] == ["j0", "j3"]


async def test_the_desk_keeps_queue_capacity_and_gives_it_back_when_a_runner_leaves() -> None:
    async with running(MemoryLog()) as engine:
        for i in range(3):
            await engine.bus.send(create(f"j{i}", job_type="a", queue="q"))
        capacity = QueueCapacity({"q": 2})
        desk = ClaimDesk(engine.log, ManualClock(), capacity)
        dealt, _ = await desk.deal(["a"], 3)
        assert [j.id for j in dealt] == ["j0", "j1"]  # the queue holds two
        assert capacity.in_use("q") == 2
        for job in dealt:
            capacity.release(job.queue)
        desk.settle(j.id for j in dealt)

        asking = asyncio.ensure_future(desk.deal(["a"], 3))
        await asyncio.sleep(0)
        asking.cancel()  # the runner stops while the desk reads
        await asyncio.gather(asking, return_exceptions=True)
        assert capacity.in_use("q") == 0
        again, _ = await desk.deal(["a"], 3)
        assert [j.id for j in again] == ["j0", "j1"]


async def test_plenty_of_one_type_never_starves_a_runner_of_another() -> None:
    async with running(MemoryLog()) as engine:
        for i in range(5):
            await engine.bus.send(create(f"a{i}", job_type="a", priority=9))
        await engine.bus.send(create("b0", job_type="b"))
        desk = ClaimDesk(engine.log, ManualClock(), QueueCapacity())
        (for_a, _), (for_b, _) = await asyncio.gather(desk.deal(["a"], 2), desk.deal(["b"], 2))
        assert [j.id for j in for_a] == ["a0", "a1"]
        assert [j.id for j in for_b] == ["b0"]
        assert desk.reads == 2  # one read for each kind of runner
