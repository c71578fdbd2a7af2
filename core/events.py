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
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar

import msgspec

from .annotations import BodyOperation
from .holder import Holder
from .models import RetryPolicy, User

__all__ = [
    "EVENT_SCHEMAS",
    "EVENT_TYPES",
    "GENESIS_HASH",
    "JOB_ENDINGS",
    "AnyEvent",
    "AssetCreated",
    "AssetEvent",
    "Envelope",
    "Event",
    "EventSchemas",
    "JobCancelRequested",
    "JobCancelled",
    "JobCompleted",
    "JobCreated",
    "JobDeleted",
    "JobEvent",
    "JobFailed",
    "JobLeaseExpired",
    "JobLeaseRenewed",
    "JobPartiallyCompleted",
    "JobProgressed",
    "JobReleased",
    "JobResumed",
    "JobRetried",
    "JobRetryScheduled",
    "JobSkipped",
    "JobStarted",
    "JobSuspendRequested",
    "JobSuspended",
    "JobTimedOut",
    "MarkBodyUpdated",
    "MarkCreated",
    "MarkDeleted",
    "MarkEvent",
    "QueueConfigured",
    "QueueEvent",
    "ResourceCreated",
    "ResourceEvent",
    "Upcaster",
    "chain_hash",
    "decode_event",
    "encode_event",
    "ends_job",
]


class Event(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag_field="type"):
    """Base of all events. Each concrete event has a ``stream`` property: the id
    of the job, mark, asset or resource it belongs to.

    ``schema_version`` is the version of the event type's shape: 1 until the
    shape changes (see :class:`EventSchemas`)."""

    schema_version: ClassVar[int] = 1


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
    queue: str = "default"
    suspendable: bool = False
    retry: RetryPolicy | None = None
    max_recoveries: int | None = None
    """``None`` in jobs created before recovery budgets: the default applies."""


class JobStarted(JobEvent, frozen=True, kw_only=True, tag="job.started"):
    """A worker claimed the job for ``attempt``; ``holder`` is its process
    (``None`` in events written before holders were recorded)."""

    worker: str
    attempt: int
    lease_expires_at: datetime
    holder: Holder | None = None


class JobProgressed(JobEvent, frozen=True, kw_only=True, tag="job.progressed"):
    attempt: int
    percent: float
    stage: str | None = None
    message: str | None = None
    processed: int | None = None
    total: int | None = None
    checkpoint: dict[str, Any] | None = None


class JobLeaseRenewed(JobEvent, frozen=True, kw_only=True, tag="job.lease_renewed"):
    """A heartbeat: the running attempt's lease now lasts until ``lease_expires_at``."""

    attempt: int
    lease_expires_at: datetime


class JobCompleted(JobEvent, frozen=True, kw_only=True, tag="job.completed"):
    attempt: int
    result: dict[str, Any] | None = None


class JobFailed(JobEvent, frozen=True, kw_only=True, tag="job.failed"):
    """Terminal: the attempt failed and no retry is allowed."""

    attempt: int
    error: str
    error_type: str | None = None


class JobPartiallyCompleted(JobEvent, frozen=True, kw_only=True, tag="job.partial"):
    """Terminal: part of the work was done (``result``); ``error`` says what is missing."""

    attempt: int
    result: dict[str, Any] | None = None
    error: str


class JobSkipped(JobEvent, frozen=True, kw_only=True, tag="job.skipped"):
    """Terminal: the worker found the job does not apply."""

    attempt: int
    reason: str


class JobRetryScheduled(JobEvent, frozen=True, kw_only=True, tag="job.retry_scheduled"):
    """The attempt failed (``error``) and the job is pending again, not before ``run_at``."""

    attempt: int
    error: str
    error_type: str | None = None
    run_at: datetime


class JobTimedOut(JobEvent, frozen=True, kw_only=True, tag="job.timed_out"):
    """Terminal: the last allowed attempt ran past the job's timeout."""

    attempt: int
    error: str


class JobLeaseExpired(JobEvent, frozen=True, kw_only=True, tag="job.lease_expired"):
    """The attempt's worker was lost: it stopped renewing its lease
    (``reason="lease"``) or its process is provably dead (``reason="holder"``).

    Since recovery budgets (``recovery`` set: this is the job's recovery
    number ``recovery``), the job is pending again from ``retry_at`` and no
    retry is spent. In events written before (``recovery`` is ``None``) the
    lost attempt counted as a failure: with ``retry_at`` the job was pending
    again from then; without, it had failed for good."""

    attempt: int
    retry_at: datetime | None = None
    recovery: int | None = None
    reason: str | None = None


