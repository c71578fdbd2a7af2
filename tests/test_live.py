"""Live subscriptions for UIs: catch-up with no gap and no duplicate under
load, slow readers that lose nothing and slow nobody, filters."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import jobledger
from jobledger import Job, JobContext, JobWorker

from .conftest import eventually, note


async def submit_many(ledger: jobledger.Ledger, count: int, job_type: str = "t") -> None:
    for start in range(0, count, 1000):
        await asyncio.gather(
            *(ledger.submit(job_type, {"i": i}) for i in range(start, min(count, start + 1000)))
        )


async def test_a_follower_started_during_a_burst_sees_each_seq_once_in_order(
    db_path: Path,
) -> None:
    async with jobledger.open(db_path) as ledger:
        burst = asyncio.create_task(submit_many(ledger, 10_000))

        async def mid_burst() -> bool:
            return await ledger.head() >= 2_000

        await eventually(mid_burst)
        assert not burst.done()
        seen: list[int] = []

        async def follow() -> None:
            async for env in ledger.events(0, follow=True):
                seen.append(env.seq)
                if env.seq == 10_000:
                    return

        follower = asyncio.create_task(follow())
        await burst
        await asyncio.wait_for(follower, 30)
        assert seen == list(range(1, 10_001))


async def test_a_slow_follower_is_told_loses_nothing_and_slows_no_one(db_path: Path) -> None:
    async with jobledger.open(db_path) as ledger:
        start = await ledger.head()
        gate = asyncio.Event()
        got: list[int] = []
        told: list[int] = []
        fast: list[int] = []

        async def slow() -> None:
            async for env in ledger.events(start, follow=True, buffer=100, on_overflow=told.append):
                await gate.wait()  # stuck until the test lets it go
                got.append(env.seq)
                if len(got) == 3_000:
                    return

        async def quick() -> None:
            async for env in ledger.events(start, follow=True):
                fast.append(env.seq)
                if len(fast) == 3_000:
                    return

        subscribers = ledger.statistics().bus.subscribers
        followers = [asyncio.create_task(slow()), asyncio.create_task(quick())]
        await eventually(lambda: ledger.statistics().bus.subscribers == subscribers + 2)
        # Every submit is committed and answered while the slow reader is stuck.
        await submit_many(ledger, 3_000)
        assert await ledger.head() == start + 3_000
        await asyncio.wait_for(followers[1], 30)  # the other reader is not held up
        assert fast == list(range(start + 1, start + 3_001))
        assert len(told) == 1 and start + 101 <= told[0] <= start + 3_000
        assert got == []
        gate.set()
        await asyncio.wait_for(followers[0], 30)
        assert got == list(range(start + 1, start + 3_001))  # read back from the log


class Marker(JobWorker):
    job_types = ("a",)

    async def execute(self, job: Job, ctx: JobContext) -> Any:
        await ctx.create_mark("doc", note("doc", job.id))
        return None


async def test_events_filter_by_job_type_with_their_marks(db_path: Path) -> None:
    async with jobledger.open(db_path, workers=[Marker()]) as ledger:
        a1 = await ledger.submit("a")
        await ledger.wait(a1.id, timeout=10)
        b = await ledger.submit("b")  # no worker: stays pending
        a2 = await ledger.submit("a")
        await ledger.wait(a2.id, timeout=10)
        of_a = [env async for env in ledger.events(job_type="a")]
        streams = {env.stream for env in of_a if env.type.startswith("job.")}
        assert streams == {a1.id, a2.id}
        marks = [env for env in of_a if env.type == "mark.created"]
        assert [env.data.job_id for env in marks] == [a1.id, a2.id]  # type: ignore[union-attr]
        of_b = [env.type async for env in ledger.events(job_type="b")]
        assert of_b == ["job.created"]
        assert b.job_type == "b"


async def test_observe_live_only_misses_nothing_committed_after_subscribing(
    db_path: Path,
) -> None:
    async with jobledger.open(db_path) as ledger:
        await ledger.submit("before")  # not live: before the subscription
        got: list[str] = []
        done = asyncio.Event()

        def on_next(env: jobledger.Envelope) -> None:
            got.append(env.data.job_type)  # type: ignore[union-attr]
            if len(got) == 2:
                done.set()

        disposable = ledger.observe(types=["job.created"]).subscribe(on_next)
        # Committed at once, before the observer's task has even started.
        await ledger.submit("first")
        await ledger.submit("second")
        await asyncio.wait_for(done.wait(), 10)
        disposable.dispose()
        assert got == ["first", "second"]


async def test_replay_until_a_naive_time_is_a_typed_error(db_path: Path) -> None:
    from datetime import datetime

    async with jobledger.open(db_path) as ledger:
        with pytest.raises(jobledger.ValidationError) as caught:
            await ledger.replay(until=datetime(2026, 1, 1))
        assert caught.value.field == "until"


async def test_a_commit_the_log_tells_of_wakes_followers_without_a_poll(tmp_path: Path) -> None:
    # An import writes through the log, not the bus: the log's commit
    # notification wakes the tail at once, with no tick of the clock.
    async with jobledger.open(tmp_path / "source.db") as source:
        for i in range(3):
            await source.submit("t", {"i": i})
        lines = [line async for line in source.export_log()]
    clock = jobledger.ManualClock()
    async with jobledger.open("memory://", clock=clock, poll_interval=3600) as ledger:
        seen: list[int] = []

        async def follow() -> None:
            async for env in ledger.events(follow=True):
                seen.append(env.seq)
                if len(seen) == 3:
                    return

        follower = asyncio.ensure_future(follow())
        await eventually(lambda: clock.sleepers >= 1)  # the tail waits on the clock
        assert await ledger.import_log(lines) == 3
        await asyncio.wait_for(follower, 10)
        assert seen == [1, 2, 3]
        assert clock.monotonic() == 0.0  # no poll came due: the notification woke it
