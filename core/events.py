"""Events: facts in the log, named ``noun.past_tense``, and the envelope that carries them.

An event is a frozen, tagged msgspec Struct whose ``type`` tag is its wire
name (``job.created``). Fields are only ever *added*, and only as optional
fields, so every event ever written still decodes.

The :class:`Envelope` is what the log stores and the bus publishes: the event
plus its place in the log (``seq``, ``stream``, ``version``), who caused it
(``actor``, ``correlation_id``, ``causation_id``), when (``time``) and the
hash chaining it to the event before.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import msgspec

from .models import User

__all__ = [
    "EVENT_TYPES",
    "GENESIS_HASH",
    "AnyEvent",
    "Envelope",
    "Event",
    "JobCompleted",
    "JobCreated",
    "JobEvent",
    "JobFailed",
    "JobProgressed",
    "JobStarted",
    "MarkCreated",
    "MarkDeleted",
    "MarkEvent",
    "chain_hash",
    "decode_event",
    "encode_event",
]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of all events. Each concrete event has a ``stream`` property: the id
    of the job or mark it belongs to."""


class JobEvent(Event, frozen=True, kw_only=True):
    """Base of the events in a job's stream."""

    job_id: str

    @property
    def stream(self) -> str:
        return self.job_id


class JobCreated(JobEvent, frozen=True, kw_only=True, tag="job.created"):
    job_type: str
    params: dict[str, Any]
    user: User
    priority: int = 0
    run_at: datetime | None = None
    max_retries: int = 0
    timeout: float | None = None
    idempotency_key: str | None = None


class JobStarted(JobEvent, frozen=True, kw_only=True, tag="job.started"):
    worker: str
    attempt: int
    lease_expires_at: datetime


class JobProgressed(JobEvent, frozen=True, kw_only=True, tag="job.progressed"):
    attempt: int
    percent: float
    stage: str | None = None
    message: str | None = None
    processed: int | None = None
    total: int | None = None


class JobCompleted(JobEvent, frozen=True, kw_only=True, tag="job.completed"):
    attempt: int
    result: dict[str, Any] | None = None


class JobFailed(JobEvent, frozen=True, kw_only=True, tag="job.failed"):
    attempt: int
    error: str
    error_type: str | None = None


class MarkEvent(Event, frozen=True, kw_only=True):
    """Base of the events in a mark's stream."""

    mark_id: str
    resource_id: str

    @property
    def stream(self) -> str:
        return self.mark_id


class MarkCreated(MarkEvent, frozen=True, kw_only=True, tag="mark.created"):
    annotation: dict[str, Any]
    job_id: str | None = None


class MarkDeleted(MarkEvent, frozen=True, kw_only=True, tag="mark.deleted"):
    pass


AnyEvent = (
    JobCreated | JobStarted | JobProgressed | JobCompleted | JobFailed | MarkCreated | MarkDeleted
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (
        JobCreated,
        JobStarted,
        JobProgressed,
        JobCompleted,
        JobFailed,
        MarkCreated,
        MarkDeleted,
    )
}
"""Wire name → event class, for every event type."""


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of the log.

    ``seq`` is the global position (1, 2, 3, … without gaps); ``version`` the
    position within ``stream`` (1, 2, 3, …); ``hash`` is
    ``sha256(previous hash ‖ canonical bytes of this envelope)`` in hex.
    """

    seq: int
    event_id: str
    stream: str
    version: int
    type: str
    time: datetime
    actor: str
    correlation_id: str | None = None
    causation_id: str | None = None
    data: AnyEvent
    hash: str


GENESIS_HASH = "0" * 64
"""The ``previous hash`` of the first event."""

_encoder = msgspec.json.Encoder()
_event_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)


def encode_event(event: Event) -> bytes:
    """The canonical JSON bytes of an event (field order is the class's)."""
    return _encoder.encode(event)


def decode_event(data: bytes | str) -> AnyEvent:
    """Decode an event from its stored bytes. Raises ``msgspec`` errors on bad input."""
    return _event_decoder.decode(data)


def chain_hash(previous: str, env: Envelope, data: bytes) -> str:
    """The hash of one log entry, chained to ``previous``.

    The canonical bytes are the JSON array of the envelope's fields in a
    fixed order (seq, event_id, stream, version, type, time, actor,
    correlation_id, causation_id) followed by ``data``, the exact stored
    event bytes, spliced in raw. ``env.hash`` itself is not covered.
    """
    canonical = _encoder.encode(
        [
            env.seq,
            env.event_id,
            env.stream,
            env.version,
            env.type,
            env.time,
            env.actor,
            env.correlation_id,
            env.causation_id,
            msgspec.Raw(data),
        ]
    )
    return hashlib.sha256(previous.encode("ascii") + canonical).hexdigest()