class JobReleased(JobEvent, frozen=True, kw_only=True, tag="job.released"):
    """The worker running ``attempt`` stopped on purpose (shutdown) and gave
    the job back: it is pending again at once, no retry or recovery spent."""

    attempt: int
    reason: str | None = None


class JobCancelRequested(JobEvent, frozen=True, kw_only=True, tag="job.cancel_requested"):
    """A running job was asked to stop; its worker confirms with ``job:cancel``."""

    reason: str | None = None


class JobCancelled(JobEvent, frozen=True, kw_only=True, tag="job.cancelled"):
    """Terminal: the job was cancelled (while pending, suspended, or once its worker stopped)."""

    reason: str | None = None
    attempt: int | None = None


class JobSuspendRequested(JobEvent, frozen=True, kw_only=True, tag="job.suspend_requested"):
    """A running job was asked to checkpoint and stop; its worker confirms with ``job:suspend``."""


class JobSuspended(JobEvent, frozen=True, kw_only=True, tag="job.suspended"):
    """The job is suspended with its last progress; ``job:resume`` puts it back to pending."""

    attempt: int | None = None


class JobResumed(JobEvent, frozen=True, kw_only=True, tag="job.resumed"):
    """A suspended job is pending again."""


class JobRetried(JobEvent, frozen=True, kw_only=True, tag="job.retried"):
    """A job that had ended ``failed``, ``timed_out`` or ``cancelled`` is pending
    again (``job:retry``): its error and result cleared, its failures and
    recoveries counted afresh, its attempt number going on."""

    reason: str | None = None


class JobDeleted(JobEvent, frozen=True, kw_only=True, tag="job.deleted"):
    """Tombstone: the job leaves the read model; its stream stays in the log."""


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
    """The mark is gone from its resource (deleted by the job ``job_id``, if a
    job deleted it)."""

    job_id: str | None = None


class MarkBodyUpdated(MarkEvent, frozen=True, kw_only=True, tag="mark.body_updated"):
    """The mark's body changed by ``operations``, applied in order (by the
    job ``job_id``, if a job changed it)."""

    operations: list[BodyOperation]
    job_id: str | None = None


class AssetEvent(Event, frozen=True, kw_only=True):
    """Base of the events in an asset's stream."""

    asset_id: str
    job_id: str

    @property
    def stream(self) -> str:
        return self.asset_id


class AssetCreated(AssetEvent, frozen=True, kw_only=True, tag="asset.created"):
    """A job recorded a file it made."""

    asset_type: str
    url: str | None = None
    storage_path: str
    size: int


class ResourceEvent(Event, frozen=True, kw_only=True):
    """Base of the events in a resource's stream."""

    resource_id: str

    @property
    def stream(self) -> str:
        return self.resource_id


class ResourceCreated(ResourceEvent, frozen=True, kw_only=True, tag="resource.created"):
    """A document was stored: its ``name``, ``media_type``, and the ``digest``
    and ``size`` of its content (made by the job ``job_id``, if a job made it)."""

    name: str
    media_type: str
    digest: str
    size: int
    job_id: str | None = None


class QueueEvent(Event, frozen=True, kw_only=True):
    """Base of the events in a queue's stream (``queue:NAME``)."""

    queue: str

    @property
    def stream(self) -> str:
        return f"queue:{self.queue}"


class QueueConfigured(QueueEvent, frozen=True, kw_only=True, tag="queue.configured"):
    """A queue's capacity was set: at most ``capacity`` of its jobs run at
    once, in every process that shares the log (``None``: no limit)."""

    capacity: int | None = None


AnyEvent = (
    JobCreated
    | JobStarted
    | JobProgressed
    | JobLeaseRenewed
    | JobCompleted
    | JobFailed
    | JobPartiallyCompleted
    | JobSkipped
    | JobRetryScheduled
    | JobTimedOut
    | JobLeaseExpired
    | JobReleased
    | JobCancelRequested
    | JobCancelled
    | JobSuspendRequested
    | JobSuspended
    | JobResumed
    | JobRetried
    | JobDeleted
    | MarkCreated
    | MarkDeleted
    | MarkBodyUpdated
    | AssetCreated
    | ResourceCreated
    | QueueConfigured
)

