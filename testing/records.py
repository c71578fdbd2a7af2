"""Records as a writer appends them, made without a Stower: for testing a
backend's log directly (:class:`Chain`).

A backend never makes or checks a hash and never folds an event: it stores
what it is given. A :class:`Chain` gives it what the Stower would: envelopes
that follow on from the head, hashed over the exact event bytes, with the
read-model rows their fold makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import msgspec

from jobledger.core import (
    AnyEvent,
    Envelope,
    JobCompleted,
    JobCreated,
    JobDeleted,
    JobStarted,
    Projection,
    User,
    chain_hash,
    encode_event,
)
from jobledger.store import Changes, Head, Record

__all__ = ["START", "Chain", "completed", "created", "deleted", "started"]

START = datetime(2026, 1, 1, tzinfo=UTC)
"""The time of the first record a :class:`Chain` makes (each next one is a millisecond later)."""


def created(
    job_id: str, *, job_type: str = "t", user: str = "alice", priority: int = 0
) -> JobCreated:
    """A ``job.created`` event of a job with no params."""
    return JobCreated(
        job_id=job_id, job_type=job_type, params={}, user=User(id=user), priority=priority
    )


def started(job_id: str, *, attempt: int = 1, worker: str = "w") -> JobStarted:
    """A ``job.started`` event: the job runs under a lease of one hour from :data:`START`."""
    return JobStarted(
        job_id=job_id,
        worker=worker,
        attempt=attempt,
        lease_expires_at=START + timedelta(hours=1),
    )


def completed(job_id: str, *, attempt: int = 1) -> JobCompleted:
    """A ``job.completed`` event with a small result."""
    return JobCompleted(job_id=job_id, attempt=attempt, result={"ok": True})


def deleted(job_id: str) -> JobDeleted:
    """A ``job.deleted`` event."""
    return JobDeleted(job_id=job_id)


class Chain:
    """Makes records that follow on from a head, as the Stower would, and
    keeps the fold of what was committed (``commit``) to know each stream's
    next version and the read-model rows a batch changes."""

    def __init__(self) -> None:
        self.model = Projection()
        self._committed: list[Envelope] = []
        self._made = 0

    def records(
        self, head: Head, events: Sequence[AnyEvent], *, versions: dict[str, int] | None = None
    ) -> list[Record]:
        """``events`` as records after ``head``: ``seq`` from ``head.seq + 1``,
        each stream's next version (the committed ones, or ``versions`` given
        as each stream's last version so far), hashed in a chain from
        ``head.hash``."""
        last = dict(self.model.versions)
        last.update(versions or {})
        previous, seq = head.hash, head.seq
        made: list[Record] = []
        for event in events:
            seq += 1
            stream = event.stream
            last[stream] = last.get(stream, 0) + 1
            data = encode_event(event)
            tag = event.__struct_config__.tag
            assert isinstance(tag, str)
            self._made += 1
            unsigned = Envelope(
                seq=seq,
                event_id=f"evt_{self._made:026d}",
                stream=stream,
                version=last[stream],
                type=tag,
                time=START + timedelta(milliseconds=self._made),
                actor="tester",
                data=event,
                hash="",
            )
            envelope = msgspec.structs.replace(unsigned, hash=chain_hash(previous, unsigned, data))
            made.append(Record(envelope, data))
            previous = envelope.hash
        return made

    def changes(self, records: Sequence[Record]) -> Changes:
        """The read-model rows that folding ``records`` after what was
        committed changes: the entities of their streams, as they end up."""
        model = Projection()
        model.apply_all(self._committed)
        before_jobs, before_marks = set(model.jobs), set(model.marks)
        model.apply_all(r.envelope for r in records)
        streams = {r.envelope.stream for r in records}
        return Changes(
            jobs=[model.jobs[s] for s in sorted(streams) if s in model.jobs],
            deleted_jobs=sorted(s for s in streams & before_jobs if s not in model.jobs),
            marks=[model.marks[s] for s in sorted(streams) if s in model.marks],
            deleted_marks=sorted(s for s in streams & before_marks if s not in model.marks),
            assets=[model.assets[s] for s in sorted(streams) if s in model.assets],
            resources=[model.resources[s] for s in sorted(streams) if s in model.resources],
        )

    def commit(self, records: Sequence[Record]) -> None:
        """Take ``records`` as committed: later records follow on from them."""
        for record in records:
            self._committed.append(record.envelope)
            self.model.apply(record.envelope)
