"""The PostgreSQL backend against a real server: the backend contract, each
log in a schema of its own (tests/postgres.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import jobledger
import jobledger.core
from jobledger.cli import main
from jobledger.core import ManualClock
from jobledger.store import Backend, Head, ServerClock, postgres_listen
from jobledger.store.postgres import PostgresLog
from jobledger.testing import BackendContract, Chain, created

from . import faults
from .conftest import eventually
from .postgres import Schemas, pg_schemas, postgres_url

__all__ = ["pg_schemas", "postgres_url"]


class TestPostgres(BackendContract):
    @pytest.fixture
    def new_backend(self, pg_schemas: Schemas) -> Callable[[], Backend]:
        return lambda: PostgresLog(pg_schemas.url, schema=pg_schemas.new())

    @pytest.fixture
    def same_storage(self, pg_schemas: Schemas) -> Callable[[Backend], Backend]:
        def same(log: Backend) -> Backend:
            assert isinstance(log, PostgresLog)
            return PostgresLog(pg_schemas.url, schema=log.schema)

        return same


# -- a whole ledger on PostgreSQL ------------------------------------------------


class Echo(jobledger.JobWorker):
    job_types = ("echo",)

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> Any:
        await ctx.progress(50, stage="half")
        return {"echo": job.params, "by": self.name}


async def test_a_ledger_on_postgresql_runs_jobs_and_verifies(pg_schemas: Schemas) -> None:
    url = f"{pg_schemas.url}?schema={pg_schemas.new()}"
    async with jobledger.open(url, workers=[Echo(name="w1"), Echo(name="w2")]) as ledger:
        jobs = await asyncio.gather(*(ledger.submit("echo", {"i": i}) for i in range(40)))
        ended = await asyncio.gather(*(ledger.wait(j.id, timeout=30) for j in jobs))
        assert {j.status for j in ended} == {"completed"}
        assert [j.result for j in ended] == [
            {"echo": {"i": i}, "by": j.result["by"]} for i, j in enumerate(ended)
        ]
        history = await ledger.history(jobs[0].id)
        assert [e.type for e in history] == [
            "job.created",
            "job.started",
            "job.progressed",
            "job.completed",
        ]
        digest = (await ledger.digest()).text
        report = await ledger.verify()
        assert report.ok, report.problems
        assert report.events == 160
    # Opened again (another process would do the same): the same log, the same head.
    async with jobledger.open(url) as again:
        assert (await again.digest()).text == digest
        assert (await again.get(jobs[-1].id)).status == "completed"
        assert (await again.verify(digest=Head.parse(digest))).ok


async def test_content_lives_in_the_database(pg_schemas: Schemas) -> None:
    url = f"{pg_schemas.url}?schema={pg_schemas.new()}"
    async with jobledger.open(url) as ledger:
        resource = await ledger.create_resource("doc.md", b"# A document\n\nwith text.")
    async with jobledger.open(url) as elsewhere:  # another host sees it: nothing on disk
        assert await elsewhere.content(resource.id) == b"# A document\n\nwith text."


async def test_a_commit_in_one_process_wakes_a_worker_in_another_at_once(
    pg_schemas: Schemas,
) -> None:
    # The worker's ledger polls once an hour: only the commit notice can wake it.
    url = f"{pg_schemas.url}?schema={pg_schemas.new()}"
    async with (
        jobledger.open(url, workers=[Echo()], poll_interval=3600) as working,
        jobledger.open(url, poll_interval=3600) as submitting,
    ):
        warm = await submitting.submit("echo")
        await submitting.wait(warm.id, timeout=30)
        loop = asyncio.get_running_loop()
        for i in range(5):
            t0 = loop.time()
            job = await submitting.submit("echo", {"i": i})
            done = await submitting.wait(job.id, timeout=10)
            assert done.status == "completed"
            assert loop.time() - t0 < 5
        assert (await working.verify()).ok


async def test_the_listener_reconnects_and_a_poll_covers_the_gap(pg_schemas: Schemas) -> None:
    schema = pg_schemas.new()
    watching = PostgresLog(pg_schemas.url, schema=schema, poll_interval=0.05)
    writing = PostgresLog(pg_schemas.url, schema=schema)
    await watching.open()
    await writing.open()
    told: list[int] = []
    watching.on_commit(told.append)
    try:
        chain = Chain()

        async def append(job_id: str) -> None:
            async with writing.write() as w:
                records = chain.records(await w.head(), [created(job_id)])
                await w.append(records, chain.changes(records))
            chain.commit(records)

        await append("a")
        await eventually(lambda: told == [1])
        # The listener's connection dies (a server restart, a network cut).
        listener = watching._listener
        assert listener is not None
        listener.terminate()
        await append("b")
        await eventually(lambda: told == [1, 2])  # the poll saw it
        await eventually(lambda: watching._listener not in (None, listener))
        await append("c")
        await eventually(lambda: told == [1, 2, 3])
    finally:
        await watching.close()
        await writing.close()


async def test_an_unreachable_server_is_a_storage_error_and_leaves_nothing_open() -> None:
    with pytest.raises(jobledger.core.StorageError, match="cannot open"):
        async with jobledger.open("postgresql://nobody@127.0.0.1:1/test"):
            pass


# -- moving up from SQLite, and back ----------------------------------------------


async def _sqlite_log_with_history(path: Path) -> str:
    """An SQLite log with finished jobs and a resource; returns its digest."""
    async with jobledger.open(path, workers=[Echo()]) as ledger:
        await ledger.create_resource("a.md", "# A\n\nsome text")
        jobs = [await ledger.submit("echo", {"i": i}, idempotency_key=f"k{i}") for i in range(5)]
        for job in jobs:
            await ledger.wait(job.id, timeout=30)
        return (await ledger.digest()).text


async def test_copy_moves_a_log_from_sqlite_to_postgresql_and_back(
    pg_schemas: Schemas, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = await _sqlite_log_with_history(tmp_path / "old.db")
    url = f"{pg_schemas.url}?schema={pg_schemas.new()}"
    code = await asyncio.to_thread(main, ["copy", "--from", str(tmp_path / "old.db"), "--to", url])
    out = capsys.readouterr().out
    assert code == 0, out
    assert digest in out and "verify: ok" in out
    async with jobledger.open(url) as moved:
        assert (await moved.digest()).text == digest
        (resource,) = await moved.resources()
        assert await moved.content(resource.id) == b"# A\n\nsome text"
        assert (await moved.verify(digest=digest)).ok
        key_holder = await moved.submit("echo", {"i": 0}, idempotency_key="k0")
        assert key_holder.status == "completed"  # the read model came with it
    back = tmp_path / "back.db"
    assert await asyncio.to_thread(main, ["copy", "--from", url, "--to", str(back)]) == 0
    async with jobledger.open(back) as returned:
        assert (await returned.digest()).text == digest
        assert (await returned.verify()).ok


async def test_copy_into_a_log_that_is_not_empty_is_refused_and_changes_nothing(
    pg_schemas: Schemas, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _sqlite_log_with_history(tmp_path / "a.db")
    url = f"{pg_schemas.url}?schema={pg_schemas.new()}"
    async with jobledger.open(url) as existing:
        await existing.submit("echo")
        before = (await existing.digest()).text
    code = await asyncio.to_thread(main, ["copy", "--from", str(tmp_path / "a.db"), "--to", url])
    assert code == 2  # bad input: the target is not empty
    assert "not empty" in capsys.readouterr().err
    async with jobledger.open(url) as existing:
        assert (await existing.digest()).text == before


class CutAtCommit:
    """Cuts the log's write connection once, with every statement of a batch
    run and its COMMIT not sent: as a network cut or a server restart would."""

    def __init__(self, times: int) -> None:
        self.log: PostgresLog | None = None
        self.times = times
        self.cuts = 0

    def reach(self, point: str) -> None:
        if point == "store.after_insert" and self.cuts < self.times and self.log is not None:
            self.cuts += 1
            self.log._writer.terminate()


@pytest.mark.parametrize("times", [1, 2])  # (the second cut: on the batch decided again)
async def test_a_connection_lost_at_commit_writes_nothing_and_the_batch_is_decided_again(
    pg_schemas: Schemas, times: int
) -> None:
    cut = CutAtCommit(times)
    log = PostgresLog(pg_schemas.url, schema=pg_schemas.new(), faults=cut)
    cut.log = log
    ledger = jobledger.Ledger(log)
    await ledger.start()
    try:
        job = await ledger.submit("echo", {"n": 1})  # cut at its commit, then written again
        assert cut.cuts == times
        assert job.status == "pending"
        assert [e.type for e in await ledger.history(job.id)] == ["job.created"]
        assert await ledger.head() == 1
        again = await ledger.submit("echo", {"n": 2})  # the new connection serves on
        assert (await ledger.get(again.id)).params == {"n": 2}
        assert (await ledger.verify()).ok
    finally:
        await ledger.aclose()


# -- the server's clock -----------------------------------------------------------


async def test_a_host_whose_clock_is_an_hour_off_reads_the_servers_time(
    pg_schemas: Schemas,
) -> None:
    log = PostgresLog(pg_schemas.url, schema=pg_schemas.new())
    await log.open()
    try:
        for skew in (3600.0, -3600.0):
            clock = ServerClock(log, faults.OffsetClock(skew))
            await clock.sync()
            server = await log.server_time()
            assert abs((clock.now() - server).total_seconds()) < 1.0
            assert abs(clock.offset.total_seconds() + skew) < 1.0
    finally:
        await log.close()


async def test_the_offset_is_measured_again_every_interval(pg_schemas: Schemas) -> None:
    log = PostgresLog(pg_schemas.url, schema=pg_schemas.new())
    await log.open()
    try:
        base = ManualClock(datetime(2020, 1, 1, tzinfo=UTC))  # stands still
        clock = ServerClock(log, base, interval=30)
        await clock.sync()
        first = clock.offset
        assert abs((clock.now() - await log.server_time()).total_seconds()) < 1.0
        base.advance(29)
        clock.now()
        assert clock._syncing is None  # not due yet
        base.advance(1)  # now it is: the next now() measures again, in the background
        assert clock.now() == base.now() + first  # (the old offset until the new one is in)
        await eventually(lambda: clock._syncing is None and clock.offset != first)
        # The base moved 30 s ahead and the server did not (much): the offset fell by about 30 s.
        assert abs((first - clock.offset).total_seconds() - 30) < 1.0
    finally:
        await log.close()


async def test_a_ledger_on_postgresql_judges_time_by_the_servers_clock(pg_schemas: Schemas) -> None:
    url = f"{pg_schemas.url}?schema={pg_schemas.new()}"
    async with jobledger.open(url) as ledger:
        assert isinstance(ledger.clock, ServerClock)
        job = await ledger.submit("echo")
        # The event's time is the server's (to within the round trips).
        server = await ledger._engine.log.server_time()  # type: ignore[attr-defined]
        assert abs((job.created_at - server).total_seconds()) < 1.0
    async with jobledger.open(url, clock=ManualClock()) as manual:  # a given clock is kept
        assert isinstance(manual.clock, ManualClock)


# -- several processes on one PostgreSQL log ------------------------------------


async def test_four_worker_processes_and_a_producer_run_each_job_once(
    pg_schemas: Schemas, tmp_path: Path
) -> None:
    """Real processes on one schema: two submitters, four workers and two
    subscribers; each job runs once (one ``job.started``, attempt 1), each
    subscriber sees every event once in ``seq`` order, the log is gapless
    and verifies (``faults.load`` checks all of it)."""
    url = f"{pg_schemas.url}?schema={pg_schemas.new()}"
    figures = await faults.load(url, tmp_path, submitters=2, jobs=30, workers=4)  # type: ignore[arg-type]
    assert figures["jobs"] == 60
    assert sum(figures["claims_per_worker"]) == 60


@pytest.mark.parametrize("apart", [False, True], ids=["same-host", "another-host"])
async def test_a_killed_worker_process_job_is_resumed_by_another_process(
    pg_schemas: Schemas, apart: bool
) -> None:
    """kill -9 the process holding a job under 2-second leases: a worker in
    another process, idle and listening, runs it again. A holder this host
    can prove dead is recovered at once; one it cannot (in a PID namespace
    of its own, as on another host) when its lease runs out, within the
    lease and a second (with a second's margin for a busy machine)."""
    if apart and shutil.which("unshare") is None:
        pytest.skip("no unshare here to run a process apart")
    url = f"{pg_schemas.url}?schema={pg_schemas.new()}"
    lease = 2.0
    async with jobledger.open(url, sweep_interval=0.2) as ledger:
        job = await ledger.submit("held", max_retries=1)
        holder = faults.spawn(url, "holder", repr(lease), apart=apart)  # type: ignore[arg-type]
        procs = [holder]
        try:
            assert await faults.read_line(holder, timeout=30) == ["claimed", job.id, "1"]
            other = faults.spawn(url, "standby", repr(lease))  # type: ignore[arg-type]
            procs.append(other)
            assert await faults.read_line(other, timeout=30) == ["ready"]
            loop = asyncio.get_running_loop()
            killed_at = loop.time()
            holder.kill()
            assert await faults.read_line(other, timeout=30) == ["claimed", job.id, "2"]
            resumed = loop.time() - killed_at
            assert resumed <= lease + 1.0 + 1.0, resumed
            if apart:
                assert resumed >= lease * 0.5, resumed  # (it could not be proven dead)
            faults.tell(other)
            done = await ledger.wait(job.id, timeout=30)
            assert (done.status, done.attempt, done.recoveries) == ("completed", 2, 1)
            (expired,) = [e for e in await ledger.history(job.id) if e.type == "job.lease_expired"]
            assert expired.data.reason == ("lease" if apart else "holder")  # type: ignore[union-attr]
            assert (await ledger.verify()).ok
        finally:
            faults.stop_all(procs)


async def test_a_write_connection_lost_between_writes_is_made_again(pg_schemas: Schemas) -> None:
    # Five times: the next write may reach the dead connection before or
    # after the driver has read the server's goodbye (both are lost, not bugs).
    ledger_schema = pg_schemas.new()
    url = f"{pg_schemas.url}?schema={ledger_schema}"
    async with jobledger.open(url) as ledger:
        await ledger.submit("echo")
        for round_ in range(5):
            conn = await asyncpg.connect(pg_schemas.url)
            try:  # the server ends every connection of the ledger (a restart, an operator)
                ended = await conn.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = $1 AND pid <> pg_backend_pid()",
                    f"jobledger:{ledger_schema}",
                )
                assert len(ended) >= 2  # the writer and the listener (and readers)
            finally:
                await conn.close()
            job = await ledger.submit("echo", {"after": round_})
            assert (await ledger.get(job.id)).params == {"after": round_}
        assert await ledger.head() == 6
        assert (await ledger.verify()).ok


