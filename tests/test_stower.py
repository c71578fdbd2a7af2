"""The Stower: the only writer. Rejections, all-or-nothing batches, group
commit, order, publish after commit, and another writer on the same file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from jobledger.core import (
    ConcurrencyConflict,
    Envelope,
    InvalidTransition,
    JobComplete,
    JobProgress,
    JobStart,
    NotFound,
    StorageError,
    ValidationError,
)
from jobledger.store import MemoryLog, SqliteLog, verify

from .conftest import Engine, create, running


async def test_invalid_commands_are_rejected_with_a_typed_error_and_write_nothing(
    engine: Engine,
) -> None:
    await engine.bus.send(create("j"))
    head = await engine.log.head()
    bad = [
        (JobStart(job_id="missing", worker="w", expected_version=1), NotFound),
        (JobComplete(job_id="j", attempt=1), InvalidTransition),
        (JobProgress(job_id="j", attempt=1, percent=250), ValidationError),
        (create("j"), ValidationError),
        (JobStart(job_id="j", worker="w", expected_version=3), ConcurrencyConflict),
    ]
    for command, error in bad:
        with pytest.raises(error):
            await engine.bus.send(command)
    assert await engine.log.head() == head
    # and it keeps serving
    (env,) = await engine.bus.send(JobStart(job_id="j", worker="w", expected_version=1))
    assert env.seq == head.seq + 1
    stats = engine.stower.statistics()
    assert stats.rejected == len(bad) and stats.running


async def test_a_rejected_command_does_not_spoil_its_batch(engine: Engine) -> None:
    results = await asyncio.gather(
        engine.bus.send(create("a")),
        engine.bus.send(JobStart(job_id="nope", worker="w", expected_version=1)),
        engine.bus.send(create("b")),
        return_exceptions=True,
    )
    assert isinstance(results[1], NotFound)
    assert [e.stream for r in (results[0], results[2]) for e in r] == ["a", "b"]  # type: ignore[union-attr]
    assert [e.seq for e in await engine.log.read()] == [1, 2]


async def test_a_failing_commit_rolls_back_the_whole_batch_and_the_stower_goes_on(
    sqlite_engine: Engine, db_path: Path
) -> None:
    bus, log = sqlite_engine.bus, sqlite_engine.log
    await bus.send(create("first"))
    # A real SQLite error in the middle of a batch: a trigger that aborts the
    # insert of one particular event.
    conn = sqlite3.connect(db_path)
    conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.stream = 'poison'"
        " BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END"
    )
    conn.commit()
    results = await asyncio.gather(
        *(bus.send(create(f"j{i}")) for i in range(5)),
        bus.send(create("poison")),
        *(bus.send(create(f"k{i}")) for i in range(5)),
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, StorageError)]
    ok = [r for r in results if not isinstance(r, BaseException)]
    assert failed, "the poisoned batch must fail"
    assert len(failed) + len(ok) == len(results)
    assert await log.get_job("poison") is None
    # Every command of the failed batch failed; every acknowledged one is there.
    for reply in ok:
        for env in reply:  # type: ignore[union-attr]
            assert await log.get_job(env.stream) is not None
    assert (await log.head()).seq == 1 + len(ok)
    conn.execute("DROP TRIGGER refuse")
    conn.commit()
    conn.close()
    (env,) = await bus.send(create("poison"))
    assert env.seq == 2 + len(ok)
    assert (await verify(log)).ok
    assert sqlite_engine.stower.statistics().storage_errors >= 1


async def test_concurrent_commands_are_group_committed_in_arrival_order(
    sqlite_engine: Engine,
) -> None:
    # (On the memory log a commit never waits, so commands never queue up.)
    engine = sqlite_engine
    replies = await asyncio.gather(*(engine.bus.send(create(f"j{i:03}")) for i in range(500)))
    assert [r[0].stream for r in replies] == [f"j{i:03}" for i in range(500)]
    assert [r[0].seq for r in replies] == list(range(1, 501))
    stats = engine.stower.statistics()
    assert stats.commands == 500
    assert stats.batches < 500  # several commands shared a transaction
    assert stats.max_batch_seen > 1


async def test_of_many_racing_claims_exactly_one_wins(engine: Engine) -> None:
    await engine.bus.send(create("j"))
    results = await asyncio.gather(
        *(
            engine.bus.send(JobStart(job_id="j", worker=f"w{i}", expected_version=1))
            for i in range(10)
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(e, ConcurrencyConflict) for e in losers)
    job = await engine.log.get_job("j")
    assert job is not None and job.attempt == 1


async def test_events_are_published_only_after_they_are_readable(engine: Engine) -> None:
    checked: list[int] = []

    async def check(env: Envelope) -> None:
        # By the time anyone sees an event, the read model already reflects it.
        job = await engine.log.get_job(env.stream)
        assert job is not None and job.version >= env.version
        assert (await engine.log.head()).seq >= env.seq
        checked.append(env.seq)

    engine.bus.subscribe(check)
    await asyncio.gather(*(engine.bus.send(create(f"j{i}")) for i in range(50)))
    await engine.bus.send(JobStart(job_id="j1", worker="w", expected_version=1))
    await engine.bus.drain()
    assert checked == list(range(1, 52))
    assert engine.bus.statistics().handler_errors == 0


async def test_stop_answers_every_command_already_sent(engine: Engine) -> None:
    sends = [asyncio.ensure_future(engine.bus.send(create(f"j{i}"))) for i in range(100)]
    await asyncio.sleep(0)
    await engine.stower.stop()
    replies = await asyncio.gather(*sends)
    assert len(replies) == 100
    assert (await engine.log.head()).seq == 100
    assert not engine.stower.running


async def test_two_writers_on_one_file_never_double_claim(tmp_path: Path) -> None:
    """Two Stowers on one SQLite file, as two processes would be: the head
    check inside BEGIN IMMEDIATE keeps each one's state current."""
    path = tmp_path / "shared.db"
    async with running(SqliteLog(path)) as a, running(SqliteLog(path)) as b:
        for i in range(20):
            await (a if i % 2 else b).bus.send(create(f"j{i}"))
        claims = []
        for i in range(20):
            claims.append(a.bus.send(JobStart(job_id=f"j{i}", worker="a", expected_version=1)))
            claims.append(b.bus.send(JobStart(job_id=f"j{i}", worker="b", expected_version=1)))
        results = await asyncio.gather(*claims, return_exceptions=True)
        for i in range(20):
            pair = results[2 * i : 2 * i + 2]
            assert sum(not isinstance(r, BaseException) for r in pair) == 1, pair
            assert all(
                isinstance(r, ConcurrencyConflict) for r in pair if isinstance(r, BaseException)
            )
        assert [e.seq for e in await a.log.read(limit=100)] == list(range(1, 41))
        assert (await verify(b.log)).ok
        # Each found the other had written, and decided again on what the log held.
        assert a.stower.statistics().stale_writes > 0
        assert b.stower.statistics().stale_writes > 0


