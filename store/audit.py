"""Replay, verification, export and import over any :class:`~jobledger.store.EventLog`.

All of them read the log alone, streaming it in chunks, and fold it with the
same pure functions the Stower uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from datetime import datetime

import msgspec

from jobledger.core import (
    GENESIS_HASH,
    ContentStore,
    CorruptionError,
    Envelope,
    JobledgerError,
    NotFound,
    Projection,
    Resource,
    StorageError,
    ValidationError,
    chain_hash,
    decode_event,
)

from .protocol import Changes, EventLog, Head, Problem, Record, VerifyReport

__all__ = ["LogLine", "export_log", "import_log", "replay", "verify", "verify_view"]

IMPORT_CHUNK = 5_000
"""Entries appended to the transaction at a time while importing."""


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of an export: an envelope with its event's exact stored bytes
    (``data``, spliced in as raw JSON), so the hashes check after an import."""

    seq: int
    event_id: str
    stream: str
    version: int
    type: str
    time: datetime
    actor: str
    correlation_id: str | None = None
    causation_id: str | None = None
    data: msgspec.Raw
    hash: str


_line_encoder = msgspec.json.Encoder()
_line_decoder = msgspec.json.Decoder(LogLine)


async def replay(
    log: EventLog, *, until_seq: int | None = None, until: datetime | None = None
) -> Projection:
    """The state as of a past point, from the log alone.

    ``until_seq`` stops after that ``seq``. ``until`` stops before the first
    event whose time is after it: the state is that of the longest prefix of
    the log written up to ``until`` (the order of the log, never the wall
    clock, decides what came first).
    """
    return await log.replay(until_seq=until_seq, until=until)


async def verify(
    log: EventLog, *, digest: Head | None = None, content: ContentStore | None = None
) -> VerifyReport:
    """Walk the whole log and compare it with the read model, both as they
    were at one instant (writes may go on meanwhile).

    See :func:`verify_view` for what is reported.
    """
    async with log.frozen() as view:
        return await verify_view(view, digest=digest, content=content)


async def verify_view(
    log: EventLog, *, digest: Head | None = None, content: ContentStore | None = None
) -> VerifyReport:
    """Walk the whole log and compare it with the read model.

    Reports, each with its ``seq``: damage the storage itself finds (pages,
    indexes; ``seq`` 0), a gap in ``seq`` (named by the first
    missing one) or a repeat, a stream whose
    versions are not contiguous, an entry whose hash (over its exact stored
    bytes) does not match the chain (the chain then continues from the stored
    hash, so one edit is reported once), and every job or mark where the read
    model differs from a fresh replay (named by the ``seq`` of the last event
    of its stream; 0 if the log has none). With a ``digest`` (a head taken
    earlier and kept elsewhere), a log whose entry at the digest's ``seq``
    has another hash, or that ends before it, is reported too. With a
    ``content`` store, every resource whose content is missing or no longer
    matches its digest is reported (kind ``content``, at the ``seq`` of its
    ``resource.created``).
    """
    problems: list[Problem] = [
        Problem(seq=0, kind="integrity", detail=finding) for finding in await log.integrity()
    ]
    versions: dict[str, int] = {}
    previous = GENESIS_HASH
    expected_seq = 1
    count = 0
    model = Projection()
    last_seq: dict[str, int] = {}
    async for record in log.scan_records():
        env = record.envelope
        count += 1
        if env.seq > expected_seq:
            missing = f"seq {expected_seq}" + (
                f" to {env.seq - 1}" if env.seq > expected_seq + 1 else ""
            )
            problems.append(Problem(seq=expected_seq, kind="gap", detail=f"{missing} missing"))
        elif env.seq < expected_seq:
            problems.append(
                Problem(
                    seq=env.seq, kind="gap", detail=f"seq {env.seq} where {expected_seq} was due"
                )
            )
        expected_seq = env.seq + 1
        want_version = versions.get(env.stream, 0) + 1
        if env.version != want_version:
            problems.append(
                Problem(
                    seq=env.seq,
                    kind="version",
                    detail=f"stream {env.stream!r} has version {env.version}, "
                    f"expected {want_version}",
                )
            )
        versions[env.stream] = env.version
        computed = chain_hash(previous, env, record.data)
        if computed != env.hash:
            problems.append(
                Problem(seq=env.seq, kind="hash", detail="hash does not match the chain")
            )
        previous = env.hash
        last_seq[env.stream] = env.seq
        if digest is not None and env.seq == digest.seq and env.hash != digest.hash:
            problems.append(
                Problem(
                    seq=env.seq,
                    kind="digest",
                    detail=f"hash {env.hash[:16]}… where the digest has {digest.hash[:16]}…",
                )
            )
        try:
            model.apply(env)
        except JobledgerError as exc:  # an event that does not fold (edited or invented)
            problems.append(Problem(seq=env.seq, kind="fold", detail=str(exc)))
    if digest is not None and digest.seq > model.seq:
        problems.append(
            Problem(
                seq=digest.seq,
                kind="digest",
                detail=f"the log ends at seq {model.seq}, before the digest's seq",
            )
        )
    stored = await log.snapshot()
    head = await log.head()
    if stored.seq != model.seq:
        problems.append(
            Problem(
                seq=stored.seq,
                kind="checkpoint",
                detail=f"read model at seq {stored.seq}, log at {model.seq}",
            )
        )
    entities: tuple[tuple[str, Mapping[str, msgspec.Struct], Mapping[str, msgspec.Struct]], ...] = (
        ("job", stored.jobs, model.jobs),
        ("mark", stored.marks, model.marks),
        ("asset", stored.assets, model.assets),
        ("resource", stored.resources, model.resources),
    )
    for kind, mine, theirs in entities:
        for key in sorted(mine.keys() | theirs.keys()):
            a, b = mine.get(key), theirs.get(key)
            if a is None or b is None or msgspec.json.encode(a) != msgspec.json.encode(b):
                problems.append(
                    Problem(
                        seq=last_seq.get(key, 0),
                        kind="read_model",
                        detail=f"{kind} {key!r} differs from replay",
                    )
                )
    if content is not None:
        problems.extend(await _check_content(content, model.resources.values()))
    return VerifyReport(head=Head(head.seq, head.hash), events=count, problems=tuple(problems))


