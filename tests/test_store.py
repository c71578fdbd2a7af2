"""The storage contract, run against every backend (memory and SQLite file),
through the real Stower and bus."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from jobledger.core import (
    GENESIS_HASH,
    JobComplete,
    JobStart,
    JobStatus,
    MarkCreate,
    MarkDelete,
    StorageError,
)
from jobledger.store import SCHEMA_VERSION, MemoryLog, SqliteLog, rebuild, replay, verify

from .conftest import Engine, create, note, running


async def test_an_empty_log(engine: Engine) -> None:
    log = engine.log
    assert (await log.head()).seq == 0
    assert (await log.head()).hash == GENESIS_HASH
    assert await log.read() == []
    assert await log.get_job("nope") is None
    assert await log.checkpoint() == 0
    assert (await verify(log)).ok


async def test_appends_are_gapless_and_streams_contiguous(engine: Engine) -> None:
    for i in range(5):
        await engine.bus.send(create(f"j{i}"))
    await engine.bus.send(JobStart(job_id="j2", worker="w", expected_version=1))
    await engine.bus.send(JobComplete(job_id="j2", attempt=1, result={"ok": 1}))
    envelopes = await engine.log.read()
    assert [e.seq for e in envelopes] == list(range(1, 8))
    assert [e.version for e in await engine.log.stream("j2")] == [1, 2, 3]
    assert [e.type for e in await engine.log.stream("j2")] == [
        "job.created",
        "job.started",
        "job.completed",
    ]
    assert (await engine.log.head()).seq == 7
    assert await engine.log.checkpoint() == 7
    assert [e.seq async for e in engine.log.scan(2, until_seq=4)] == [3, 4]
    assert [e.seq for e in await engine.log.read(after=5, limit=1)] == [6]


async def test_one_batch_may_append_several_versions_of_a_stream(engine: Engine) -> None:
    # Sent in one loop turn, these are one batch: j1 gets versions 1, 2 and 3 in one append.
    replies = await asyncio.gather(
        engine.bus.send(create("j1")),
        engine.bus.send(JobStart(job_id="j1", worker="w", expected_version=1)),
        engine.bus.send(JobComplete(job_id="j1", attempt=1)),
    )
    assert [[e.version for e in reply] for reply in replies] == [[1], [2], [3]]
    assert engine.stower.statistics().batches == 1
    assert [e.type for e in await engine.log.stream("j1")] == [
        "job.created",
        "job.started",
        "job.completed",
    ]
    assert (await verify(engine.log)).ok


async def test_a_scan_reads_ahead_in_chunks_and_can_stop_early(db_path: Path) -> None:
    log = SqliteLog(db_path, read_chunk=3)  # chunks of 3: every boundary case in 10 events
    async with running(log) as engine:
        await asyncio.gather(*(engine.bus.send(create(f"j{i}")) for i in range(10)))
        assert [e.seq async for e in log.scan()] == list(range(1, 11))
        assert [e.seq async for e in log.scan(4, until_seq=9)] == [5, 6, 7, 8, 9]
        assert [r.envelope.seq async for r in log.scan_records(9)] == [10]
        seen = []
        async for env in log.scan():
            seen.append(env.seq)
            if env.seq == 4:  # the chunk 4..6 is read; 7..9 is being read ahead
                break
        assert seen == [1, 2, 3, 4]
        assert (await log.head()).seq == 10  # the reader still serves


async def test_claim_order_is_priority_then_submission(engine: Engine) -> None:
    now = datetime.now(UTC)
    await engine.bus.send(create("low-1", priority=0))
    await engine.bus.send(create("high", priority=5))
    await engine.bus.send(create("low-2", priority=0))
    await engine.bus.send(create("later", priority=9, run_at=now + timedelta(hours=1)))
    await engine.bus.send(create("other-type", job_type="u", priority=99))
    pending = await engine.log.next_pending(["t"], now, limit=10)
    assert [j.id for j in pending] == ["high", "low-1", "low-2"]
    due = await engine.log.next_pending(["t"], now + timedelta(hours=2), limit=1)
    assert [j.id for j in due] == ["later"]
    assert await engine.log.next_pending([], now) == []


async def test_list_filters_and_pages_newest_first(engine: Engine) -> None:
    for i in range(5):
        await engine.bus.send(create(f"a{i}", user="alice"))
        await engine.bus.send(create(f"b{i}", user="bob", job_type="u"))
    await engine.bus.send(JobStart(job_id="a1", worker="w", expected_version=1))
    alice = await engine.log.list_jobs(user_id="alice")
    assert [j.id for j in alice] == ["a4", "a3", "a2", "a1", "a0"]
    first = await engine.log.list_jobs(user_id="alice", limit=2)
    rest = await engine.log.list_jobs(user_id="alice", before_seq=first[-1].created_seq)
    assert [j.id for j in first + rest] == ["a4", "a3", "a2", "a1", "a0"]
    running = await engine.log.list_jobs(status=JobStatus.RUNNING)
    assert [j.id for j in running] == ["a1"]
    assert len(await engine.log.list_jobs(job_type="u")) == 5


async def test_marks_belong_to_their_resource_in_creation_order(engine: Engine) -> None:
    for mark_id in ("m3", "m1", "m2"):
        await engine.bus.send(
            MarkCreate(mark_id=mark_id, resource_id="doc", annotation=note("doc", mark_id))
        )
    await engine.bus.send(MarkCreate(mark_id="x", resource_id="other", annotation=note("other")))
    await engine.bus.send(MarkDelete(mark_id="m1"))
    assert [m.id for m in await engine.log.marks_of("doc")] == ["m3", "m2"]
    assert await engine.log.get_mark("m1") is None
    mark = await engine.log.get_mark("m3")
    assert mark is not None and mark.annotation == msgspec.to_builtins(note("doc", "m3"))


async def test_rebuild_and_replay_equal_the_read_model(engine: Engine) -> None:
    for i in range(20):
        await engine.bus.send(create(f"j{i}"))
    for i in range(0, 20, 2):
        await engine.bus.send(JobStart(job_id=f"j{i}", worker="w", expected_version=1))
    await engine.bus.send(MarkCreate(mark_id="m", resource_id="d", annotation=note("d")))
    before = await engine.log.snapshot()
    replayed = await replay(engine.log)
    assert replayed.jobs == before.jobs
    assert replayed.marks == before.marks
    assert await rebuild(engine.log) == 31
    after = await engine.log.snapshot()
    assert after.jobs == before.jobs and after.marks == before.marks and after.seq == 31
    assert (await verify(engine.log)).ok


async def test_replay_stops_at_a_seq(engine: Engine) -> None:
    await engine.bus.send(create("j"))
    await engine.bus.send(JobStart(job_id="j", worker="w", expected_version=1))
    await engine.bus.send(JobComplete(job_id="j", attempt=1))
    states = [(await replay(engine.log, until_seq=n)).jobs.get("j") for n in (0, 1, 2, 3)]
    assert states[0] is None
    assert [s.status for s in states[1:] if s] == ["pending", "running", "completed"]


async def test_a_write_that_raises_leaves_nothing(engine: Engine) -> None:
    await engine.bus.send(create("j"))
    head = await engine.log.head()
    with pytest.raises(RuntimeError):
        async with engine.log.write() as writer:
            assert (await writer.head()) == head
            raise RuntimeError("abandon")
    assert await engine.log.head() == head
    await engine.bus.send(create("k"))
    assert (await engine.log.head()).seq == 2


async def test_a_closed_log_refuses_reads_and_writes() -> None:
    for log in (MemoryLog(), SqliteLog(":memory:")):
        with pytest.raises(StorageError):
            async with log.write():
                pass
    with pytest.raises(StorageError):
        await SqliteLog(":memory:").head()


async def test_sqlite_uses_wal_full_sync_and_records_its_schema(db_path: Path) -> None:
    import sqlite3

    log = SqliteLog(db_path)
    await log.open()
    await log.close()
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    finally:
        conn.close()
    with pytest.raises(ValueError):
        SqliteLog(db_path, synchronous="OFF")  # type: ignore[arg-type]


async def test_a_file_from_a_newer_jobledger_is_refused(db_path: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StorageError, match="upgrade jobledger"):
        await SqliteLog(db_path).open()


async def test_a_read_model_behind_the_log_is_rebuilt_on_open(db_path: Path) -> None:
    import sqlite3

    from jobledger.eventbus import EventBus
    from jobledger.stower import Stower

    log = SqliteLog(db_path)
    await log.open()
    bus = EventBus()
    stower = Stower(log, bus)
    await stower.start()
    await bus.send(create("j1"))
    await bus.send(JobStart(job_id="j1", worker="w", expected_version=1))
    await stower.stop()
    await log.close()
    # Lose the read model (as if the tables were emptied by hand).
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("DELETE FROM jobs")
        conn.execute("UPDATE meta SET value = '0' WHERE key = 'checkpoint'")
    conn.close()
    log = SqliteLog(db_path)
    await log.open()
    job = await log.get_job("j1")
    assert job is not None and job.status is JobStatus.RUNNING
    assert await log.checkpoint() == 2
    await log.close()


async def test_readers_see_the_log_and_read_model_move_together(db_path: Path) -> None:
    import sqlite3

    from jobledger.eventbus import EventBus
    from jobledger.stower import Stower

    log = SqliteLog(db_path)
    await log.open()
    bus = EventBus()
    stower = Stower(log, bus)
    await stower.start()
    outside = sqlite3.connect(db_path)  # another reader, as another process would be
    snapshots: list[tuple[int, int, int]] = []

    async def watch() -> None:
        while len(snapshots) < 50 or snapshots[-1][0] < 300:
            # One statement is one snapshot: head, checkpoint and jobs at once.
            row = outside.execute(
                "SELECT (SELECT count(*) FROM events),"
                " (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'checkpoint'),"
                " (SELECT count(*) FROM jobs)"
            ).fetchone()
            snapshots.append(row)
            await asyncio.sleep(0)

    try:

        async def send_in_waves() -> None:  # a wave sent in one loop turn is one batch
            for wave in range(6):
                await asyncio.gather(*(bus.send(create(f"j{wave}-{i}")) for i in range(50)))

        await asyncio.gather(watch(), send_in_waves())
        assert all(events == checkpoint == jobs for events, checkpoint, jobs in snapshots)
        assert len({s[0] for s in snapshots}) > 2  # it did see several batches land
    finally:
        outside.close()
        await stower.stop()
        await log.close()


async def test_verify_names_the_seq_of_an_edited_entry(
    sqlite_engine: Engine, db_path: Path
) -> None:
    import sqlite3

    for i in range(5):
        await sqlite_engine.bus.send(create(f"j{i}"))
    assert (await verify(sqlite_engine.log)).ok
    conn = sqlite3.connect(db_path)
    with conn:
        # Same meaning, different bytes: still an edit of the signed record.
        conn.execute(
            "UPDATE events SET data = CAST(' ' || CAST(data AS TEXT) AS BLOB) WHERE seq = 3"
        )
    report = await verify(sqlite_engine.log)
    assert [(p.seq, p.kind) for p in report.problems] == [(3, "hash")]
    with conn:
        conn.execute("UPDATE events SET data = substr(data, 2) WHERE seq = 3")
        conn.execute(
            "UPDATE jobs SET doc = replace(doc, '\"priority\":0', '\"priority\":7') WHERE id = 'j4'"
        )
    conn.close()
    report = await verify(sqlite_engine.log)
    assert [(p.seq, p.kind) for p in report.problems] == [(5, "read_model")]


async def test_list_pages_within_a_tenant(engine: Engine) -> None:
    from jobledger.core import JobCreate, User

    for i in range(4):
        tenant = "a" if i == 0 else "b"
        await engine.bus.send(
            JobCreate(job_id=f"j{i}", job_type="t", user=User(id="same", tenant=tenant))
        )
    page = await engine.log.list_jobs(user_id="same", tenant="a", limit=1)
    assert [j.id for j in page] == ["j0"]
    assert len(await engine.log.list_jobs(user_id="same", tenant="b")) == 3


async def test_verify_sees_one_instant_while_writes_go_on(engine: Engine) -> None:
    for i in range(50):
        await engine.bus.send(create(f"seed{i}"))
    writes = asyncio.gather(*(engine.bus.send(create(f"j{i}")) for i in range(300)))
    reports = [await verify(engine.log) for _ in range(5)]
    await writes
    assert all(r.ok for r in reports), [r.problems for r in reports]
    assert (await verify(engine.log)).events == 350


def test_a_log_on_a_network_file_system_is_told_apart() -> None:
    """Environment (issue 6, item 12): SQLite's locks and WAL are not safe on
    a network file system; opening a log there logs a warning."""
    from jobledger.store.sqlite import NETWORK_FILESYSTEMS, filesystem_of

    mounts = (
        "/dev/vda / ext4 rw 0 0\n"
        "server:/export /mnt/shared nfs4 rw 0 0\n"
        "//nas/jobs /mnt/nas\\040box cifs rw 0 0\n"
        "tmpfs /tmp tmpfs rw 0 0\n"
    )
    assert filesystem_of("/mnt/shared/team/jobs.db", mounts) == "nfs4"
    assert filesystem_of("/mnt/nas box/jobs.db", mounts) == "cifs"
    assert filesystem_of("/mnt/sharedness/jobs.db", mounts) == "ext4"  # a prefix is not a parent
    assert filesystem_of("/tmp/jobs.db", mounts) == "tmpfs"
    assert {"nfs4", "cifs"} <= NETWORK_FILESYSTEMS
    assert "ext4" not in NETWORK_FILESYSTEMS and "tmpfs" not in NETWORK_FILESYSTEMS


async def test_expiring_gives_the_leases_that_ran_out_first(engine: Engine) -> None:
    """The sweeper reads at most its watch limit of running jobs: those must be
    the ones whose lease (or timeout) runs out first, whatever their age, or a
    dead job behind many live ones would never be looked at."""
    for job_id, lease in (("old", 300.0), ("dead", 10.0), ("mid", 200.0)):
        await engine.bus.send(create(job_id))
        await engine.bus.send(
            JobStart(job_id=job_id, worker="w", expected_version=1, lease_seconds=lease)
        )
    later = datetime.now(UTC) + timedelta(days=1)
    assert [j.id for j in await engine.log.expiring(later, 1)] == ["dead"]
    assert [j.id for j in await engine.log.expiring(later, 3)] == ["dead", "mid", "old"]
