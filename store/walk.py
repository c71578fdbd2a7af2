"""The walk over log entries that ``verify`` and ``import_log`` share.

A :class:`Walk` takes the entries of a log in order, checks each against
what came before it, and folds it with the same pure functions the Stower
uses. It finds, for each entry: a ``seq`` out of turn, a stream version out
of turn, a hash that does not chain, an event id seen before, a type or a
stream that is not its event's, a time without a zone (or past what UTC can
hold), and an entry that the life of its stream does not allow (before its
stream's creation, after its job ended or was deleted, a status move the
transition table refuses, an idempotency key already held). ``verify``
reports what it finds; ``import_log`` refuses the first.

:func:`entry_of_row` turns a stored ``events`` row, whatever it holds, into
an entry, or into problems naming the column that does not decode.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from jobledger.core import (
    GENESIS_HASH,
    RETRYABLE,
    AssetCreated,
    Envelope,
    JobCreated,
    JobDeleted,
    JobRetried,
    JobStatus,
    MarkCreated,
    Projection,
    ResourceCreated,
    can_transition,
    chain_hash,
    decode_event,
    is_terminal,
)

from .protocol import TABLES, Problem, RawText, RawValue, Record

__all__ = ["Entry", "Walk", "entry_of_row", "show"]

_CREATIONS: Final = {
    cls.__struct_config__.tag: cls.__struct_config__.tag.partition(".")[0]  # type: ignore[union-attr]
    for cls in (JobCreated, MarkCreated, AssetCreated, ResourceCreated)
}
"""The event that starts a stream of each kind this walk knows (``job``, ``mark``, …)."""

_DELETED: Final = JobDeleted.__struct_config__.tag
_RETRIED: Final = JobRetried.__struct_config__.tag  # (the one event an ending may be followed by)
_PLACEHOLDER: Final = JobDeleted(job_id="")
"""The event of an entry whose data does not decode: the chain covers the
stored bytes, not the event, so such an entry is still checked against it."""

_EVENTS: Final = TABLES["events"]


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """A log entry as the walk takes it: its record, and whether its event
    decoded (one that did not is chained, never folded)."""

    record: Record
    decoded: bool = True


class Walk:
    """Folds a log's entries in order, checking each; never raises for what
    an entry holds. ``model`` is the state folded so far; ``last_seq`` the
    ``seq`` of the last entry of each stream; ``head`` the last entry's
    ``seq`` and ``hash`` (as stored)."""

    def __init__(self) -> None:
        self.model = Projection()
        self.last_seq: dict[str, int] = {}
        self.kinds: dict[str, str] = {}
        self.event_ids: set[str] = set()
        self.previous = GENESIS_HASH
        self.due = 1
        self.count = 0
        self.head_seq = 0

    def step(self, entry: Entry) -> list[Problem]:
        """Check and fold one entry; the problems it shows, first things first."""
        env, data = entry.record.envelope, entry.record.data
        found = self.advance(env.seq, None)
        if env.event_id in self.event_ids:
            found.append(_entry(env.seq, env.stream, "event_id", f"{env.event_id!r} seen before"))
        self.event_ids.add(env.event_id)
        want = self.model.versions.get(env.stream, 0) + 1
        if env.version != want:
            found.append(
                _problem(
                    env.seq,
                    "version",
                    f"stream {env.stream!r} has version {env.version}, expected {want}",
                    column="version",
                    stream=env.stream,
                )
            )
        if chain_hash(self.previous, env, data) != env.hash:
            found.append(
                _problem(
                    env.seq,
                    "hash",
                    f"hash does not match the chain at seq {env.seq}",
                    column="hash",
                    stream=env.stream,
                )
            )
        self.previous = env.hash
        self.last_seq[env.stream] = env.seq
        found += _times(env)
        if not entry.decoded:
            self.model.versions[env.stream] = env.version  # (so later versions check)
            return found
        found += _agreement(env)
        found += self._life(env)
        try:
            self.model.apply(env)
        # An auditor's walk goes on whatever an entry holds: a fold that fails
        # in any way (a body update that does not apply, a type without a
        # kind) is what it reports.
        except Exception as exc:
            found.append(_problem(env.seq, "fold", str(exc) or type(exc).__name__, env.stream))
            self.model.versions[env.stream] = env.version
        return found

    def advance(self, seq: int, stored_hash: str | None) -> list[Problem]:
        """Take the entry at ``seq`` (its place in the walk); a ``seq`` out of
        turn is a ``gap`` problem. ``stored_hash`` (if any) is where the chain
        goes on from, for an entry that cannot be checked itself."""
        found: list[Problem] = []
        if seq != self.due:
            found.append(
                _problem(
                    min(seq, self.due) if seq > self.due else seq,
                    "gap",
                    f"seq {seq} where {self.due} was due"
                    + (f" (seq {self.due} to {seq - 1} missing)" if seq > self.due else ""),
                    column="seq",
                )
            )
        self.due = seq + 1
        self.count += 1
        self.head_seq = seq
        if stored_hash is not None:
            self.previous = stored_hash
        return found

    def _life(self, env: Envelope) -> list[Problem]:
        """What the life of the entry's stream does not allow (decide would
        not have written it)."""
        tag: str = env.data.__struct_config__.tag  # type: ignore[assignment]
        kind = tag.partition(".")[0]
        stream = env.stream
        known = self.kinds.get(stream)
        if known is None:
            self.kinds[stream] = kind
            if kind in _CREATIONS.values() and tag not in _CREATIONS:
                return [_life(env, f"{tag} before its stream's {kind}.created")]
            if isinstance(env.data, JobCreated) and env.data.idempotency_key is not None:
                held = self.model.job_by_key(
                    env.data.user.id, env.data.user.tenant, env.data.idempotency_key
                )
                if held is not None:
                    return [
                        _life(
                            env,
                            f"idempotency key {env.data.idempotency_key!r} is held by "
                            f"job {held.id!r}",
                        )
                    ]
            return []
        if known != kind:
            return [_life(env, f"a {tag} in the stream of a {known}")]
        if tag in _CREATIONS:
            return [_life(env, f"{tag} again: the stream was created before")]
        if kind == "job":
            return self._job_life(env, tag)
        if kind == "mark" and stream not in self.model.marks:
            return [_life(env, f"{tag} after the mark was deleted")]
        return []

    def _job_life(self, env: Envelope, tag: str) -> list[Problem]:
        job = self.model.jobs.get(env.stream)
        if job is None:
            return [_life(env, f"{tag} after the job was deleted")]
        if tag == _DELETED:
            if job.status is JobStatus.RUNNING:
                return [_life(env, "job.deleted while the job runs")]
            return []
        if is_terminal(job.status) and not (tag == _RETRIED and job.status in RETRYABLE):
            return [_life(env, f"{tag} after the job ended ({job.status.value})")]
        try:
            after = Projection()
            after.jobs[env.stream] = job
            after.apply(env)
        except Exception:  # (the fold itself reports it)
            return []
        moved = after.jobs.get(env.stream)
        if (
            moved is not None
            and moved.status is not job.status
            and not can_transition(job.status, moved.status)
        ):
            return [
                _life(
                    env,
                    f"{tag} moves the job from {job.status.value} to "
                    f"{moved.status.value}, which the transition table refuses",
                )
            ]
        return []


def _problem(
    seq: int, kind: str, detail: str, stream: str | None = None, *, column: str | None = None
) -> Problem:
    return Problem(
        seq=seq,
        kind=kind,
        detail=detail,
        table="events",
        column=column,
        stream=stream,
    )


def _entry(seq: int, stream: str | None, column: str, what: str) -> Problem:
    """An ``entry`` problem: a stored column of the entry at ``seq`` is wrong."""
    return _problem(seq, "entry", f"entry at seq {seq}: {column} {what}", stream, column=column)


def _life(env: Envelope, what: str) -> Problem:
    return _problem(env.seq, "fold", f"entry at seq {env.seq}: {what}", env.stream)


def _agreement(env: Envelope) -> list[Problem]:
    """The entry's type and stream are its event's."""
    found = []
    tag = env.data.__struct_config__.tag
    if env.type != tag:
        what = f"{env.type!r} is not its event's {tag!r}"
        found.append(_entry(env.seq, env.stream, "type", what))
    stream = env.data.stream
    if env.stream != stream:
        found.append(
            _entry(env.seq, env.stream, "stream", f"{env.stream!r} is not its event's {stream!r}")
        )
    return found


def _times(env: Envelope) -> list[Problem]:
    """Times without a zone, or past what UTC can hold, in the entry's
    ``time`` or in its event."""
    found = []
    for column, path, when in (("time", "", env.time), *_event_times(env.data)):
        why = _bad_time(when)
        if why is not None:
            where = f" ({path})" if path else ""
            found.append(_entry(env.seq, env.stream, column, f"{when.isoformat()}{where} {why}"))
    return found


def _event_times(value: Any, path: str = "") -> Iterator[tuple[str, str, datetime]]:
    if isinstance(value, datetime):
        yield "data", path, value
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            yield from _event_times(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _event_times(item, f"{path}[{index}]")


def _bad_time(when: Any) -> str | None:
    if not isinstance(when, datetime):
        return "is not a time"
    if when.utcoffset() is None:
        return "has no time zone"
    try:
        when.astimezone(UTC)
    except (OverflowError, ValueError):
        return "is past what UTC can hold"
    return None


def entry_of_row(row: Sequence[RawValue], due: int) -> tuple[Entry | None, list[Problem]]:
    """The entry a stored ``events`` row holds (``None`` when its envelope
    columns are not of their types), and a problem for each column that does
    not decode. ``due`` is the ``seq`` the row should have (named when its
    own is not an integer)."""
    values: dict[str, Any] = dict(zip(_EVENTS, row, strict=False))
    seq = values["seq"] if type(values["seq"]) is int else due
    stream = values["stream"] if type(values["stream"]) is str else None
    found: list[Problem] = []

    def bad(column: str, what: str) -> None:
        found.append(_entry(seq, stream, column, what))

    texts = ("event_id", "stream", "type", "actor", "hash")
    for column in texts:
        if type(values[column]) is not str:
            bad(column, f"holds {show(values[column])}, not a text")
    for column in ("correlation_id", "causation_id"):
        if values[column] is not None and type(values[column]) is not str:
            bad(column, f"holds {show(values[column])}, not a text or NULL")
    for column in ("seq", "version"):
        if type(values[column]) is not int:
            bad(column, f"holds {show(values[column])}, not an integer")
    stored_hash = values["hash"]
    if type(stored_hash) is str and not _is_digest(stored_hash):
        bad("hash", f"holds {show(stored_hash)}, not a sha256 in hex")
    when: datetime | None = None
    if type(values["time"]) is str:
        try:
            when = datetime.fromisoformat(values["time"])
        except ValueError:
            bad("time", f"holds {show(values['time'])}, not an RFC 3339 time")
    else:
        bad("time", f"holds {show(values['time'])}, not a text")
    data = values["data"]
    event: Any = None
    if type(data) is bytes:
        try:
            event = decode_event(data)
        except (msgspec.DecodeError, ValueError, TypeError) as exc:
            bad("data", f"does not decode as an event: {exc}")
    else:
        bad("data", f"holds {show(data)}, not the event's JSON bytes")
    if when is None or any(p.column not in ("data", "hash") for p in found):
        return None, found  # an envelope cannot be made of it
    envelope = Envelope(
        seq=seq,
        event_id=values["event_id"],
        stream=values["stream"],
        version=values["version"],
        type=values["type"],
        time=when,
        actor=values["actor"],
        correlation_id=values["correlation_id"],
        causation_id=values["causation_id"],
        data=_PLACEHOLDER if event is None else event,
        hash=stored_hash if type(stored_hash) is str else "",
    )
    return Entry(record=Record(envelope, _bytes_of(data)), decoded=event is not None), found


def _bytes_of(value: RawValue) -> bytes:
    """The bytes the chain is checked over, for a ``data`` of any storage class."""
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return b"" if value is None else str(value).encode()


def _is_digest(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def show(value: RawValue) -> str:
    """A stored value, short, with its storage class."""
    if value is None:
        return "NULL"
    if isinstance(value, RawText):
        return f"a text that is not UTF-8 ({bytes(value[:20])!r})"
    kind = {bool: "integer", int: "integer", float: "real", str: "text"}.get(type(value), "blob")
    text = repr(value if not isinstance(value, bytes) else bytes(value))
    return f"the {kind} {text[:40]}{'…' if len(text) > 40 else ''}"