async def _check_content(content: ContentStore, resources: Iterable[Resource]) -> list[Problem]:
    found: list[Problem] = []
    for resource in sorted(resources, key=lambda r: r.created_seq):
        name = f"resource {resource.id!r}: its content {resource.digest[:20]}…"
        try:
            await content.get(resource.digest)
        except NotFound:
            detail = f"{name} is missing"
        except CorruptionError:
            detail = f"{name} no longer matches it"
        except ValidationError:
            detail = f"resource {resource.id!r}: {resource.digest[:20]!r} is not a content digest"
        except StorageError as exc:
            detail = f"{name} cannot be read: {exc}"
        else:
            continue
        found.append(Problem(seq=resource.created_seq, kind="content", detail=detail))
    return found


async def export_log(log: EventLog, after: int = 0) -> AsyncIterator[bytes]:
    """The log after ``after`` as NDJSON: one :class:`LogLine` a line, in
    ``seq`` order, each ending with a newline. Streams the log."""
    async for record in log.scan_records(after):
        env = record.envelope
        line = LogLine(
            seq=env.seq,
            event_id=env.event_id,
            stream=env.stream,
            version=env.version,
            type=env.type,
            time=env.time,
            actor=env.actor,
            correlation_id=env.correlation_id,
            causation_id=env.causation_id,
            data=msgspec.Raw(record.data),
            hash=env.hash,
        )
        yield _line_encoder.encode(line) + b"\n"


async def import_log(
    log: EventLog, lines: Iterable[bytes | str] | AsyncIterable[bytes | str]
) -> int:
    """Append an export's lines to an empty log, with the same hashes, and
    build its read model; returns the number of entries.

    All or nothing, in one transaction: ``ValidationError`` (naming the line)
    if the log is not empty, a line does not decode, the ``seq`` does not
    follow on, or a hash does not chain; then nothing is written.
    """
    model = Projection()
    batch: list[Record] = []
    previous, count = GENESIS_HASH, 0
    async with log.write() as writer:
        if (await writer.head()).seq != 0:
            raise ValidationError("the log is not empty: import only into an empty log")
        async for number, line in _numbered(lines):
            record = _record_of(number, line, count + 1, previous)
            if record is None:
                continue
            previous, count = record.envelope.hash, count + 1
            model.apply(record.envelope)
            batch.append(record)
            if len(batch) > IMPORT_CHUNK:  # the last of it goes with the read model
                await writer.append(batch[:-1], Changes())
                batch = batch[-1:]
        await writer.append(batch, Changes.of(model))
    return count


async def _numbered(
    lines: Iterable[bytes | str] | AsyncIterable[bytes | str],
) -> AsyncIterator[tuple[int, bytes | str]]:
    number = 0
    if isinstance(lines, AsyncIterable):
        async for line in lines:
            number += 1
            yield number, line
    else:
        for line in lines:
            number += 1
            yield number, line


def _record_of(number: int, line: bytes | str, seq: int, previous: str) -> Record | None:
    """The record of one export line (``None`` for a blank line), checked to
    be entry ``seq`` chained to ``previous``."""
    raw = line.encode() if isinstance(line, str) else line
    if not raw.strip():
        return None
    try:
        entry = _line_decoder.decode(raw)
        data = bytes(entry.data)
        envelope = Envelope(
            seq=entry.seq,
            event_id=entry.event_id,
            stream=entry.stream,
            version=entry.version,
            type=entry.type,
            time=entry.time,
            actor=entry.actor,
            correlation_id=entry.correlation_id,
            causation_id=entry.causation_id,
            data=decode_event(data),
            hash=entry.hash,
        )
    except (msgspec.DecodeError, ValueError) as exc:
        raise ValidationError(f"line {number}: not a log entry: {exc}", field="line") from exc
    if envelope.seq != seq:
        raise ValidationError(f"line {number}: seq {envelope.seq} where {seq} was due")
    if envelope.type != envelope.data.__struct_config__.tag:
        raise ValidationError(f"line {number}: type {envelope.type!r} is not its event's")
    if chain_hash(previous, envelope, data) != envelope.hash:
        raise ValidationError(f"line {number}: the hash of seq {seq} does not chain")
    return Record(envelope, data)