EVENT_TYPES: dict[str, type[Event]] = {cls.__struct_config__.tag: cls for cls in AnyEvent.__args__}
"""Wire name → event class, for every event type."""

JOB_ENDINGS: frozenset[str] = frozenset(
    cls.__struct_config__.tag  # type: ignore[misc]
    for cls in (
        JobCompleted,
        JobPartiallyCompleted,
        JobFailed,
        JobSkipped,
        JobCancelled,
        JobTimedOut,
        JobDeleted,
    )
)
"""The event types that end a job's run: its terminal endings and its
deletion. After one, a job's stream gets no more events but a
``job.retried`` (a failed, timed-out or cancelled job run again by hand) or
its ``job.deleted``. ``ends_job`` also counts the one older way a run
ended."""


def ends_job(env: Envelope) -> bool:
    """Whether ``env`` ends its job's run: one of :data:`JOB_ENDINGS`, or a
    ``job.lease_expired`` written before recovery budgets existed that left
    no retry (its job failed). What ``tail JOB_ID``, the demo and the
    examples stop at."""
    if env.type in JOB_ENDINGS:
        return True
    data = env.data
    return isinstance(data, JobLeaseExpired) and data.recovery is None and data.retry_at is None


class Envelope(msgspec.Struct, frozen=True, kw_only=True, gc=False):
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


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Takes an event's JSON object at one schema version, returns it at the next."""


class EventSchemas:
    """The schema version of each event type, and the upcasters that bring an
    entry written at an older version to the current shape.

    A type starts at version 1 and its entries carry no version. When its
    shape changes, its class sets ``schema_version = N`` and gains a field
    ``v: int = N`` (so its new entries say their version), and an upcaster
    from ``N - 1`` to ``N`` is registered. Old entries then decode into the
    current shape; their stored bytes, and so the hash chain, never change.
    An entry newer than its type's current version, or one with no upcaster
    on its way, does not decode (``ValueError``).
    """

    def __init__(self, versions: Mapping[str, int] | None = None) -> None:
        # Fixed once made: ``versions`` is read, never changed.
        self.versions: dict[str, int] = (
            dict(versions)
            if versions is not None
            else {tag: cls.schema_version for tag, cls in EVENT_TYPES.items()}
        )
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._all_first = all(version == 1 for version in self.versions.values())

    def register(self, event_type: str, from_version: int, upcaster: Upcaster) -> None:
        """Register the step of ``event_type`` from ``from_version`` to the next."""
        current = self.versions.get(event_type)
        if current is None or not 1 <= from_version < current:
            raise ValueError(f"{event_type!r} has no version {from_version} before its current")
        self._upcasters[(event_type, from_version)] = upcaster

    def decode(self, data: bytes | str) -> AnyEvent:
        """The event in an entry's stored bytes, in its type's current shape."""
        raw = data.encode() if isinstance(data, str) else data
        if b'"v":' not in raw:  # version 1: the common case, decoded at once
            try:
                event = _event_decoder.decode(raw)
            except msgspec.ValidationError:
                if self._all_first:
                    raise
            else:
                if self._all_first or self.versions.get(event.__struct_config__.tag) == 1:  # type: ignore[arg-type]
                    return event
        return self._upcast(raw)

    def _upcast(self, raw: bytes) -> AnyEvent:
        obj = msgspec.json.decode(raw)
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            raise ValueError("an event is a JSON object with a type")
        event_type: str = obj["type"]
        version = obj.pop("v", 1)
        current = self.versions.get(event_type)
        if current is None:
            raise ValueError(f"unknown event type {event_type!r}")
        if not isinstance(version, int) or version > current:
            raise ValueError(f"{event_type} version {version!r} is not one this jobledger knows")
        while version < current:
            step = self._upcasters.get((event_type, version))
            if step is None:
                raise ValueError(f"no upcaster for {event_type} from version {version}")
            obj = step(obj)
            version += 1
        if current > 1:
            obj["v"] = current
        return _event_decoder.decode(_encoder.encode(obj))


EVENT_SCHEMAS = EventSchemas()
"""The schemas ``decode_event`` uses: every type at its class's version."""


def decode_event(data: bytes | str) -> AnyEvent:
    """Decode an event from its stored bytes, upcast to its current shape.
    Raises ``msgspec`` errors or ``ValueError`` on bad input."""
    return EVENT_SCHEMAS.decode(data)


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