async def test_a_batch_decided_from_the_cache_alone_is_one_round_trip(engine: Engine) -> None:
    """New ids and cached jobs need no read: the commit itself checks the
    assumptions (head unchanged, created streams new)."""
    await engine.bus.send(create("j"))
    await engine.bus.send(JobStart(job_id="j", worker="w", expected_version=1))
    await engine.bus.send(JobComplete(job_id="j", attempt=1))
    assert engine.stower.statistics().stale_writes == 0
    assert [e.type for e in await engine.log.stream("j")] == [
        "job.created",
        "job.started",
        "job.completed",
    ]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_an_id_taken_before_the_cache_knew_it_is_refused_on_the_facts(
    backend: str, tmp_path: Path
) -> None:
    """A create guessed new whose id the log already has (written before this
    Stower started) is decided again after a read, and refused; the others of
    its batch stand."""
    log = MemoryLog() if backend == "memory" else SqliteLog(tmp_path / "taken.db")
    async with running(log) as first:  # closing keeps what was written, in memory too
        await first.bus.send(create("taken"))
    async with running(log) as engine:  # a new Stower: its cache is empty
        replies = await asyncio.gather(
            engine.bus.send(create("fresh")),
            engine.bus.send(create("taken")),
            return_exceptions=True,
        )
        assert isinstance(replies[1], ValidationError) and replies[1].field == "job_id"
        assert [e.stream for e in replies[0]] == ["fresh"]  # type: ignore[union-attr]
        statistics = engine.stower.statistics()
        assert statistics.stale_writes == 1 and statistics.batches == 1
        assert [e.stream for e in await engine.log.read()] == ["taken", "fresh"]
        assert (await verify(engine.log)).ok


