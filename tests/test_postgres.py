"""The PostgreSQL backend against a real server: the backend contract, each
log in a schema of its own (tests/postgres.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import jobledger
import jobledger.core
from jobledger.cli import main
from jobledger.store import Backend, Head
from jobledger.store.postgres import PostgresLog
from jobledger.testing import BackendContract, Chain, created

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
    assert code == 1
    assert "not empty" in capsys.readouterr().err
    async with jobledger.open(url) as existing:
        assert (await existing.digest()).text == before
