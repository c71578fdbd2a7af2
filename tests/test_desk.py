"""The claim desk: the runners of one process never race for a job."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec

import jobledger
from jobledger.core import ManualClock
from jobledger.store import MemoryLog, SqliteLog
from jobledger.workers import ClaimDesk, QueueCapacity, WorkerRunner

from .conftest import create, eventually, running


class Noop(jobledger.JobWorker):
    job_types = ("noop",)

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> Any:
        await ctx.progress(50)
        return {"by": self.name}


async def _each_ran_once(ledger: jobledger.Ledger, jobs: list[jobledger.Job]) -> None:
    """Each job's history is exactly one run: created, started, its progress, completed."""
    for job in jobs:
        history = await ledger.history(job.id)
        assert [e.type for e in history] == [
            "job.created",
            "job.started",
            "job.progressed",
            "job.completed",
        ]


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
        await _each_ran_once(ledger, jobs)
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
        desk.answered(["j0", "j3"])
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
        desk.answered(j.id for j in dealt)

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


async def test_a_runner_whose_job_ends_gets_its_next_job_in_the_same_commit(
    tmp_path: Path,
) -> None:
    workers = [Noop(name=f"w{i}") for i in range(4)]
    async with jobledger.open(tmp_path / "j.db", workers=workers) as ledger:
        jobs = await asyncio.gather(*(ledger.submit("noop", {"i": i}) for i in range(200)))
        before = ledger.statistics().stower.batches
        await asyncio.gather(*(ledger.wait(j.id, timeout=60) for j in jobs))
        stats = ledger.statistics()
        # Most claims were made by the Stower in the batch of the report that
        # freed the slot (the first ones, and after the desk's spare jobs ran
        # out, by the runners themselves), so the jobs took fewer commits than
        # their three steps each would take alone.
        proposed = sum(w.proposed for w in stats.workers)
        assert proposed >= 150
        assert sum(w.claimed for w in stats.workers) == 200
        assert sum(w.lost_claims for w in stats.workers) == 0
        assert stats.stower.batches - before <= 200
        await _each_ran_once(ledger, jobs)
        assert (await ledger.verify()).ok


async def test_a_job_submitted_while_a_runner_waits_is_created_and_claimed_in_one_commit(
    tmp_path: Path,
) -> None:
    # One job at a time, each made runnable by its own submission: the
    # Stower proposes its claim in the batch that creates it, so a job is
    # three commits (created and started; progressed; completed), and
    # submit() still answers with the job its own command left, pending.
    async with jobledger.open(tmp_path / "j.db", workers=[Noop()]) as ledger:
        warm = await ledger.submit("noop", {"i": -1})  # the runner is started and waiting
        await ledger.wait(warm.id, timeout=60)
        before = ledger.statistics()
        jobs = []
        for i in range(20):
            job = await ledger.submit("noop", {"i": i})
            assert job.status == "pending"
            assert job.lease is None and job.attempt == 0
            assert (await ledger.wait(job.id, timeout=60)).status == "completed"
            jobs.append(job)
        after = ledger.statistics()
        ((worker_before,), (worker,)) = before.workers, after.workers
        assert worker.claimed - worker_before.claimed == 20
        assert worker.proposed - worker_before.proposed == 20
        assert worker.lost_claims == 0
        assert after.stower.batches - before.stower.batches == 3 * 20
        await _each_ran_once(ledger, jobs)
        for job in jobs:
            created, started, *_ = await ledger.history(job.id)
            assert started.seq == created.seq + 1  # decided together, in one batch
        assert (await ledger.verify()).ok


async def test_a_fresh_job_of_a_type_no_runner_here_takes_is_not_proposed(tmp_path: Path) -> None:
    async with jobledger.open(tmp_path / "j.db", workers=[Noop()]) as ledger:
        warm = await ledger.submit("noop")
        await ledger.wait(warm.id, timeout=60)
        other = await ledger.submit("other")
        follow = await ledger.submit("noop")
        await ledger.wait(follow.id, timeout=60)
        assert (await ledger.get(other.id)).status == "pending"
        assert ledger.statistics().workers[0].lost_claims == 0


