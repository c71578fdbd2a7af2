"""The stored shape of the log and its read model: each table's columns, and
the row a backend stores for an entry, a job, a mark, an asset, a resource,
a queue and the checkpoint.

Every backend stores (or, in memory, presents) exactly these rows, so
``verify`` is written once over them (:meth:`~jobledger.store.EventLog.raw_rows`)
and compares what is stored, undecoded, with what a replay says should be.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

import msgspec

from jobledger.core import Asset, Job, Mark, Queue, Resource

from .protocol import Record

__all__ = [
    "asset_row",
    "checkpoint_row",
    "doc_type",
    "event_row",
    "job_row",
    "mark_row",
    "micros",
    "queue_row",
    "resource_row",
    "time_text",
]


_encode = msgspec.json.Encoder().encode
_time_encoder = msgspec.json.Encoder()

_DOC_TYPES: Final[Mapping[str, type[msgspec.Struct]]] = MappingProxyType(
    {"jobs": Job, "marks": Mark, "assets": Asset, "resources": Resource, "queues": Queue}
)


def doc_type(table: str) -> type[msgspec.Struct] | None:
    """The model whose JSON a table's ``doc`` column holds (``None``: no ``doc``)."""
    return _DOC_TYPES.get(table)


def time_text(when: datetime) -> str:
    """msgspec's RFC 3339 form of ``when``: the text the hash chain encodes."""
    return _time_encoder.encode(when)[1:-1].decode("ascii")


def micros(when: datetime | None) -> int | None:
    """``when`` as microseconds since the epoch (what the time columns hold)."""
    return None if when is None else int(when.timestamp() * 1_000_000)


def event_row(record: Record) -> tuple[Any, ...]:
    """The ``events`` row of a log entry."""
    env = record.envelope
    return (
        env.seq,
        env.event_id,
        env.stream,
        env.version,
        env.type,
        time_text(env.time),
        env.actor,
        env.correlation_id,
        env.causation_id,
        record.data,
        env.hash,
    )


def job_row(job: Job) -> tuple[Any, ...]:
    """The ``jobs`` row of a job: the columns queries filter and order on, and its document."""
    return (
        job.id,
        job.job_type,
        job.status.value,
        job.user.id,
        job.user.tenant,
        job.priority,
        micros(job.run_at),
        micros(job.lease.expires_at if job.lease else None),
        micros(job.deadline),
        micros(job.finished_at),
        job.idempotency_key,
        job.created_seq,
        _encode(job),
    )


def mark_row(mark: Mark) -> tuple[Any, ...]:
    """The ``marks`` row of a live mark."""
    return (mark.id, mark.resource_id, mark.job_id, mark.created_seq, _encode(mark))


def asset_row(asset: Asset) -> tuple[Any, ...]:
    """The ``assets`` row of an asset."""
    return (asset.id, asset.job_id, asset.created_seq, _encode(asset))


def resource_row(resource: Resource) -> tuple[Any, ...]:
    """The ``resources`` row of a resource."""
    return (resource.id, resource.created_seq, _encode(resource))


def queue_row(queue: Queue) -> tuple[Any, ...]:
    """The ``queues`` row of a configured queue."""
    return (queue.name, _encode(queue))


def checkpoint_row(seq: int) -> tuple[Any, ...]:
    """The ``meta`` row of the read model's checkpoint: the last ``seq`` folded."""
    return ("checkpoint", str(seq))
