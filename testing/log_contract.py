"""The log's contract (:class:`~jobledger.store.EventLog` and its writer), as
pytest tests a backend's own test suite subclasses (:class:`LogContract`).

Each test is named for the promise it checks, so a backend that breaks one
fails the test of that name.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from jobledger.core import GENESIS_HASH, StorageError, ValidationError
from jobledger.store import (
    Backend,
    Head,
    StaleWrite,
    export_log,
    import_log,
    rebuild,
    replay,
    verify,
)

from .records import Chain, completed, created, started

__all__ = ["BackendFixtures", "LogContract"]


class BackendFixtures:
    """The fixtures every contract class uses. A subclass overrides
    ``new_backend`` to return a function that makes a new, empty, unopened
    backend each time it is called; the tests open and close what it makes
    (``backend`` is one of them, ``log`` the same one opened)."""

    @pytest.fixture
    def new_backend(self) -> Callable[[], Backend]:
        """Makes new, empty, unopened backends: override this fixture."""
        raise NotImplementedError(
            f"{type(self).__name__} must define a 'new_backend' fixture: a function "
            "that returns a new, empty, unopened backend"
        )

    @pytest.fixture
    def backend(self, new_backend: Callable[[], Backend]) -> Backend:
        return new_backend()

    @pytest.fixture
    def same_storage(self) -> Callable[[Backend], Backend] | None:
        """For a backend whose storage other processes share (a file, a
        server): a function that makes another, unopened backend object on
        the storage of the one it is given, standing for another process.
        ``None`` (the default) for a backend whose storage is its own."""
        return None

    @pytest_asyncio.fixture
    async def log(self, backend: Backend) -> AsyncIterator[Backend]:
        await backend.open()
        try:
            yield backend
        finally:
            await backend.close()


async def _append(log: Backend, chain: Chain, *events: object) -> Head:
    """Append ``events`` in one write transaction after the head it reads; the new head."""
    async with log.write() as writer:
        head = await writer.head()
        records = chain.records(head, events)  # type: ignore[arg-type]
        await writer.append(records, chain.changes(records))
    chain.commit(records)
    return Head(records[-1].envelope.seq, records[-1].envelope.hash)


@pytest.mark.asyncio
class LogContract(BackendFixtures):
    """The append-only log: order, atomicity, conflicts, exact bytes, notification."""

    async def test_an_empty_log_has_the_genesis_head(self, log: Backend) -> None:
        assert await log.head() == Head(0, GENESIS_HASH)
        assert await log.read() == []
        assert [e async for e in log.scan()] == []
        assert await log.stream("nope") == []
        assert await log.checkpoint() == 0

    async def test_seq_is_gapless_under_concurrent_appends(self, log: Backend) -> None:
        chain = Chain()

        async def one(i: int) -> None:
            async with log.write() as writer:
                head = await writer.head()
                await asyncio.sleep(0)  # let the others try to write meanwhile
                records = chain.records(head, [created(f"j{i}")])
                await writer.append(records, chain.changes(records))
            chain.commit(records)

        await asyncio.gather(*(one(i) for i in range(20)))
        envelopes = await log.read(limit=100)
        assert [e.seq for e in envelopes] == list(range(1, 21))
        assert sorted(e.stream for e in envelopes) == sorted(f"j{i}" for i in range(20))
        assert all(e.version == 1 for e in envelopes)
        assert (await log.head()).seq == 20
        assert (await verify(log)).ok

    async def test_reads_by_seq_range_and_by_stream(self, log: Backend) -> None:
        chain = Chain()
        await _append(log, chain, created("a"), created("b"))
        await _append(log, chain, started("a"), completed("a"), started("b"))
        assert [e.seq for e in await log.read(after=1, limit=2)] == [2, 3]
        assert [e.seq async for e in log.scan(2, until_seq=4)] == [3, 4]
        assert [r.envelope.seq async for r in log.scan_records(4)] == [5]
        assert [(e.version, e.type) for e in await log.stream("a")] == [
            (1, "job.created"),
            (2, "job.started"),
            (3, "job.completed"),
        ]
        assert [e.version for e in await log.stream("b")] == [1, 2]

    async def test_a_version_already_taken_is_refused(self, log: Backend) -> None:
        chain = Chain()
        await _append(log, chain, created("j"), started("j"))

        async def attempt() -> None:
            async with log.write() as writer:
                head = await writer.head()
                # version 2 of j again: what a second claimer of the job would write
                taken = chain.records(head, [started("j", worker="other")], versions={"j": 1})
                await writer.append(taken, chain.changes(taken))

        with pytest.raises(StorageError):
            await attempt()
        assert (await log.head()).seq == 2
        assert [e.data for e in await log.stream("j")][1] == started("j")

    async def test_expect_refuses_a_write_when_the_head_moved(self, log: Backend) -> None:
        chain = Chain()
        seen = await _append(log, chain, created("j"))
        await _append(log, chain, created("k"))

        async def attempt() -> None:
            async with log.write() as writer:
                writer.expect(seen)
                late = chain.records(seen, [created("late")])
                await writer.append(late, chain.changes(late))

        with pytest.raises(StaleWrite):
            await attempt()
        assert (await log.head()).seq == 2
        assert await log.stream("late") == []

    async def test_expect_refuses_a_stream_taken_for_new(self, log: Backend) -> None:
        chain = Chain()
        head = await _append(log, chain, created("j"))

        async def attempt() -> None:
            async with log.write() as writer:
                writer.expect(head)
                again = chain.records(head, [created("j")], versions={"j": 0})
                await writer.append(again, chain.changes(again))

        with pytest.raises(StaleWrite):
            await attempt()
        assert (await log.head()) == head

    async def test_a_batch_is_appended_whole_or_not_at_all(self, log: Backend) -> None:
        chain = Chain()
        await _append(log, chain, created("j"))

        async def attempt() -> None:
            async with log.write() as writer:
                head = await writer.head()
                fresh = chain.records(head, [created("x"), created("y")])
                clash = chain.records(
                    Head(fresh[-1].envelope.seq, fresh[-1].envelope.hash),
                    [created("j")],
                    versions={"j": 0},
                )
                batch = fresh + clash
                await writer.append(batch, chain.changes(fresh))

        with pytest.raises(StorageError):
            await attempt()
        assert (await log.head()).seq == 1
        assert await log.stream("x") == []
        assert await log.get_job("x") is None
        assert await log.checkpoint() == 1

    async def test_a_write_that_raises_leaves_nothing(self, log: Backend) -> None:
        chain = Chain()

        class Abandon(Exception):
            pass

        async def attempt() -> None:
            async with log.write() as writer:
                head = await writer.head()
                records = chain.records(head, [created("j")])
                await writer.append(records, chain.changes(records))
                raise Abandon

        with pytest.raises(Abandon):
            await attempt()
        assert await log.head() == Head(0, GENESIS_HASH)
        assert await log.get_job("j") is None
        await _append(log, Chain(), created("k"))  # the log still takes writes
        assert (await log.head()).seq == 1

    async def test_nothing_is_visible_before_commit(self, log: Backend) -> None:
        chain = Chain()
        await _append(log, chain, created("j"))
        inside = asyncio.Event()
        go_on = asyncio.Event()

        async def write() -> None:
            async with log.write() as writer:
                head = await writer.head()
                records = chain.records(head, [started("j"), created("k")])
                await writer.append(records, chain.changes(records))
                inside.set()
                await go_on.wait()

        task = asyncio.ensure_future(write())
        await inside.wait()
        assert (await log.head()).seq == 1
        assert [e.seq for e in await log.read()] == [1]
        assert await log.get_job("k") is None
        assert (await log.get_job("j")).status == "pending"  # type: ignore[union-attr]
        go_on.set()
        await task
        assert (await log.head()).seq == 3
        assert (await log.get_job("k")) is not None
        assert (await log.get_job("j")).status == "running"  # type: ignore[union-attr]

    async def test_a_seq_that_does_not_follow_the_head_is_refused(self, log: Backend) -> None:
        chain = Chain()
        head = await _append(log, chain, created("j"))

        async def attempt() -> None:
            async with log.write() as writer:
                await writer.head()
                skipping = chain.records(Head(head.seq + 1, head.hash), [created("k")])
                await writer.append(skipping, chain.changes(skipping))

        with pytest.raises(StorageError):
            await attempt()
        assert (await log.head()) == head
        assert await log.stream("k") == []

    async def test_the_hash_chain_and_event_bytes_are_kept_exactly(self, log: Backend) -> None:
        chain = Chain()
        async with log.write() as writer:
            head = await writer.head()
            records = chain.records(head, [created("j"), started("j"), completed("j")])
            await writer.append(records, chain.changes(records))
        chain.commit(records)
        stored = [r async for r in log.scan_records()]
        assert [r.data for r in stored] == [r.data for r in records]
        assert [r.envelope for r in stored] == [r.envelope for r in records]
        assert await log.head() == Head(3, records[-1].envelope.hash)
        report = await verify(log, digest=await log.head())
        assert report.ok, report.problems
        assert report.events == 3

    async def test_commits_are_notified_after_they_are_visible(self, log: Backend) -> None:
        chain = Chain()
        told: list[tuple[int, int]] = []
        heads: list[asyncio.Task[Head]] = []

        def heard(seq: int) -> None:
            told.append((seq, len(told)))
            heads.append(asyncio.ensure_future(log.head()))

        stop = log.on_commit(heard)
        await _append(log, chain, created("a"))
        assert [(await h).seq for h in heads] == [1]  # visible when told
        await _append(log, chain, created("b"), created("c"))
        assert [(await h).seq for h in heads] == [1, 3]
        assert [seq for seq, _ in told] == [1, 3]

        async def attempt() -> None:
            async with log.write() as writer:  # rolled back: nothing to tell
                head = await writer.head()
                records = chain.records(head, [created("d")])
                await writer.append(records, chain.changes(records))
                raise RuntimeError("abandon")

        with pytest.raises(RuntimeError):
            await attempt()
        stop()
        stop()  # stopping twice is harmless
        await _append(log, chain, created("e"))
        assert [seq for seq, _ in told] == [1, 3]

    async def test_commits_through_another_handle_are_notified(
        self, log: Backend, same_storage: Callable[[Backend], Backend] | None
    ) -> None:
        if same_storage is None:
            pytest.skip("the backend's storage is its own: no other process can commit to it")
        told: list[int] = []
        arrived = asyncio.Event()

        def heard(seq: int) -> None:
            told.append(seq)
            arrived.set()

        log.on_commit(heard)
        other = same_storage(log)
        await other.open()
        try:
            await _append(other, Chain(), created("elsewhere"))
            # Told without polling and without a write through this handle.
            await asyncio.wait_for(arrived.wait(), timeout=10)
            assert told == [1]
            assert [e.stream for e in await log.read()] == ["elsewhere"]
        finally:
            await other.close()

    async def test_a_failing_commit_listener_fails_no_write(self, log: Backend) -> None:
        def broken(seq: int) -> None:
            raise ValueError("a listener's own bug")

        told: list[int] = []
        log.on_commit(broken)
        log.on_commit(told.append)
        await _append(log, Chain(), created("a"))
        assert told == [1]
        assert (await log.head()).seq == 1

    async def test_a_closed_log_refuses_reads_and_writes(self, backend: Backend) -> None:
        await backend.open()
        await backend.open()  # opening an open log does nothing
        await backend.close()
        await backend.close()  # idempotent

        async def attempt() -> None:
            async with backend.write() as writer:
                await writer.head()

        with pytest.raises(StorageError):
            await attempt()

    async def test_import_takes_an_export_only_into_an_empty_log(
        self, log: Backend, new_backend: Callable[[], Backend]
    ) -> None:
        chain = Chain()
        await _append(log, chain, created("a"), started("a"))
        await _append(log, chain, completed("a"), created("b"))
        lines = [line async for line in export_log(log)]
        with pytest.raises(ValidationError):
            await import_log(log, lines)  # not empty
        assert (await log.head()).seq == 4
        empty = new_backend()
        await empty.open()
        try:
            assert await import_log(empty, lines) == 4
            assert await empty.head() == await log.head()
            assert [line async for line in export_log(empty)] == lines
            assert (await empty.snapshot()).jobs == (await log.snapshot()).jobs
            assert (await verify(empty)).ok
        finally:
            await empty.close()

    async def test_rebuild_replaces_the_read_model_with_the_replay(self, log: Backend) -> None:
        chain = Chain()
        await _append(log, chain, created("a"), created("b", priority=3))
        await _append(log, chain, started("a"), completed("a"))
        async with log.write() as writer:  # a read model that lost a job
            head = await writer.head()
            damaged = await replay(log)
            del damaged.jobs["b"]
            writer.replace_read_model(damaged)
        assert await log.get_job("b") is None
        assert (await log.snapshot()).jobs == damaged.jobs
        assert not (await verify(log)).ok
        assert await log.head() == head  # the log itself is untouched
        assert await rebuild(log) == 4
        assert (await log.snapshot()).jobs == (await replay(log)).jobs
        assert await log.checkpoint() == 4
        assert (await verify(log)).ok
        assert (await log.get_job("a")).status == "completed"  # type: ignore[union-attr]
        assert (await log.get_job("b")).priority == 3  # type: ignore[union-attr]