async def test_fresh_jobs_are_proposed_in_claim_order_with_the_spare_ones(
    tmp_path: Path,
) -> None:
    # The desk's read kept j1 (priority 0); a batch then creates f9
    # (priority 9) and f0 (priority 0, after j1): with one free slot the
    # claim goes to f9, and the others wait in claim order for the next.
    async with running(SqliteLog(tmp_path / "j.db")) as engine:
        for i in range(2):
            await engine.bus.send(create(f"j{i}", job_type="noop"))
        clock = ManualClock()
        capacity = QueueCapacity()
        desk = ClaimDesk(engine.log, clock, capacity)
        runner = WorkerRunner(
            Noop(name="idle"), engine.bus, engine.log, clock=clock, capacity=capacity, desk=desk
        )
        first, _ = await desk.deal(["noop"], 1)  # j0; the read keeps j1
        assert [j.id for j in first] == ["j0"]
        for job_id, priority in (("f9", 9), ("f0", 0)):
            await engine.bus.send(create(job_id, job_type="noop", priority=priority))
        desk.offer(runner)
        fresh = [await engine.log.get_job(job_id) for job_id in ("f9", "f0")]
        (claim,) = desk.propose(clock.now(), [j for j in fresh if j is not None])
        assert claim.job_id == "f9"
        desk.settle([(claim, None)])  # (refused, say): the slot is free again
        claims = desk.propose(clock.now())
        assert [c.job_id for c in claims] == ["j1"]
        desk.settle([(claims[0], None)])
        await runner.stop(0)


async def test_a_job_a_proposed_claim_starts_while_the_desk_reads_is_not_dealt(
    tmp_path: Path,
) -> None:
    # The desk's read began before the batch with its proposed claim of j1
    # committed, so it may still show j1 pending; the desk is told the claim
    # started (settle) before the read comes back. Dealt again, j1's claim
    # could only lose (nobody else here claims it: the runner's own fence
    # refuses it), a lost claim the desk exists to prevent.
    async with running(SqliteLog(tmp_path / "j.db")) as engine:
        for i in range(3):
            await engine.bus.send(create(f"j{i}", job_type="noop"))
        clock = ManualClock()
        capacity = QueueCapacity()
        desk = ClaimDesk(engine.log, clock, capacity)
        runner = WorkerRunner(
            Noop(name="idle"), engine.bus, engine.log, clock=clock, capacity=capacity, desk=desk
        )
        first, _ = await desk.deal(["noop"], 1)  # j0, in a claim; the read keeps j1, j2
        assert [j.id for j in first] == ["j0"]
        desk.offer(runner)  # one free slot, waiting for work
        j1 = await engine.log.get_job("j1")
        assert j1 is not None

        reading = asyncio.ensure_future(desk.deal(["noop"], 3))  # another runner asks
        await eventually(lambda: desk.reads == 2)  # its read is on its way (a snapshot of before)
        (claim,) = desk.propose(clock.now())
        assert claim.job_id == "j1"
        # The batch commits: the claim started j1 (what the Stower hands back).
        desk.settle([(claim, msgspec.structs.replace(j1, status="running", version=2))])
        dealt, _ = await reading
        assert [j.id for j in dealt] == ["j2"]
        await runner.stop(0)


