"""The face, end to end: jobledger.open on a real SQLite file, real workers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import reactivex
from reactivex import operators as ops

import jobledger
import jobledger.core
from jobledger import Envelope, Job, JobContext, JobWorker

from .conftest import eventually, note


class Echo(JobWorker):
    """Reports progress in steps, makes a mark per step, returns what it did."""

    job_types = ("echo",)
    progress_interval = 0.0  # report every step (throttling is tested on its own)

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        steps = int(job.params.get("steps", 2))
        for step in range(1, steps + 1):
            await ctx.progress(processed=step, total=steps, stage="echoing")
            resource = job.params.get("resource", "doc")
            await ctx.create_mark(resource, note(resource, f"step {step}"))
        if job.params.get("fail"):
            raise ValueError(f"asked to fail after {steps} steps")
        return {"steps": steps, "text": job.params.get("text", "")}


async def test_a_submitted_job_is_processed_and_completed_with_its_result(db_path: Path) -> None:
    async with jobledger.open(db_path, workers=[Echo()]) as ledger:
        job = await ledger.submit("echo", {"steps": 3, "text": "hi"}, user="alice")
        assert job.status == "pending"
        # Read your writes: get() sees the job at least as submitted (an idle
        # worker's claim may be decided in the same commit as the creation).
        seen = await ledger.get(job.id)
        assert seen.created_seq == job.created_seq and seen.version >= job.version
        assert seen.params == job.params and seen.user == job.user
        done = await ledger.wait(job.id, timeout=10)
        # wait() follows the job by its events; it ends with what get() reads.
        assert done == await ledger.get(job.id)
        assert done.status is jobledger.JobStatus.COMPLETED
        assert done.result == {"steps": 3, "text": "hi"}
        assert done.attempt == 1
        assert done.progress is not None and done.progress.percent == 100.0
        history = await ledger.history(job.id)
        assert [e.type for e in history] == [
            "job.created",
            "job.started",
            "job.progressed",
            "job.progressed",
            "job.progressed",
            "job.completed",
        ]
        assert [e.version for e in history] == [1, 2, 3, 4, 5, 6]
        assert history[0].actor == "alice"
        assert {e.actor for e in history[1:]} == {"worker:Echo"}
        assert {e.correlation_id for e in history} == {job.id}
        marks = await ledger.marks("doc")
        assert [m.annotation["body"][0]["value"] for m in marks] == ["step 1", "step 2", "step 3"]
        assert {m.job_id for m in marks} == {job.id}
        everything = [e async for e in ledger.events()]
        assert [e.seq for e in everything] == list(range(1, len(everything) + 1))
        # The marks come before the completion in the one global order.
        types = [e.type for e in everything]
        assert types.index("job.completed") > max(
            i for i, t in enumerate(types) if t == "mark.created"
        )


async def test_an_exception_in_execute_fails_the_job_with_its_message(db_path: Path) -> None:
    async with jobledger.open(db_path, workers=[Echo()]) as ledger:
        job = await ledger.submit("echo", {"steps": 1, "fail": True})
        done = await ledger.wait(job.id, timeout=10)
        assert done.status == "failed"
        assert done.error == "asked to fail after 1 steps"
        last = (await ledger.history(job.id))[-1]
        assert last.type == "job.failed"
        assert isinstance(last.data, jobledger.core.JobFailed)
        assert last.data.error_type == "ValueError"


async def test_no_event_is_seen_on_the_bus_before_get_reflects_it(db_path: Path) -> None:
    lagging: list[str] = []

    async with jobledger.open(db_path, workers=[Echo()]) as ledger:

        async def check(env: Envelope) -> None:
            if not env.type.startswith("job."):
                return
            job = await ledger.get(env.stream)
            if job.version < env.version:
                lagging.append(f"{env.type}@{env.seq}")

        ledger.bus.subscribe(check)
        jobs = [await ledger.submit("echo", {"steps": 2}) for _ in range(10)]
        for job in jobs:
            await ledger.wait(job.id, timeout=10)
        await ledger.bus.drain()
    assert lagging == []


async def test_closing_and_reopening_gives_identical_state(db_path: Path) -> None:
    async with jobledger.open(db_path, workers=[Echo()]) as ledger:
        jobs = [await ledger.submit("echo", {"steps": 2}, user=f"u{i % 3}") for i in range(12)]
        for job in jobs:
            await ledger.wait(job.id, timeout=10)
        before = await ledger.replay()
        head = await ledger.head()
        listed = [j async for j in _all_jobs(ledger)]
    async with jobledger.open(db_path) as ledger:
        assert await ledger.head() == head
        assert [j async for j in _all_jobs(ledger)] == listed
        after = await ledger.replay()
        assert after.jobs == before.jobs and after.marks == before.marks
        stored = [await ledger.get(j.id) for j in jobs]
        assert stored == [before.jobs[j.id] for j in jobs]
        assert await ledger.rebuild() == head
        assert [j async for j in _all_jobs(ledger)] == listed
        report = await ledger.verify()
        assert report.ok, report.problems
        assert report.events == head


async def _all_jobs(ledger: jobledger.Ledger) -> Any:
    cursor = None
    while True:
        page = await ledger.list(limit=5, cursor=cursor)
        for job in page:
            yield job
        if page.cursor is None:
            return
        cursor = page.cursor


async def test_ownership_hides_other_users_jobs_as_not_found(db_path: Path) -> None:
    async with jobledger.open(db_path) as ledger:
        alice = jobledger.User(
            id="alice", name="Alice", email="a@example.org", domain="example.org"
        )
        job = await ledger.submit("echo", user=alice)
        assert job.user == alice
        assert (await ledger.get(job.id, user="alice")).id == job.id
        for call in (
            ledger.get(job.id, user="bob"),
            ledger.history(job.id, user="bob"),
            ledger.wait(job.id, user="bob", timeout=1),
            ledger.get("job_missing", user="alice"),
        ):
            with pytest.raises(jobledger.NotFound) as caught:
                await call
            assert str(caught.value).startswith("job '")
        assert len(await ledger.list(user="bob")) == 0
        assert [j.id for j in await ledger.list(user="alice")] == [job.id]
        tenant_user = jobledger.User(id="alice", tenant="acme")
        with pytest.raises(jobledger.NotFound):
            await ledger.get(job.id, user=tenant_user)


async def test_list_filters_and_pages(db_path: Path) -> None:
    async with jobledger.open(db_path) as ledger:
        ids = [(await ledger.submit("echo" if i % 2 else "other", user="u")).id for i in range(7)]
        page = await ledger.list(user="u", limit=3)
        assert [j.id for j in page] == ids[::-1][:3]
        assert page.cursor is not None
        rest = await ledger.list(user="u", limit=10, cursor=page.cursor)
        assert [j.id for j in rest] == ids[::-1][3:]
        assert rest.cursor is None
        assert len(await ledger.list(job_type="echo")) == 3
        assert len(await ledger.list(status="pending")) == 7
        assert len(await ledger.list(status=jobledger.JobStatus.COMPLETED)) == 0
        with pytest.raises(jobledger.ValidationError) as caught:
            await ledger.list(status="sleeping")
        assert caught.value.field == "status"


async def test_bad_submissions_are_refused_and_write_nothing(db_path: Path) -> None:
    class Params(msgspec.Struct):
        text: str

    async with jobledger.open(db_path) as ledger:
        for kwargs, field in (
            ({"job_type": "has space"}, "job_type"),
            ({"job_type": "t", "params": [1, 2]}, "params"),
            ({"job_type": "t", "priority": 2**40}, "priority"),
            ({"job_type": "t", "max_retries": -2}, "max_retries"),
            ({"job_type": "t", "timeout": -1.0}, "timeout"),
            ({"job_type": "t", "user": ""}, "user"),
        ):
            with pytest.raises(jobledger.ValidationError) as caught:
                await ledger.submit(**kwargs)  # type: ignore[arg-type]
            assert caught.value.field == field, kwargs
        assert await ledger.head() == 0
        job = await ledger.submit("t", Params(text="ok"))
        assert job.params == {"text": "ok"}
        assert await ledger.head() == 1


async def test_wait_times_out_with_a_typed_error(db_path: Path) -> None:
    async with jobledger.open(db_path) as ledger:
        job = await ledger.submit("nobody-runs-this")
        with pytest.raises(jobledger.WaitTimeout):
            await ledger.wait(job.id, timeout=0.05)
        with pytest.raises(TimeoutError):  # WaitTimeout is also a TimeoutError
            await ledger.wait(job.id, timeout=0)


async def test_a_closed_ledger_refuses_calls(db_path: Path) -> None:
    async with jobledger.open(db_path) as ledger:
        job = await ledger.submit("t")
    with pytest.raises(jobledger.LedgerClosed):
        await ledger.get(job.id)
    with pytest.raises(jobledger.LedgerClosed):
        await ledger.submit("t")


async def test_events_follow_catches_up_then_goes_live_without_gap_or_duplicate(
    db_path: Path,
) -> None:
    async with jobledger.open(db_path) as ledger:
        for _ in range(50):
            await ledger.submit("t")
        seen: list[int] = []

        async def follow() -> None:
            async for env in ledger.events(after=10, follow=True, buffer=16):
                seen.append(env.seq)
                if env.seq == 2050:
                    return

        follower = asyncio.create_task(follow())
        # A burst of appends while the follower switches from the log to live.
        await asyncio.gather(*(ledger.submit("t") for _ in range(2000)))
        await asyncio.wait_for(follower, 30)
        assert seen == list(range(11, 2051))


async def test_events_filter_by_job_and_type(db_path: Path) -> None:
    async with jobledger.open(db_path, workers=[Echo()]) as ledger:
        a = await ledger.submit("echo", {"steps": 1})
        b = await ledger.submit("echo", {"steps": 1})
        await ledger.wait(a.id, timeout=10)
        await ledger.wait(b.id, timeout=10)
        only_b = [e.type async for e in ledger.events(job_id=b.id)]
        assert only_b == ["job.created", "job.started", "job.progressed", "job.completed"]
        created = [e.stream async for e in ledger.events(types=["job.created"])]
        assert created == [a.id, b.id]


async def test_observe_is_a_reactivex_stream_of_the_same_envelopes(db_path: Path) -> None:
    async with jobledger.open(db_path, workers=[Echo()]) as ledger:
        early = await ledger.submit("echo", {"steps": 2})
        await ledger.wait(early.id, timeout=10)
        got: list[str] = []
        progress: list[float] = []
        done = asyncio.Event()
        source = ledger.observe(after=0, job_id=early.id)
        sub1 = source.subscribe(lambda env: got.append(env.type))
        sub2 = source.pipe(
            ops.filter(lambda env: env.type == "job.progressed"),
            ops.map(lambda env: env.data.percent),  # type: ignore[union-attr]
        ).subscribe(lambda p: (progress.append(p), len(progress) == 2 and done.set()))
        await asyncio.wait_for(done.wait(), 10)
        await eventually(lambda: len(got) == 5)
        assert got == [
            "job.created",
            "job.started",
            "job.progressed",
            "job.progressed",
            "job.completed",
        ]
        assert progress == [50.0, 100.0]
        sub1.dispose()
        sub2.dispose()
        assert isinstance(source, reactivex.Observable)


async def test_statistics_count_what_happened(db_path: Path) -> None:
    async with jobledger.open(db_path, workers=[Echo()]) as ledger:
        job = await ledger.submit("echo", {"steps": 1})
        await ledger.wait(job.id, timeout=10)
        stats = ledger.statistics()
        assert stats.path == str(db_path)
        assert stats.stower.events == await ledger.head()
        assert stats.stower.running
        (worker,) = stats.workers
        assert (worker.worker, worker.claimed, worker.completed, worker.failed) == ("Echo", 1, 1, 0)
        assert stats.bus.handler_errors == 0


async def test_an_in_memory_ledger_works_the_same(tmp_path: Path) -> None:
    async with jobledger.open(None, workers=[Echo()]) as ledger:
        job = await ledger.submit("echo", {"steps": 1})
        assert (await ledger.wait(job.id, timeout=10)).status == "completed"
        assert ledger.path == ":memory:"
        assert (await ledger.verify()).ok


async def test_a_follower_ends_when_the_ledger_closes(db_path: Path) -> None:
    seen: list[int] = []
    async with jobledger.open(db_path, poll_interval=3600) as ledger:
        await ledger.submit("t")

        async def follow() -> None:
            async for env in ledger.events(follow=True):
                seen.append(env.seq)

        follower = asyncio.create_task(follow())
        await eventually(lambda: seen == [1])
    await asyncio.wait_for(follower, 10)
    assert seen == [1]


def _run_script(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(code)
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )


def test_opening_a_file_that_is_not_a_database_fails_cleanly_and_exits(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a database, just some notes\n" * 100)
    done = _run_script(
        tmp_path,
        "import asyncio, jobledger\n"
        "async def main():\n"
        "    try:\n"
        "        async with jobledger.open('notes.txt'):\n"
        "            pass\n"
        "    except jobledger.core.StorageError as exc:\n"
        "        print('refused:', exc)\n"
        "asyncio.run(main())\n",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: cannot open notes.txt")


def test_the_process_exits_when_the_loop_is_torn_down_mid_job(tmp_path: Path) -> None:
    # A task raising SystemExit makes asyncio cancel every task at once: the
    # Stower, the worker and the job. Shutdown must still finish.
    done = _run_script(
        tmp_path,
        "import asyncio, jobledger\n"
        "class Slow(jobledger.JobWorker):\n"
        "    job_types = ('slow',)\n"
        "    async def execute(self, job, ctx):\n"
        "        await asyncio.Event().wait()\n"
        "async def main():\n"
        "    async with jobledger.open('jobs.db', workers=[Slow()]) as ledger:\n"
        "        job = await ledger.submit('slow')\n"
        "        while (await ledger.get(job.id)).status != 'running':\n"
        "            await asyncio.sleep(0)\n"
        "        async def boom():\n"
        "            raise SystemExit(3)\n"
        "        await asyncio.gather(boom(), asyncio.Event().wait())\n"
        "asyncio.run(main())\n",
    )
    assert done.returncode == 3, done.stderr


async def test_another_processs_events_reach_waiters_and_followers(tmp_path: Path) -> None:
    """Another process on the same file: its events reach this ledger's
    ``wait`` and ``events(follow=True)`` through the tail of the log."""
    path = tmp_path / "shared.db"
    async with jobledger.open(path, poll_interval=0.05) as ledger:
        job = await ledger.submit("elsewhere")  # no worker here: another process runs it
        start = await ledger.head()
        followed: list[tuple[int, str]] = []

        async def follow() -> None:
            async for env in ledger.events(start, follow=True):
                followed.append((env.seq, env.type))
                if env.type == "job.completed":
                    return

        follower = asyncio.create_task(follow())
        waiting = asyncio.create_task(ledger.wait(job.id, timeout=60))
        script = tmp_path / "other.py"
        script.write_text(
            "import asyncio, sys, jobledger\n"
            "class Worker(jobledger.JobWorker):\n"
            "    job_types = ('elsewhere',)\n"
            "    progress_interval = 0.0\n"
            "    async def execute(self, job, ctx):\n"
            "        await ctx.progress(50)\n"
            "        return {'by': 'the other process'}\n"
            "async def main():\n"
            "    async with jobledger.open(sys.argv[1], workers=[Worker()]) as other:\n"
            f"        await other.wait({job.id!r}, timeout=30)\n"
            "asyncio.run(main())\n"
        )
        other = await asyncio.create_subprocess_exec(sys.executable, str(script), str(path))
        assert await asyncio.wait_for(other.wait(), 60) == 0
        done = await waiting
        assert done.status == "completed" and done.result == {"by": "the other process"}
        await asyncio.wait_for(follower, 10)
        assert followed == [
            (start + 1, "job.started"),
            (start + 2, "job.progressed"),
            (start + 3, "job.completed"),
        ]


async def test_wait_keeps_events_that_arrive_while_it_reads(db_path: Path) -> None:
    """A read may be made before an event's commit and come back after its
    publication: the waiter keeps what arrives while it reads and applies it
    after, so the last event is never lost (nor is a gap)."""
    from jobledger.ledger import _Waiter

    async with jobledger.open(db_path, workers=[Echo()]) as ledger:
        job = await ledger.submit("echo", {"steps": 1})
        await ledger.wait(job.id, timeout=10)
        created, started, progressed, *_, completed = await ledger.history(job.id)
        running = await ledger.replay(until_seq=progressed.seq)
        stale_read = running.jobs[job.id]  # what a read made before the end saw

        waiter = _Waiter(lambda j: j.is_terminal)
        waiter.offer(completed)  # published while the read was under way
        waiter.read(stale_read)
        assert waiter.job is not None and waiter.job.status == "completed"
        assert waiter.wake.is_set()

        gapped = _Waiter(lambda j: j.is_terminal)
        gapped.read((await ledger.replay(until_seq=created.seq)).jobs[job.id])
        gapped.offer(completed)  # versions 2..n-1 never came: read afresh
        assert gapped.reading and gapped.wake.is_set()
        gapped.read(await ledger.get(job.id))
        assert gapped.job is not None and gapped.job.status == "completed"
        assert started.version == 2
