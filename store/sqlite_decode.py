"""Reading SQLite rows back: each stored value decoded into ours, with a
typed error (``CorruptionError`` for damage, ``StorageError`` otherwise)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from jobledger.core import (
    GENESIS_HASH,
    Asset,
    CorruptionError,
    Envelope,
    Job,
    Mark,
    Queue,
    Resource,
    StorageError,
    decode_event,
)

from .protocol import Head, RawText, RawValue, Record

__all__: list[str] = []

T = TypeVar("T")
_job_decoder = msgspec.json.Decoder(Job)
_mark_decoder = msgspec.json.Decoder(Mark)
_asset_decoder = msgspec.json.Decoder(Asset)
_resource_decoder = msgspec.json.Decoder(Resource)
_queue_decoder = msgspec.json.Decoder(Queue)


class _QueueOf(msgspec.Struct):
    """The one field of a job's document that counting by queue reads."""

    queue: str = "default"


_queue_of_decoder = msgspec.json.Decoder(_QueueOf)


_DAMAGED = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB


def _storage_error(exc: sqlite3.Error, message: str) -> StorageError:
    """Our error for an sqlite3 one: ``CorruptionError`` when SQLite says the
    file is damaged or not a database, ``StorageError`` otherwise."""
    if getattr(exc, "sqlite_errorcode", None) in _DAMAGED or "decode to UTF-8" in str(exc):
        return CorruptionError(message)  # (the second: a stored text that is not UTF-8)
    return StorageError(message)


def _envelope(row: Sequence[Any]) -> Envelope:
    try:
        return Envelope(
            seq=row[0],
            event_id=row[1],
            stream=row[2],
            version=row[3],
            type=row[4],
            time=datetime.fromisoformat(row[5]),
            actor=row[6],
            correlation_id=row[7],
            causation_id=row[8],
            data=decode_event(row[9]),
            hash=row[10],
        )
    except (msgspec.DecodeError, ValueError, TypeError) as exc:
        raise CorruptionError(f"event at seq {row[0]} does not decode: {exc}") from exc


def _envelopes(rows: Sequence[Sequence[Any]]) -> list[Envelope]:
    """The envelopes of a chunk of rows: as :func:`_envelope` row by row, in
    one loop (this is the hot loop of every scan, replay and rebuild)."""
    parse, decode = datetime.fromisoformat, decode_event
    try:
        return [
            Envelope(
                seq=seq,
                event_id=event_id,
                stream=stream,
                version=version,
                type=type_,
                time=parse(time),
                actor=actor,
                correlation_id=correlation_id,
                causation_id=causation_id,
                data=decode(data),
                hash=digest,
            )
            for (
                seq,
                event_id,
                stream,
                version,
                type_,
                time,
                actor,
                correlation_id,
                causation_id,
                data,
                digest,
            ) in rows
        ]
    except (msgspec.DecodeError, ValueError, TypeError):
        for row in rows:  # find the row, for a message that names its seq
            _envelope(row)
        raise


def _record(row: Sequence[Any]) -> Record:
    return Record(_envelope(row), bytes(row[9]))


def _decoded(decoder: msgspec.json.Decoder[T], doc: bytes, kind: str) -> T:
    """``doc`` decoded, or ``CorruptionError`` naming the ``kind`` of row
    whose document it is (damaged JSON, text that is not UTF-8, or a value
    of another storage type: ``TypeError``)."""
    try:
        return decoder.decode(doc)
    except (msgspec.DecodeError, UnicodeDecodeError, TypeError) as exc:
        raise CorruptionError(f"{kind} row does not decode: {exc}") from exc


def _decode_job(doc: bytes) -> Job:
    return _decoded(_job_decoder, doc, "job")


def _decode_mark(doc: bytes) -> Mark:
    return _decoded(_mark_decoder, doc, "mark")


def _decode_resource(doc: bytes) -> Resource:
    return _decoded(_resource_decoder, doc, "resource")


def _decode_queue(doc: bytes) -> Queue:
    return _decoded(_queue_decoder, doc, "queue")


def _running_by_queue(docs: Sequence[bytes], names: Sequence[str]) -> dict[str, int]:
    """How many of the running jobs' documents ``docs`` are in each of ``names``."""
    wanted = dict.fromkeys(names, 0)
    for doc in docs:
        name = _decoded(_queue_of_decoder, doc, "job").queue
        if name in wanted:
            wanted[name] += 1
    return wanted


def _decode_asset(doc: bytes) -> Asset:
    return _decoded(_asset_decoder, doc, "asset")


def _raw_value(value: Any, is_text: Any) -> RawValue:
    """A stored value as ``raw_rows`` yields it: a text (read as its bytes)
    decoded, or kept as :class:`RawText` when it is not UTF-8."""
    if not is_text:
        return value  # type: ignore[no-any-return]
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return RawText(value)


def _head_of(row: Sequence[Any] | None) -> Head:
    """The head from its row (``None``: an empty log); a row of the wrong
    types (damage SQLite's dynamic typing lets through) is ``CorruptionError``."""
    if row is None:
        return Head(0, GENESIS_HASH)
    seq, digest = row
    if not isinstance(seq, int) or not isinstance(digest, str):
        raise CorruptionError(f"the log's last entry is damaged: seq {seq!r}, hash {digest!r}")
    return Head(seq, digest)


def _checkpoint_of(value: Any) -> int:
    """The read model's checkpoint from its stored text (0 if there is none)."""
    if value is None:
        return 0
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise CorruptionError(f"the read model's checkpoint is damaged: {value!r}") from exc