async def test_a_job_made_while_the_desk_reads_stays_among_the_spare_ones(
    tmp_path: Path,
) -> None:
    # A batch makes f0 while the desk's read is on its way (a snapshot of
    # before, which cannot show it), and no claim is proposed for it (its
    # queue is full). When the read comes back, the spare jobs it keeps must
    # still hold f0: dropped, f0 would wait for a poll while later jobs run.
    async with running(SqliteLog(tmp_path / "j.db")) as engine:
        await engine.bus.send(create("j0", job_type="noop"))
        clock = ManualClock()
        capacity = QueueCapacity({"q": 1})
        desk = ClaimDesk(engine.log, clock, capacity)
        runner = WorkerRunner(
            Noop(name="idle"), engine.bus, engine.log, clock=clock, capacity=capacity, desk=desk
        )
        desk.offer(runner)
        assert capacity.try_acquire("q")  # a job of q runs: the queue is full
        j0 = await engine.log.get_job("j0")
        assert j0 is not None
        f0 = msgspec.structs.replace(j0, id="f0", queue="q", created_seq=j0.created_seq + 1)

        # Another runner's read, on its way (of another type: it finds nothing).
        reading = asyncio.ensure_future(desk.deal(["other"], 1))
        await eventually(lambda: desk.reads == 1)
        assert desk.propose(clock.now(), [f0]) == []  # q is full: kept for later
        assert await reading == ([], clock.now())
        capacity.release("q")
        claims = desk.propose(clock.now())
        assert [c.job_id for c in claims] == ["f0"]
        desk.settle([(claim, None) for claim in claims])
        await runner.stop(0)


async def test_a_runner_asking_the_desk_for_its_slot_gets_no_proposed_claim_for_it_too(
    tmp_path: Path,
) -> None:
    # A runner with one slot asks the desk for one job; while the desk reads,
    # a batch asks the desk for claims for runners with a free slot. The slot
    # the runner is asking for is not free: proposing a claim for it as well
    # would have the runner run two jobs at once.
    running_now: set[str] = set()
    peak = [0]
    release = asyncio.Event()

    class Hold(jobledger.JobWorker):
        job_types = ("noop",)
        concurrency = 1

        async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> Any:
            running_now.add(job.id)
            peak[0] = max(peak[0], len(running_now))
            try:
                await release.wait()
            finally:
                running_now.discard(job.id)

    async with running(SqliteLog(tmp_path / "j.db")) as engine:
        for i in range(4):
            await engine.bus.send(create(f"j{i}", job_type="noop"))
        clock = ManualClock()
        capacity = QueueCapacity()
        desk = ClaimDesk(engine.log, clock, capacity)
        runner = WorkerRunner(
            Hold(),
            engine.bus,
            engine.log,
            clock=clock,
            capacity=capacity,
            desk=desk,
            poll_interval=3600,
        )
        first, _ = await desk.deal(["noop"], 1)  # j0, for another runner; the read keeps j1..j3
        assert [j.id for j in first] == ["j0"]
        await runner.start()
        await eventually(lambda: desk.reads == 2)  # the runner asks for its slot's job
        proposals = desk.propose(clock.now())
        for claim in proposals:  # a batch decides what the desk proposes
            reply = await engine.bus.send(claim)
            started = await engine.log.get_job(claim.job_id)
            assert reply and started is not None
            desk.settle([(claim, started)])
        # The runner's own claim is answered, and what it won runs.
        await eventually(lambda: runner.statistics().claimed == len(proposals) + 1)
        await eventually(lambda: len(running_now) == runner.statistics().active)
        assert runner.statistics().active == 1
        assert peak[0] <= 1
        release.set()
        await runner.stop(5)


async def test_a_report_sent_just_after_a_commit_shares_the_next_one(tmp_path: Path) -> None:
    """One producer awaiting each submit, four workers whose jobs end at once:
    the report of the job just started comes a few turns after the commit
    that answered the submit, beside the producer's next submit; the Stower
    waits those turns while a job runs, so both take one commit (without the
    wait, about 1.5 commits a job)."""
    workers = [Noop(name=f"w{i}") for i in range(4)]
    async with jobledger.open(tmp_path / "j.db", workers=workers) as ledger:
        warm = await ledger.submit("noop", {"i": -1})
        await ledger.wait(warm.id, timeout=30)
        before = ledger.statistics().stower.batches
        jobs = [await ledger.submit("noop", {"i": i}) for i in range(100)]
        await asyncio.gather(*(ledger.wait(j.id, timeout=60) for j in jobs))
        batches = ledger.statistics().stower.batches - before
        assert batches <= 125, batches
        await _each_ran_once(ledger, jobs)
