"""Following other processes' commits by their notices (PostgreSQL): a
Stower whose head another process moved learns the new head from the
notice and writes without a read when the batch needs nothing else, and
never decides on what that process changed (the streams it names, the
queues' records) without reading it again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest

import jobledger
from jobledger.core import (
    ConcurrencyConflict,
    JobStart,
    JobSuspend,
    JobType,
    QueueFull,
)
from jobledger.store import Notice
from jobledger.workers import ClaimDesk

from .conftest import eventually
from .postgres import Schemas, pg_schemas, postgres_url

__all__ = ["pg_schemas", "postgres_url"]

TYPES = [JobType(name="t", queue="narrow", suspendable=True)]


@asynccontextmanager
async def two_ledgers(pg_schemas: Schemas) -> AsyncIterator[tuple[jobledger.Ledger, ...]]:
    """Two ledgers on one schema, each with a writer and a listener of its
    own (as two processes would have)."""
    url = f"{pg_schemas.url}?schema={pg_schemas.new()}"
    async with (
        jobledger.open(url, job_types=TYPES) as a,
        jobledger.open(url, job_types=TYPES) as b,
    ):
        yield a, b


async def test_a_followed_notice_lets_a_new_job_be_written_without_a_read(
    pg_schemas: Schemas,
) -> None:
    async with two_ledgers(pg_schemas) as (a, b):
        await a.submit("t")
        followed = a.statistics().stower.followed
        await b.submit("t")  # moves the head under a's Stower
        await eventually(lambda: a.statistics().stower.followed > followed)
        before = a.statistics().stower
        third = await a.submit("t")
        after = a.statistics().stower
        # Decided on the notice's head, with no read and no refused write.
        assert (after.reads, after.stale_writes) == (before.reads, before.stale_writes)
        assert third.created_seq == 3
        history = [env async for env in a.events()]
        assert [env.seq for env in history] == [1, 2, 3]
        assert (await a.verify()).ok


class Started(jobledger.JobWorker):
    """Records the jobs it started."""

    job_types = ("t",)

    def __init__(self) -> None:
        super().__init__()
        self.started: list[str] = []

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> None:
        self.started.append(job.id)


async def test_a_claim_of_a_job_another_process_submitted_is_decided_on_the_desks_read(
    pg_schemas: Schemas,
) -> None:
    """The claim desk's read of the pending jobs carries the head it saw; at
    the Stower's head (the notice followed), the claim of a job found there
    is decided on that read and committed in one round trip: no read of the
    job again, no refused write."""
    url = f"{pg_schemas.url}?schema={pg_schemas.new()}"
    worker = Started()
    # (a long poll: the desk reads when the notice tells of the submit)
    async with (
        jobledger.open(url, job_types=TYPES, workers=[worker], poll_interval=60) as a,
        jobledger.open(url, job_types=TYPES) as b,
    ):
        await eventually(lambda: a.statistics().stower.running)
        before = a.statistics().stower
        jobs = []
        for _ in range(3):
            jobs.append(await b.submit("t"))
            await b.wait(jobs[-1].id, timeout=10)
        after = a.statistics().stower
        assert worker.started == [job.id for job in jobs]
        assert (after.reads, after.stale_writes) == (before.reads, before.stale_writes)
        assert after.followed >= before.followed + 3
        history = [(env.stream, env.type) async for env in b.events()]
        for job in jobs:
            assert [t for s, t in history if s == job.id] == [
                "job.created",
                "job.started",
                "job.completed",
            ]
        assert (await b.verify()).ok


class Other(jobledger.JobWorker):
    """A worker of another type: its ledger has a claim desk, idle here."""

    job_types = ("u",)

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> None:
        return None


async def test_a_desk_read_at_another_head_is_not_taken(pg_schemas: Schemas) -> None:
    """A read the desk made at a head the Stower is not at is left alone:
    the claim reads the job (here: another process suspended it since, so
    the claim is refused on facts, and nothing is written)."""
    url = f"{pg_schemas.url}?schema={pg_schemas.new()}"
    types = [*TYPES, JobType(name="u")]
    async with (
        jobledger.open(url, job_types=types, workers=[Other()], poll_interval=60) as a,
        jobledger.open(url, job_types=types) as b,
    ):
        desk = a._engine._stower._proposer  # (white box: the desk, and a read of its)
        assert isinstance(desk, ClaimDesk)
        for runner in a._engine._runners:  # (the desk's own reads would replace it)
            await runner.stop()
        job = await b.submit("t")
        await eventually(lambda: a.statistics().stower.followed > 0)
        read = await a._engine.log.next_pending_read(["t"], a.clock.now(), limit=10)
        assert [j.id for j in read.jobs] == [job.id]
        assert read.seq == await a.head()
        await b.bus.send(JobSuspend(job_id=job.id))
        await eventually(lambda: a.statistics().stower.followed > 1)
        head = await a.digest()
        desk._read, desk._read_by_id = read, None  # as if read so, before the suspend
        assert desk.read_at(head.seq, head.hash) == {}
        assert desk.read_at(read.seq, read.hash) == {job.id: read.jobs[0]}
        with pytest.raises(ConcurrencyConflict):
            await a.bus.send(JobStart(job_id=job.id, worker="w", expected_version=1))
        assert await a.digest() == head
        assert (await a.get(job.id)).status == "suspended"


async def test_a_notice_followed_while_a_batch_waits_for_the_lock_does_not_vouch_for_its_plan(
    pg_schemas: Schemas,
) -> None:
    """a's batch is planned on its cache at head 1 (job X at version 1), then
    waits for the append lock behind b, which suspends X (head 2). a follows
    b's notice while it waits, so its head is 2 when its read under the lock
    returns head 2: the plan was still made at 1, so it is made again on
    facts (the claim refused as stale), never committed on the old X (a
    refused write: a StorageError to every command of the batch)."""
    async with two_ledgers(pg_schemas) as (a, b):
        job = await a.submit("t")  # a's Stower caches it at version 1
        key = a._engine.log._append_key  # type: ignore[attr-defined]
        raw = await asyncpg.connect(pg_schemas.url)
        try:

            def waiting(count: int) -> Callable[[], Awaitable[bool]]:
                async def check() -> bool:
                    found = await raw.fetchval(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    )
                    return bool(found == count)

                return check

            async with raw.transaction():
                await raw.execute("SELECT pg_advisory_xact_lock($1)", key)
                suspend = asyncio.ensure_future(b.bus.send(JobSuspend(job_id=job.id)))
                await eventually(waiting(1))
                # One batch that must read (an idempotency key) and claims X.
                claim = asyncio.ensure_future(
                    a.bus.send(JobStart(job_id=job.id, worker="w", expected_version=1))
                )
                keyed = asyncio.ensure_future(a.submit("t", idempotency_key="k"))
                await eventually(waiting(2))
            await suspend
            with pytest.raises(ConcurrencyConflict):
                await claim
            assert (await keyed).status == "pending"
        finally:
            await raw.close()
        assert (await a.get(job.id)).status == "suspended"
        assert (await a.verify()).ok


async def test_a_job_another_process_changed_is_read_again_not_taken_from_the_cache(
    pg_schemas: Schemas,
) -> None:
    async with two_ledgers(pg_schemas) as (a, b):
        job = await a.submit("t")  # a's Stower caches it at version 1
        await b.bus.send(JobSuspend(job_id=job.id))  # b moves it to version 2
        await eventually(lambda: a.statistics().stower.followed > 0)
        head, stale = await a.head(), a.statistics().stower.stale_writes
        with pytest.raises(ConcurrencyConflict):  # version 1 is stale: refused, not written
            await a.bus.send(JobStart(job_id=job.id, worker="w", expected_version=1))
        assert await a.head() == head
        # Read again, not tried on the cache (which the events' unique
        # stream version would have refused at commit: a wasted write).
        assert a.statistics().stower.stale_writes == stale
        assert (await a.get(job.id)).status == "suspended"
        assert (await a.verify()).ok


async def test_a_queue_another_process_filled_is_read_again(pg_schemas: Schemas) -> None:
    async with two_ledgers(pg_schemas) as (a, b):
        first, second = await a.submit("t"), await a.submit("t")
        await b.register_queue("narrow", capacity=1)
        await b.bus.send(JobStart(job_id=first.id, worker="w", expected_version=1))
        await eventually(lambda: a.statistics().stower.followed > 0)
        with pytest.raises(QueueFull):
            await a.bus.send(JobStart(job_id=second.id, worker="w", expected_version=1))
        (queue,) = await a.queues()
        assert (queue.capacity, queue.running) == (1, 1)


async def test_a_notice_that_does_not_continue_the_head_drops_what_was_known(
    pg_schemas: Schemas,
) -> None:
    """A notice missed: the next one's ``previous`` is not the Stower's head.
    Taking its head would let a batch decided on a stale cache commit (the
    append checks only the head); the Stower forgets instead, and its next
    batch reads the log."""
    async with two_ledgers(pg_schemas) as (a, b):
        job = await a.submit("t")  # a's Stower caches it at version 1, head 1
        engine = a._engine  # (white box: a's notices and commit callbacks cut off)
        for stop in (engine._stop_following, engine._stop_hearing):
            assert stop is not None
            stop()
        await b.bus.send(JobSuspend(job_id=job.id))  # seq 2: the notice a misses
        other = await b.submit("t")  # seq 3
        head = await b.digest()
        engine._stower.follow(Notice(head.seq, head.hash, 2, False, [other.id]))
        assert engine._stower.statistics().followed == 0
        with pytest.raises(ConcurrencyConflict):
            await a.bus.send(JobStart(job_id=job.id, worker="w", expected_version=1))
        assert await a.head() == 3
        assert (await a.get(job.id)).status == "suspended"
        assert (await a.verify()).ok
