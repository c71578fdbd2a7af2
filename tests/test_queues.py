"""Queue capacity in the log (issue 16): recorded as ``queue.configured``,
counted in the read model in the append transaction, enforced by the writer
when it decides a ``job:start``, so it holds across processes on one SQLite
file and on PostgreSQL; changed at run time (``set_capacity``)."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import jobledger
from jobledger.core import (
    JobComplete,
    JobStart,
    JobType,
    Queue,
    QueueConfigure,
    QueueFull,
    ValidationError,
)

from . import queue_children
from .postgres import Schemas, pg_schemas, postgres_url

__all__ = ["pg_schemas", "postgres_url"]


TYPES = [JobType(name="t", queue="narrow"), JobType(name="narrow", queue=queue_children.QUEUE)]
"""Jobs of ``t`` and ``narrow`` go to the queue ``narrow``; others to ``default``."""


async def _start(ledger: jobledger.Ledger, job_id: str) -> Any:
    return await ledger.bus.send(JobStart(job_id=job_id, worker="w", expected_version=1))


async def test_a_full_queue_refuses_a_start_typed_and_writes_nothing(db_path: Path) -> None:
    async with jobledger.open(db_path, job_types=TYPES) as ledger:
        queue = await ledger.register_queue("narrow", capacity=1)
        assert (queue.name, queue.capacity, queue.running) == ("narrow", 1, 0)
        first = await ledger.submit("t")
        second = await ledger.submit("t")
        other = await ledger.submit("u")  # the default queue: not limited
        await _start(ledger, first.id)
        head = await ledger.head()
        with pytest.raises(QueueFull) as refused:
            await _start(ledger, second.id)
        assert (refused.value.queue, refused.value.capacity) == ("narrow", 1)
        assert isinstance(refused.value, jobledger.JobledgerError)
        assert "narrow" in str(refused.value)
        assert await ledger.head() == head  # nothing written
        assert (await ledger.get(second.id)).status == "pending"
        await _start(ledger, other.id)
        assert [(q.name, q.running) for q in await ledger.queues()] == [("narrow", 1)]
        await ledger.bus.send(JobComplete(job_id=first.id, attempt=1))
        assert [(q.name, q.running) for q in await ledger.queues()] == [("narrow", 0)]
        await _start(ledger, second.id)  # room again
        assert (await ledger.get(second.id)).status == "running"


async def test_the_count_survives_a_restart_and_a_rebuild_and_verifies(db_path: Path) -> None:
    async with jobledger.open(db_path, job_types=TYPES) as ledger:
        await ledger.register_queue("narrow", capacity=2)
        jobs = [await ledger.submit("t") for _ in range(3)]
        await _start(ledger, jobs[0].id)
        await _start(ledger, jobs[1].id)
    async with jobledger.open(
        db_path, job_types=TYPES
    ) as ledger:  # the state rebuilt from the log alone
        (queue,) = await ledger.queues()
        assert (queue.capacity, queue.running) == (2, 2)
        with pytest.raises(QueueFull):
            await _start(ledger, jobs[2].id)
        assert await ledger.rebuild() > 0
        assert await ledger.queues() == [queue]
        assert (await ledger.verify()).ok
    with sqlite3.connect(db_path) as conn:  # a count edited behind jobledger's back
        conn.execute("DELETE FROM queues")
    conn.close()
    async with jobledger.open(db_path, job_types=TYPES) as ledger:
        report = await ledger.verify()
        assert not report.ok
        assert {(p.kind, p.table) for p in report.problems} == {("read_model", "queues")}


async def test_a_lowered_capacity_stops_nothing_that_runs_and_starts_nothing_more(
    db_path: Path,
) -> None:
    async with jobledger.open(db_path, job_types=TYPES) as ledger:
        await ledger.register_queue("narrow", capacity=3)
        jobs = [await ledger.submit("t") for _ in range(4)]
        for job in jobs[:2]:
            await _start(ledger, job.id)
        lowered = await ledger.set_capacity("narrow", 1)
        assert (lowered.capacity, lowered.running) == (1, 2)
        assert [(await ledger.get(j.id)).status for j in jobs[:2]] == ["running", "running"]
        with pytest.raises(QueueFull):
            await _start(ledger, jobs[2].id)
        await ledger.bus.send(JobComplete(job_id=jobs[0].id, attempt=1))
        with pytest.raises(QueueFull):  # one still runs: at capacity
            await _start(ledger, jobs[2].id)
        await ledger.set_capacity("narrow", None)  # unbounded
        await _start(ledger, jobs[2].id)
        await _start(ledger, jobs[3].id)
        history = [env async for env in ledger.events(types=["queue.configured"])]
        assert [env.data.capacity for env in history] == [3, 1, None]  # type: ignore[union-attr]
        assert all(env.stream == "queue:narrow" for env in history)


async def test_the_same_capacity_again_writes_nothing_and_open_records_its_queues(
    db_path: Path,
) -> None:
    async with jobledger.open(db_path, job_types=TYPES, queues={"narrow": 2, "wide": 5}) as ledger:
        recorded = {q.name: q.capacity for q in await ledger.queues()}
        assert recorded == {"narrow": 2, "wide": 5}
        head = await ledger.head()
        await ledger.register_queue("narrow", capacity=2)
        assert await ledger.head() == head
        registered = await ledger.register_queue("open")  # unbounded, but on record
        assert (registered.capacity, registered.configured_seq) == (None, head + 1)
    async with jobledger.open(
        db_path, job_types=TYPES, queues={"narrow": 2}
    ) as ledger:  # the same: nothing
        assert await ledger.head() == head + 1
    async with jobledger.open(db_path, job_types=TYPES, queues={"narrow": 4}) as ledger:
        assert await ledger.head() == head + 2
        assert {q.name: q.capacity for q in await ledger.queues()} == {
            "narrow": 4,
            "open": None,
            "wide": 5,
        }


BAD_CAPACITIES: list[object] = [0, -1, 1_000_001, 2**63, True, 2.0, math.nan, "2", [2], {}]
BAD_NAMES: list[object] = ["", " q", "q q", "x" * 65, "q\x00", "ü", 7, None]
BAD = (
    [("capacity", ("q", value), {}) for value in BAD_CAPACITIES]
    + [("queue", (value, 1), {}) for value in BAD_NAMES]
    + [("actor", ("q", 1), {"actor": "worker:w"})]
)  # (the engine's own actor)


@pytest.mark.parametrize(("field", "args", "kwargs"), BAD, ids=repr)
async def test_a_bad_queue_or_capacity_is_a_validation_error_and_writes_nothing(
    db_path: Path, field: str, args: tuple[object, object], kwargs: dict[str, str]
) -> None:
    async with jobledger.open(db_path, job_types=TYPES) as ledger:
        with pytest.raises(ValidationError) as refused:
            await ledger.set_capacity(*args, **kwargs)  # type: ignore[arg-type]
        assert refused.value.field == field
        assert await ledger.head() == 0
        assert await ledger.queues() == []
        await ledger.set_capacity("q", 1)  # still serving


async def test_a_queue_configured_elsewhere_is_honoured_by_this_process_workers(
    db_path: Path,
) -> None:
    """A process with workers and no ``queues=`` of its own: the log's
    capacity holds for it, including one changed by another writer while it
    runs (its claims refused as ``QueueFull``, then not tried again until
    the queue has room)."""
    async with jobledger.open(db_path, job_types=TYPES, poll_interval=0.05) as other:
        await other.register_queue(queue_children.QUEUE, capacity=1)
        async with jobledger.open(
            db_path, workers=[queue_children.Narrow()], poll_interval=0.05
        ) as ledger:
            jobs = [await other.submit("narrow", {"hold": 0.05}) for _ in range(6)]
            for job in jobs:
                assert (await ledger.wait(job.id, timeout=30)).status == "completed"
            await other.set_capacity(queue_children.QUEUE, 2)  # from the other writer
            more = [await other.submit("narrow", {"hold": 0.05}) for _ in range(6)]
            for job in more:
                assert (await ledger.wait(job.id, timeout=30)).status == "completed"
            history = [env async for env in ledger.events()]
    most, breaches = queue_children.most_running(history)
    assert breaches == []
    assert most == 2


async def _several_processes_share_a_capacity(db: str, ledger: jobledger.Ledger) -> None:
    """Four worker processes (three slots each) on ``db``; 16 jobs of a queue
    of capacity 2, then 16 more after the capacity is raised to 3 while they
    run: never more running at once than the capacity then recorded, every
    job run once, the log gapless and verified."""
    await ledger.register_queue(queue_children.QUEUE, capacity=2)
    procs = [queue_children.spawn(db) for _ in range(4)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
            assert line.split() == ["ready"], proc.stderr.read() if proc.stderr else ""
        jobs = [await ledger.submit("narrow", {"hold": 0.1}) for _ in range(16)]
        for job in jobs[:8]:
            await ledger.wait(job.id, timeout=60)
        await ledger.set_capacity(queue_children.QUEUE, 3)
        jobs += [await ledger.submit("narrow", {"hold": 0.1}) for _ in range(16)]
        for job in jobs:
            done = await ledger.wait(job.id, timeout=60)
            assert (done.status, done.attempt) == ("completed", 1)
        await queue_children.stop(procs)
    finally:
        queue_children.kill_all(procs)
    history = [env async for env in ledger.events()]
    assert [env.seq for env in history] == list(range(1, len(history) + 1))
    most, breaches = queue_children.most_running(history)
    assert breaches == []
    assert most == 3  # the capacity was used, not merely never exceeded
    starts = [env.stream for env in history if env.type == "job.started"]
    assert sorted(starts) == sorted(job.id for job in jobs)  # each once
    assert (await ledger.verify()).ok
    assert await ledger.queues() == [
        Queue(
            name=queue_children.QUEUE,
            capacity=3,
            running=0,
            configured_seq=(await ledger.queues())[0].configured_seq,
        )
    ]


async def test_capacity_holds_across_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    db = str(tmp_path / "shared.db")
    async with jobledger.open(db, job_types=TYPES) as ledger:
        await _several_processes_share_a_capacity(db, ledger)


async def test_capacity_holds_across_processes_on_postgresql(pg_schemas: Schemas) -> None:
    url = f"{pg_schemas.url}?schema={pg_schemas.new()}"
    async with jobledger.open(url, job_types=TYPES) as ledger:
        await _several_processes_share_a_capacity(url, ledger)


async def test_a_capacity_command_sent_on_the_bus_is_decided_like_the_method(
    db_path: Path,
) -> None:
    async with jobledger.open(db_path, job_types=TYPES) as ledger:
        (env,) = await ledger.bus.send(QueueConfigure(queue="q", capacity=2, actor="ops"))
        assert (env.type, env.stream, env.actor, env.version) == (
            "queue.configured",
            "queue:q",
            "ops",
            1,
        )
        assert await ledger.bus.send(QueueConfigure(queue="q", capacity=2)) == ()


@pytest.mark.parametrize(
    ("queues", "field"),
    [({"gpu": 0}, "capacity"), ({"gpu": "2"}, "capacity"), ({"gpu": math.nan}, "capacity"),
     ({"bad name": 1}, "queue"), ({"gpu": 1_000_001}, "capacity")],
    ids=repr,
)  # fmt: skip
async def test_a_bad_queues_argument_refuses_the_open_typed_and_writes_nothing(
    db_path: Path, queues: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        async with jobledger.open(db_path, queues=queues):
            pass
    assert refused.value.field == field
    async with jobledger.open(db_path) as ledger:
        assert await ledger.head() == 0