async def test_copy_from_a_schema_that_does_not_exist_creates_nothing(
    pg_schemas: Schemas, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = pg_schemas.new()
    url = f"{pg_schemas.url}?schema={missing}"
    code = await asyncio.to_thread(main, ["copy", "--from", url, "--to", str(tmp_path / "x.db")])
    assert code == 2  # no log there, as for a missing file
    assert "holds no jobledger log" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()
    conn = await asyncpg.connect(pg_schemas.url)
    try:
        assert await conn.fetchval("SELECT to_regnamespace($1)", missing) is None
    finally:
        await conn.close()


async def test_a_large_append_after_a_read_is_written_once(pg_schemas: Schemas) -> None:
    # 10 000 jobs with keys make the batch read first, and run its staged
    # rows before the commit (past 20 000): they are not sent a second time.
    url = f"{pg_schemas.url}?schema={pg_schemas.new()}"
    async with jobledger.open(url, max_batch=20_000) as ledger:
        jobs = await ledger.submit_many(
            [jobledger.NewJob("t", {"i": i}, idempotency_key=f"k{i}") for i in range(10_000)]
        )
        assert len({j.id for j in jobs}) == 10_000
        assert await ledger.head() == 10_000
        assert (await ledger.verify()).ok


async def test_a_nul_in_one_command_fails_only_that_command(pg_schemas: Schemas) -> None:
    url = f"{pg_schemas.url}?schema={pg_schemas.new()}"
    async with jobledger.open(url) as ledger:
        good, bad = await asyncio.gather(
            ledger.submit("t", {"n": 1}),
            ledger.submit("t", idempotency_key="k\x00"),
            return_exceptions=True,
        )
        assert isinstance(good, jobledger.Job)
        assert isinstance(bad, jobledger.ValidationError) and bad.field == "idempotency_key"
        assert await ledger.head() == 1


async def test_no_write_commits_after_close(pg_schemas: Schemas) -> None:
    log = PostgresLog(pg_schemas.url, schema=pg_schemas.new())
    await log.open()
    chain = Chain()
    async with log.write() as w:  # hold the write lock while the log closes
        closing = asyncio.ensure_future(log.close())
        records = chain.records(await w.head(), [created("a")])
        await w.append(records, chain.changes(records))
    await closing
    with pytest.raises(jobledger.core.StorageError):
        async with log.write() as w:
            await w.head()


async def test_a_listener_whose_server_goes_silent_is_replaced(
    pg_schemas: Schemas, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listener's server process is stopped (SIGSTOP: its connection
    looks open and never answers, as when a peer vanishes without a word):
    the check finds it, the log listens on a new connection, and a poll
    covers the commits made meanwhile."""
    monkeypatch.setattr(postgres_listen, "LISTENER_CHECK", 0.0)
    schema = pg_schemas.new()
    watching = PostgresLog(pg_schemas.url, schema=schema, poll_interval=0.05, connect_timeout=1.0)
    writing = PostgresLog(pg_schemas.url, schema=schema)
    await watching.open()
    await writing.open()
    told: list[int] = []
    watching.on_commit(told.append)
    silent = watching._listener
    assert silent is not None
    backend = silent.get_server_pid()
    try:
        os.kill(backend, signal.SIGSTOP)
    except PermissionError:
        pytest.skip("this user may not stop the server's processes")
    try:
        chain = Chain()
        async with writing.write() as w:
            records = chain.records(await w.head(), [created("a")])
            await w.append(records, chain.changes(records))
        await eventually(lambda: watching._listener not in (None, silent), within=20)
        await eventually(lambda: told == [1])
    finally:
        os.kill(backend, signal.SIGCONT)
        await watching.close()
        await writing.close()


async def test_raw_rows_of_a_table_that_lost_its_key_column_still_come(
    pg_schemas: Schemas,
) -> None:
    schema = pg_schemas.new()
    log = PostgresLog(pg_schemas.url, schema=schema)
    await log.open()
    try:
        conn = await asyncpg.connect(pg_schemas.url)
        try:  # damage: the meta table loses its key column
            await conn.execute(f'ALTER TABLE "{schema}".meta DROP COLUMN key')
        finally:
            await conn.close()
        assert [row async for row in log.raw_rows("meta")] == [(None, "0")]
        problems = await log.integrity()
        assert any("'meta'" in p for p in problems), problems
    finally:
        await log.close()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://no_such_role_jl@127.0.0.1:5432/test",  # authentication refused
        "postgresql://postgres@127.0.0.1:5432/no_such_database_jl",
        "postgresql://postgres:secret@127.0.0.1:1/test",  # nothing listens
    ],
    ids=["role", "database", "port"],
)
async def test_a_server_that_refuses_is_a_storage_error_naming_it_without_the_password(
    url: str, postgres_url: str
) -> None:
    with pytest.raises(jobledger.core.StorageError, match="cannot open") as caught:
        async with jobledger.open(url):
            pass
    assert "secret" not in str(caught.value)
