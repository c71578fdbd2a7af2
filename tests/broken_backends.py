"""Backends that each break one promise of the contract, to prove that the
contract suite (jobledger.testing) catches it: each is the memory backend
with one behaviour taken out, and ``BROKEN`` names the test that must fail.

Imported by the test module that tests/test_contract.py writes and runs in a
separate pytest process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import msgspec

from jobledger.core import Job, JobStatus, Projection
from jobledger.store import Changes, Head, JobCount, MemoryLog, Record
from jobledger.store.memory import _MemoryWriter


class WritesTogether(MemoryLog):
    """Lets two write transactions run at once (no lock)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = _NoLock()  # type: ignore[assignment]


class _NoLock:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


class TakesAnyVersion(MemoryLog):
    """Appends a version of a stream that is already taken."""

    def _commit(self, records: Sequence[Record], *, stale_if_taken: bool = False) -> None:
        for record in records:
            self._records.append(record)
            self._streams.setdefault(record.envelope.stream, []).append(record.envelope)
            self._model.apply(record.envelope)
        if records:
            self._head = Head(records[-1].envelope.seq, records[-1].envelope.hash)


class KeepsHalfABatch(MemoryLog):
    """Keeps the records of a failed batch that came before the one that failed."""

    def _commit(self, records: Sequence[Record], *, stale_if_taken: bool = False) -> None:
        for record in records:
            super()._commit([record], stale_if_taken=stale_if_taken)


class _EagerWriter(_MemoryWriter):
    async def append(self, records: Sequence[Record], changes: Changes) -> None:
        self._log._commit(records)


class ShowsWritesEarly(MemoryLog):
    """Makes an append visible before its transaction commits."""

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_MemoryWriter]:
        async with self._lock:
            yield _EagerWriter(self)


class _LooseWriter(_MemoryWriter):
    async def append(self, records: Sequence[Record], changes: Changes) -> None:
        self.records.extend(records)


class TakesAGap(MemoryLog):
    """Appends a seq that does not follow on from the head."""

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_MemoryWriter]:
        async with self._lock:
            writer = _LooseWriter(self)
            yield writer
            self._commit(writer.records)


class ReencodesEvents(MemoryLog):
    """Stores each event as it re-encodes it, not the exact bytes it was given."""

    def _commit(self, records: Sequence[Record], *, stale_if_taken: bool = False) -> None:
        changed = [Record(r.envelope, msgspec.json.format(r.data, indent=1)) for r in records]
        super()._commit(changed, stale_if_taken=stale_if_taken)


class NeverTells(MemoryLog):
    """Tells no one of its commits."""

    def on_commit(self, callback: Callable[[int], None]) -> Callable[[], None]:
        return lambda: None


class _Forgetful(Projection):
    """Folds everything but a mark's deletion."""

    def apply(self, env: Any) -> None:
        if env.type == "mark.deleted":
            self.seq = env.seq
            return
        super().apply(env)


class ForgetsDeletions(MemoryLog):
    """Its read model misses the deletion of marks."""

    def __init__(self) -> None:
        super().__init__()
        self._model = _Forgetful()


class IgnoresExpect(MemoryLog):
    """Commits a write made on a head that has moved."""

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_MemoryWriter]:
        async with super().write() as writer:
            writer.expect = lambda head: None  # type: ignore[method-assign]
            yield writer


class PagesByPosition(MemoryLog):
    """Reads a page's cursor as "at or before" instead of "before"."""

    async def list_jobs(self, *, before_seq: int | None = None, **filters: Any) -> list[Job]:
        cursor = None if before_seq is None else before_seq + 1
        return await super().list_jobs(before_seq=cursor, **filters)


class ClaimsOldestFirst(MemoryLog):
    """Gives pending jobs oldest first, whatever their priority."""

    async def next_pending(
        self, job_types: Sequence[str], now: datetime, limit: int = 1
    ) -> list[Job]:
        found = await super().next_pending(job_types, now, limit=10_000)
        return sorted(found, key=lambda j: j.created_seq)[:limit]


class SeesThroughFrozen(MemoryLog):
    """A "frozen" view that is the live log."""

    @asynccontextmanager
    async def frozen(self) -> AsyncIterator[MemoryLog]:
        yield self


class CountsAllStatusesAsOne(MemoryLog):
    """Counts jobs by type only."""

    async def job_counts(self) -> list[JobCount]:
        merged: dict[str, JobCount] = {}
        for count in await super().job_counts():
            seen = merged.get(count.job_type)
            merged[count.job_type] = JobCount(
                job_type=count.job_type,
                status=JobStatus.PENDING,
                count=count.count + (seen.count if seen else 0),
                oldest=min(count.oldest, seen.oldest) if seen else count.oldest,
            )
        return list(merged.values())


class RebuildsNothing(MemoryLog):
    """Keeps its read model when told to replace it."""

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_MemoryWriter]:
        async with super().write() as writer:
            writer.replace_read_model = lambda model: None  # type: ignore[method-assign]
            yield writer


BROKEN: dict[str, tuple[type[MemoryLog], str]] = {
    "WritesTogether": (WritesTogether, "test_seq_is_gapless_under_concurrent_appends"),
    "TakesAnyVersion": (TakesAnyVersion, "test_a_version_already_taken_is_refused"),
    "KeepsHalfABatch": (KeepsHalfABatch, "test_a_batch_is_appended_whole_or_not_at_all"),
    "ShowsWritesEarly": (ShowsWritesEarly, "test_nothing_is_visible_before_commit"),
    "TakesAGap": (TakesAGap, "test_a_seq_that_does_not_follow_the_head_is_refused"),
    "ReencodesEvents": (ReencodesEvents, "test_the_hash_chain_and_event_bytes_are_kept_exactly"),
    "NeverTells": (NeverTells, "test_commits_are_notified_after_they_are_visible"),
    "ForgetsDeletions": (ForgetsDeletions, "test_read_model_equals_replay"),
    "IgnoresExpect": (IgnoresExpect, "test_claim_exactly_once_between_two_writers"),
    "PagesByPosition": (PagesByPosition, "test_cursor_pages_are_stable_under_concurrent_writes"),
    "ClaimsOldestFirst": (ClaimsOldestFirst, "test_claim_order_is_priority_then_submission"),
    "SeesThroughFrozen": (SeesThroughFrozen, "test_a_frozen_view_sees_one_instant"),
    "CountsAllStatusesAsOne": (CountsAllStatusesAsOne, "test_job_counts_group_by_type_and_status"),
    "RebuildsNothing": (RebuildsNothing, "test_rebuild_replaces_the_read_model_with_the_replay"),
}
"""Each broken backend, and the contract test named for what it breaks."""

__all__ = ["BROKEN"]
