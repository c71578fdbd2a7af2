"""The read model's contract (:class:`~jobledger.store.ReadModel`,
:class:`~jobledger.store.Schedule`, :class:`~jobledger.store.AuditSource`),
as pytest tests a backend's own suite subclasses (:class:`ReadModelContract`).

These run the real write path over the backend (a bus and a
:class:`~jobledger.stower.Stower`, on a ``ManualClock``), so the read model
is what the engine itself makes of the backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio

from jobledger.core import (
    AssetCreate,
    ConcurrencyConflict,
    InvalidTransition,
    JobComplete,
    JobCreate,
    JobDelete,
    JobStart,
    JobStatus,
    ManualClock,
    MarkCreate,
    MarkDelete,
    ResourceCreate,
    User,
    digest_of,
)
from jobledger.eventbus import EventBus
from jobledger.store import Backend, JobCount, replay, verify
from jobledger.stower import Stower

from .log_contract import BackendFixtures

__all__ = ["Engine", "ReadModelContract"]


class Engine:
    """A backend with a bus and a running Stower on one clock: the write path."""

    def __init__(self, log: Backend, bus: EventBus, stower: Stower, clock: ManualClock) -> None:
        self.log = log
        self.bus = bus
        self.stower = stower
        self.clock = clock

    async def create(self, job_id: str, **fields: Any) -> None:
        user = fields.pop("user", "alice")
        await self.bus.send(
            JobCreate(
                job_id=job_id,
                job_type=fields.pop("job_type", "t"),
                user=User(id=user),
                actor=user,
                **fields,
            )
        )

    async def start(self, job_id: str, *, lease_seconds: float = 60.0) -> None:
        job = await self.log.get_job(job_id)
        assert job is not None
        await self.bus.send(
            JobStart(
                job_id=job_id,
                worker="w",
                expected_version=job.version,
                lease_seconds=lease_seconds,
            )
        )


def _annotation(resource_id: str) -> dict[str, Any]:
    return {
        "@context": "http://www.w3.org/ns/anno.jsonld",
        "type": "Annotation",
        "motivation": "commenting",
        "target": {"source": resource_id},
        "body": [{"type": "TextualBody", "value": "a note", "purpose": "commenting"}],
    }


async def _started(log: Backend, clock: ManualClock) -> tuple[EventBus, Stower]:
    bus = EventBus()
    stower = Stower(log, bus, clock=clock)
    await stower.start()
    return bus, stower


@pytest.mark.asyncio
class ReadModelContract(BackendFixtures):
    """The read model folded with the log, claiming, paging and the audit view."""

    @pytest_asyncio.fixture
    async def engine(self, log: Backend) -> AsyncIterator[Engine]:
        clock = ManualClock()
        bus, stower = await _started(log, clock)
        try:
            yield Engine(log, bus, stower, clock)
        finally:
            await stower.stop()
            await bus.aclose()

    async def test_read_model_equals_replay(self, engine: Engine) -> None:
        for i in range(6):
            await engine.create(f"j{i}", priority=i % 3, idempotency_key=f"k{i}")
        for i in range(0, 6, 2):
            await engine.start(f"j{i}")
        await engine.bus.send(JobComplete(job_id="j0", attempt=1, result={"n": 1}))
        await engine.bus.send(JobDelete(job_id="j5"))
        for mark in ("m1", "m2", "m3"):
            await engine.bus.send(
                MarkCreate(mark_id=mark, resource_id="doc", annotation=_annotation("doc"))
            )
        await engine.bus.send(MarkDelete(mark_id="m2"))
        replayed = await replay(engine.log)
        stored = await engine.log.snapshot()
        assert stored.jobs == replayed.jobs
        assert stored.marks == replayed.marks
        assert stored.assets == replayed.assets
        assert stored.resources == replayed.resources
        assert await engine.log.checkpoint() == (await engine.log.head()).seq
        report = await verify(engine.log)
        assert report.ok, report.problems
        assert await engine.log.get_job("j5") is None
        assert [m.id for m in await engine.log.marks_of("doc")] == ["m1", "m3"]
        assert await engine.log.get_mark("m2") is None

    async def test_claim_exactly_once_between_two_writers(self, engine: Engine) -> None:
        # A second Stower on the same backend: a writer whose cache the first
        # one's commits make stale, as another process's would be.
        other_bus, other = await _started(engine.log, engine.clock)
        try:
            # The other writer creates the job (and so holds it in its cache);
            # this one claims it; the other's claim, decided on its stale
            # cache, must be refused as a conflict, never written.
            await other_bus.send(JobCreate(job_id="j", job_type="t", user=User(id="alice")))
            await engine.bus.send(JobStart(job_id="j", worker="a", expected_version=1))
            with pytest.raises((ConcurrencyConflict, InvalidTransition)):
                await other_bus.send(JobStart(job_id="j", worker="b", expected_version=1))
            for i in range(5):  # and both at once
                await other_bus.send(JobCreate(job_id=f"j{i}", job_type="t", user=User(id="a")))
                claims = await asyncio.gather(
                    engine.bus.send(JobStart(job_id=f"j{i}", worker="a", expected_version=1)),
                    other_bus.send(JobStart(job_id=f"j{i}", worker="b", expected_version=1)),
                    return_exceptions=True,
                )
                won = [c for c in claims if not isinstance(c, BaseException)]
                lost = [c for c in claims if isinstance(c, BaseException)]
                assert len(won) == 1, claims
                assert all(isinstance(c, ConcurrencyConflict | InvalidTransition) for c in lost)
            for stream in ["j", *(f"j{i}" for i in range(5))]:
                started = [e for e in await engine.log.stream(stream) if e.type == "job.started"]
                assert len(started) == 1, stream
        finally:
            await other.stop()
            await other_bus.aclose()
        assert (await verify(engine.log)).ok

    async def test_cursor_pages_are_stable_under_concurrent_writes(self, engine: Engine) -> None:
        for i in range(30):
            await engine.create(f"old{i:02d}")
        seen: list[str] = []
        page = await engine.log.list_jobs(limit=7)
        for writes in range(10):  # 5 pages are enough; a broken cursor may never end
            if not page:
                break
            seen += [j.id for j in page]
            await engine.create(f"new{writes:02d}")  # lands before the cursor
            if writes % 2 == 0:
                await engine.start(f"old{29 - writes:02d}")  # changes a row already seen
            page = await engine.log.list_jobs(before_seq=page[-1].created_seq, limit=7)
        assert seen == [f"old{i:02d}" for i in reversed(range(30))]

    async def test_list_filters_by_user_tenant_status_and_type(self, engine: Engine) -> None:
        for i in range(3):
            await engine.create(f"a{i}", user="alice")
            await engine.create(f"b{i}", user="bob", job_type="u")
        await engine.start("a1")
        assert [j.id for j in await engine.log.list_jobs(user_id="alice")] == ["a2", "a1", "a0"]
        assert [j.id for j in await engine.log.list_jobs(status=JobStatus.RUNNING)] == ["a1"]
        assert [j.id for j in await engine.log.list_jobs(job_type="u", limit=2)] == ["b2", "b1"]
        assert await engine.log.list_jobs(tenant="elsewhere") == []

    async def test_claim_order_is_priority_then_submission(self, engine: Engine) -> None:
        now = engine.clock.now()
        await engine.create("low-1", priority=0)
        await engine.create("high", priority=5)
        await engine.create("low-2", priority=0)
        await engine.create("later", priority=9, run_at=now + timedelta(hours=1))
        await engine.create("other-type", job_type="u", priority=99)
        pending = await engine.log.next_pending(["t"], now, limit=10)
        assert [j.id for j in pending] == ["high", "low-1", "low-2"]
        assert [j.id for j in await engine.log.next_pending(["t"], now, limit=1)] == ["high"]
        later = await engine.log.next_pending(["t"], now + timedelta(hours=2), limit=1)
        assert [j.id for j in later] == ["later"]
        assert await engine.log.next_pending([], now) == []
        assert await engine.log.next_due(["t"]) == now + timedelta(hours=1)
        assert await engine.log.next_due(["u"]) is None

    async def test_expiring_gives_the_leases_that_ran_out_first(self, engine: Engine) -> None:
        await engine.create("long")
        await engine.create("short")
        await engine.create("idle")
        await engine.start("long", lease_seconds=300)
        await engine.start("short", lease_seconds=30)
        now = engine.clock.now()
        assert await engine.log.expiring(now) == []
        assert [j.id for j in await engine.log.expiring(now + timedelta(seconds=60))] == ["short"]
        both = await engine.log.expiring(now + timedelta(hours=1))
        assert [j.id for j in both] == ["short", "long"]
        assert [j.id for j in await engine.log.expiring(now + timedelta(hours=1), limit=1)] == [
            "short"
        ]

    async def test_finished_before_gives_terminal_jobs_oldest_first(self, engine: Engine) -> None:
        for name in ("first", "second", "running"):
            await engine.create(name)
            await engine.start(name)
        await engine.bus.send(JobComplete(job_id="first", attempt=1))
        engine.clock.advance(60)
        await engine.bus.send(JobComplete(job_id="second", attempt=1))
        now = engine.clock.now()
        assert [j.id for j in await engine.log.finished_before(now)] == ["first"]
        later = await engine.log.finished_before(now + timedelta(seconds=1))
        assert [j.id for j in later] == ["first", "second"]

    async def test_an_idempotency_key_names_its_live_job(self, engine: Engine) -> None:
        await engine.create("j", idempotency_key="k", user="alice")
        found = await engine.log.job_by_key("alice", None, "k")
        assert found is not None
        assert found.id == "j"
        assert await engine.log.job_by_key("bob", None, "k") is None
        assert await engine.log.job_by_key("alice", "tenant", "k") is None
        await engine.bus.send(JobDelete(job_id="j"))
        assert await engine.log.job_by_key("alice", None, "k") is None

    async def test_job_counts_group_by_type_and_status(self, engine: Engine) -> None:
        start = engine.clock.now()
        await engine.create("t1")
        engine.clock.advance(5)
        await engine.create("t2")
        await engine.create("u1", job_type="u")
        await engine.start("t2")
        engine.clock.set(start - timedelta(hours=1))  # a wall clock that stepped back
        await engine.create("t3")
        counts = await engine.log.job_counts()
        assert counts == [
            # the first in the log, not the smallest time
            JobCount(job_type="t", status=JobStatus.PENDING, count=2, oldest=start),
            JobCount(
                job_type="t",
                status=JobStatus.RUNNING,
                count=1,
                oldest=start + timedelta(seconds=5),
            ),
            JobCount(
                job_type="u",
                status=JobStatus.PENDING,
                count=1,
                oldest=start + timedelta(seconds=5),
            ),
        ]

    async def test_resources_and_assets_page_oldest_first(self, engine: Engine) -> None:
        assert await engine.log.list_resources() == []
        for name in ("r1", "r2", "r3"):
            await engine.bus.send(
                ResourceCreate(
                    resource_id=name,
                    name=f"{name}.md",
                    media_type="text/markdown",
                    digest=digest_of(name.encode()),
                    size=2,
                )
            )
        first = await engine.log.list_resources(limit=2)
        assert [r.id for r in first] == ["r1", "r2"]
        rest = await engine.log.list_resources(after_seq=first[-1].created_seq)
        assert [r.id for r in rest] == ["r3"]
        found = await engine.log.get_resource("r2")
        assert found is not None
        assert found.digest == digest_of(b"r2")
        assert await engine.log.get_resource("nope") is None
        await engine.create("j")
        await engine.start("j")
        for asset in ("a1", "a2"):
            await engine.bus.send(
                AssetCreate(
                    asset_id=asset,
                    job_id="j",
                    attempt=1,
                    asset_type="report",
                    storage_path=f"out/{asset}.txt",
                    size=1,
                )
            )
        assert [a.id for a in await engine.log.assets_of("j")] == ["a1", "a2"]
        assert await engine.log.assets_of("nope") == []

    async def test_a_frozen_view_sees_one_instant(self, engine: Engine) -> None:
        await engine.create("before")
        async with engine.log.frozen() as view:
            await engine.create("during")
            assert (await view.head()).seq == 1
            assert await view.get_job("during") is None
            assert [e.stream async for e in view.scan()] == ["before"]
            assert (await verify(engine.log)).ok
        assert (await engine.log.head()).seq == 2