async def test_malformed_commands_are_refused_and_the_stower_survives(engine: Engine) -> None:
    from jobledger.core import Command, JobCreate, User

    class Unknown(Command, tag="job:explode"):
        job_id: str = "j"

    malformed = [
        JobStart(job_id=["not", "a", "string"], worker="w", expected_version=1),  # type: ignore[arg-type]
        JobCreate(job_id="j", job_type="t", user="not a user"),  # type: ignore[arg-type]
        JobCreate(job_id="j", job_type="t", user=User(id="u"), params={"x": object()}),
        Unknown(),
    ]
    for command in malformed:
        with pytest.raises(ValidationError):
            await engine.bus.send(command)
    assert (await engine.log.head()).seq == 0
    (env,) = await engine.bus.send(create("j"))
    assert env.seq == 1
    assert engine.stower.running


async def test_a_mailbox_and_batch_of_one_are_allowed_and_zero_is_refused(tmp_path: Path) -> None:
    from jobledger.eventbus import EventBus
    from jobledger.stower import Stower

    log, bus = MemoryLog(), EventBus()
    await log.open()
    stower = Stower(log, bus, mailbox_size=1, max_batch=1)
    await stower.start()
    try:
        (env,) = await bus.send(create("j"))
        assert env.seq == 1
    finally:
        await stower.stop()
        await bus.aclose()
        await log.close()
    for sizes in ({"mailbox_size": 0}, {"max_batch": 0}):
        with pytest.raises(ValueError, match="at least 1"):
            Stower(MemoryLog(), EventBus(), **sizes)


async def test_a_batch_writes_assets_and_deleted_marks_to_the_read_model(engine: Engine) -> None:
    from jobledger.core import AssetCreate, MarkCreate, MarkDelete

    from .conftest import note

    await engine.bus.send(create("j"))
    await engine.bus.send(JobStart(job_id="j", worker="w", expected_version=1))
    await engine.bus.send(
        AssetCreate(
            asset_id="a", job_id="j", attempt=1, asset_type="png", storage_path="a.png", size=3
        )
    )
    await engine.bus.send(MarkCreate(mark_id="m", resource_id="r", annotation=note("r")))
    await engine.bus.send(MarkDelete(mark_id="m"))
    stored = await engine.log.snapshot()
    assert list(stored.assets) == ["a"] and stored.assets["a"].storage_path == "a.png"
    assert stored.marks == {}
    assert (await verify(engine.log)).ok


async def test_progress_folded_in_one_batch_keeps_the_last_checkpoint(engine: Engine) -> None:
    await engine.bus.send(create("j"))
    await engine.bus.send(JobStart(job_id="j", worker="w", expected_version=1))
    reports = [
        JobProgress(job_id="j", attempt=1, percent=10, checkpoint={"page": 1}),
        JobProgress(job_id="j", attempt=1, percent=20, checkpoint={"page": 2}),
        JobProgress(job_id="j", attempt=1, percent=30),
    ]
    async with engine.log.write():  # the Stower waits: the three reports make one batch
        sends = [asyncio.ensure_future(engine.bus.send(r)) for r in reports]
        await asyncio.sleep(0)
        await engine.bus.drain()
    await asyncio.gather(*sends)
    assert engine.stower.statistics().coalesced == 2
    job = await engine.log.get_job("j")
    assert job is not None and job.progress is not None
    assert (job.progress.percent, job.progress.checkpoint) == (30, {"page": 2})
