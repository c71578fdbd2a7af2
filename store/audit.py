"""Replay, rebuild, verification, export and import, written once over the
backend protocols (:mod:`jobledger.store.protocol`).

All of them read the log alone, streaming it in chunks, and fold it with the
same pure functions the Stower uses.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Final, TypeVar

import msgspec

from jobledger.core import (
    GENESIS_HASH,
    ContentStore,
    CorruptionError,
    Envelope,
    NotFound,
    Projection,
    Resource,
    StorageError,
    ValidationError,
    decode_event,
    get_logger,
)

from .protocol import (
    TABLES,
    AuditSource,
    Backend,
    Changes,
    EventLog,
    Head,
    Problem,
    RawValue,
    Record,
    VerifyReport,
)
from .rows import (
    asset_row,
    checkpoint_row,
    doc_type,
    job_row,
    mark_row,
    queue_row,
    resource_row,
)
from .sqlite_decode import _checkpoint_of
from .walk import Entry, Walk, entry_of_row, show

__all__ = [
    "LogLine",
    "catch_up",
    "copy_log",
    "export_log",
    "import_log",
    "rebuild",
    "replay",
    "verify",
    "verify_view",
]

_log = get_logger("store")

IMPORT_CHUNK = 5_000
"""Entries appended to the transaction at a time while importing."""

IMPORT_SPOOL = 64 * 1024 * 1024
"""Bytes of checked lines an import keeps in memory before spooling them to a temporary file."""

T = TypeVar("T")


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
_encode = msgspec.json.Encoder().encode
_line_decoder = msgspec.json.Decoder(LogLine)


async def replay(
    log: EventLog, *, until_seq: int | None = None, until: datetime | None = None
) -> Projection:
    """The state as of a past point, from the log alone.

    ``until_seq`` stops after that ``seq``. ``until`` stops before the first
    event whose time is after it: the state is that of the longest prefix of
    the log written up to ``until`` (the order of the log, never the wall
    clock, decides what came first). Streams the log.
    """
    model = Projection()
    async for env in log.scan(0, until_seq):
        if until is not None and env.time > until:
            break
        model.apply(env)
    return model


async def rebuild(log: EventLog) -> int:
    """Recompute the read model from the log alone, in one write transaction
    (no other writer appends meanwhile); returns the events folded. Raises
    ``CorruptionError`` for an entry that does not decode, and then changes
    nothing."""
    async with log.write() as writer:
        head = await writer.head()
        model = Projection()
        count = 0
        async for env in log.scan(0, head.seq):
            model.apply(env)
            count += 1
        writer.replace_read_model(model)
    _log.info("read model rebuilt", events=count, jobs=len(model.jobs))
    return count


async def catch_up(log: EventLog, head: Head, checkpoint: object) -> None:
    """On open: fold log entries past the read model's ``checkpoint`` (its
    stored value, read in one snapshot with ``head``), by a rebuild, when a
    crashed older version or a hand left the read model behind. A damaged
    checkpoint, or an entry that does not decode, is left as it is for
    ``verify`` to name (a rebuild would hide it); a checkpoint past the head
    is ``CorruptionError``."""
    try:
        folded = _checkpoint_of(checkpoint)
    except CorruptionError:
        _log.warning("the read model's checkpoint is damaged; verify names it", value=checkpoint)
        return
    if folded == head.seq:
        return
    if folded > head.seq:
        raise CorruptionError(f"read model checkpoint {folded} is past the log head {head.seq}")
    _log.warning("read model behind the log; rebuilding", checkpoint=folded, head=head.seq)
    try:
        await rebuild(log)
    except CorruptionError as exc:  # a damaged entry: nothing was rebuilt
        _log.warning("the read model cannot be rebuilt; verify names why", error=str(exc))


async def verify(
    log: Backend, *, digest: Head | None = None, content: ContentStore | None = None
) -> VerifyReport:
    """Walk the whole log and compare it with the read model, both as they
    were at one instant (writes may go on meanwhile).

    See :func:`verify_view` for what is reported.
    """
    async with log.frozen() as view:
        return await verify_view(view, digest=digest, content=content)


_ENTITIES: Final = {
    "jobs": "job",
    "marks": "mark",
    "assets": "asset",
    "resources": "resource",
    "queues": "queue",
}
"""The read-model tables that hold one entity a row, and the entity's name."""


async def verify_view(
    log: Backend, *, digest: Head | None = None, content: ContentStore | None = None
) -> VerifyReport:
    """Walk the whole log and compare every stored row of the read model with
    a replay, reading both as stored (``raw_rows``), undecoded.

    Never raises for what the log or the read model holds: each thing found
    is a :class:`Problem`, and the problems come in ``seq`` order (``seq`` 0,
    not tied to an entry, first). Only a failed read raises
    (``StorageError``). Reports: damage the storage itself finds (kind
    ``integrity``, ``seq`` 0); for each entry, a column that is not of its
    type or does not decode (``entry``, naming the column), a ``seq`` out of
    turn (``gap``, named by the first missing one) or a repeat, a stream
    version out of turn (``version``), a hash that does not chain over the
    exact stored bytes (``hash``; the chain then goes on from the stored
    hash, so one edit is reported once), an entry its stream's life does not
    allow or that does not fold (``fold``); for each row of the read model,
    every column that differs from the row a replay makes (``read_model``,
    naming the entity, the column and the ``seq`` of the last event of its
    stream, 0 if it has none), a row missing or one too many, and a
    checkpoint other than the log's last ``seq`` (``checkpoint``). With a
    ``digest`` (a head taken earlier and kept elsewhere), a log whose entry at
    the digest's ``seq`` has another hash, or that ends before it
    (``digest``). With a ``content`` store, every resource whose content is
    missing or no longer matches its digest (``content``, at the ``seq`` of
    its ``resource.created``).
    """
    problems: list[Problem] = [
        Problem(seq=0, kind="integrity", detail=finding) for finding in await log.integrity()
    ]
    walk = Walk()
    head = Head(0, GENESIS_HASH)
    async for row in log.raw_rows("events"):
        entry, found = entry_of_row(row, walk.due)
        if entry is None:
            seq = row[0] if type(row[0]) is int else walk.due
            stored_hash = row[10] if len(row) > 10 and type(row[10]) is str else None
            problems += walk.advance(seq, stored_hash)
            problems += found
            head = Head(seq, stored_hash or "")
        else:
            problems += found
            problems += walk.step(entry)
            head = Head(entry.record.envelope.seq, entry.record.envelope.hash)
        if digest is not None and head.seq == digest.seq and head.hash != digest.hash:
            problems.append(
                Problem(
                    seq=head.seq,
                    kind="digest",
                    detail=f"hash {head.hash[:16]}… where the digest has {digest.hash[:16]}…",
                )
            )
    if digest is not None and digest.seq > walk.head_seq:
        problems.append(
            Problem(
                seq=digest.seq,
                kind="digest",
                detail=f"the log ends at seq {walk.head_seq}, before the digest's seq",
            )
        )
    model = walk.model
    problems += await _compare_meta(log, walk.head_seq)
    for table, rows in (
        ("jobs", {k: _row_or_none(job_row, v) for k, v in model.jobs.items()}),
        ("marks", {k: _row_or_none(mark_row, v) for k, v in model.marks.items()}),
        ("assets", {k: _row_or_none(asset_row, v) for k, v in model.assets.items()}),
        ("resources", {k: _row_or_none(resource_row, v) for k, v in model.resources.items()}),
    ):
        problems += await _compare_table(log, table, rows, walk.last_seq)
    problems += await _compare_table(
        log,
        "queues",
        {k: _row_or_none(queue_row, v) for k, v in model.queues.items()},
        {k: walk.last_seq.get(f"queue:{k}", 0) for k in model.queues},
    )
    if content is not None:
        problems.extend(await _check_content(content, model.resources.values()))
    problems.sort(key=lambda p: p.seq)  # stable: within a seq, in the order found
    return VerifyReport(head=head, events=walk.count, problems=tuple(problems))


def _row_or_none(make: Callable[[T], tuple[Any, ...]], value: T) -> tuple[Any, ...] | None:
    """The row ``make`` makes of ``value``; ``None`` when a replayed value
    cannot be stored (a fold of damaged entries), which the row then shows."""
    try:
        return make(value)
    except (OverflowError, ValueError, TypeError, AttributeError):
        return None


async def _compare_meta(log: AuditSource, seq: int) -> list[Problem]:
    """The checkpoint row against the log's last ``seq``; any other ``meta`` row is extra."""
    found: list[Problem] = []
    want = checkpoint_row(seq)
    seen = False
    async for row in log.raw_rows("meta"):
        key = row[0]
        if key != want[0] or seen:
            found.append(
                Problem(
                    seq=0,
                    kind="read_model",
                    detail=f"meta: a row {show(key)} that this jobledger does not keep",
                    table="meta",
                    column="key",
                )
            )
            continue
        seen = True
        value = row[1] if len(row) > 1 else None
        if not _same(value, want[1]):
            found.append(
                Problem(
                    seq=seq,
                    kind="checkpoint",
                    detail=f"read model at checkpoint {show(value)}, log at seq {seq}",
                    table="meta",
                    column="value",
                )
            )
    if not seen:
        found.append(
            Problem(
                seq=seq,
                kind="checkpoint",
                detail=f"the read model has no checkpoint; the log is at seq {seq}",
                table="meta",
                column="value",
            )
        )
    return found


async def _compare_table(
    log: AuditSource,
    table: str,
    expected: Mapping[str, tuple[Any, ...] | None],
    last_seq: Mapping[str, int],
) -> list[Problem]:
    """Every stored row of ``table`` against the row a replay makes, column by column."""
    found: list[Problem] = []
    entity = _ENTITIES[table]
    columns = TABLES[table]
    seen: set[str] = set()

    def problem(key: str | None, column: str | None, detail: str) -> None:
        seq = last_seq.get(key, 0) if key is not None else 0
        found.append(
            Problem(
                seq=seq,
                kind="read_model",
                detail=detail,
                table=table,
                column=column,
                stream=key,
            )
        )

    async for row in log.raw_rows(table):
        key = row[0] if type(row[0]) is str else None
        if key is None or key not in expected:
            name = f"{entity} {key!r}" if key is not None else f"a {entity} with id {show(row[0])}"
            problem(key, columns[0], f"{name} is in the read model, not in the replay")
            continue
        if key in seen:
            problem(key, columns[0], f"{entity} {key!r} has more than one row in the read model")
            continue
        seen.add(key)
        want = expected[key]
        for index, column in enumerate(columns[1:], start=1):
            have = row[index] if index < len(row) else None
            if want is not None and _same_column(table, column, have, want[index]):
                continue
            shown = "a value it cannot store" if want is None else show(want[index])
            problem(
                key,
                column,
                f"{entity} {key!r}: {column} holds {show(have)} where the replay has {shown}",
            )
    for key in sorted(expected.keys() - seen):
        problem(key, None, f"{entity} {key!r} is missing from the read model")
    return found


def _same(have: RawValue, want: Any) -> bool:
    """The same value in the same storage class."""
    return type(have) is type(want) and have == want


def _same_column(table: str, column: str, have: RawValue, want: Any) -> bool:
    if _same(have, want):
        return True
    model = doc_type(table)
    if column != "doc" or model is None or type(have) is not bytes:
        return False
    # A document written by an older jobledger (before a field with a default
    # was added) reads as the same document: it is the same.
    try:
        return bool(_encode(msgspec.json.decode(have, type=model)) == want)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return False


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

    Every line is checked before anything is written: it must decode as a
    :class:`LogLine` whose ``data`` is an event of a known type, with the
    entry's ``type`` and ``stream`` its event's, and follow on from the lines
    before it (the next ``seq``, the next version of its stream, a hash that
    chains, an event id not seen before, times with a zone that UTC can
    hold); it must be an entry the life of its stream allows (after its
    stream's creation, not after its job ended or was deleted, a status
    move the transition table allows, no idempotency key held twice) and it
    must fold with the functions the Stower uses. The first line that fails
    is refused with ``ValidationError`` (``field`` is ``"line N"``), as is a
    log that is not empty; then nothing is written. The checked lines are
    kept in a spooled temporary file (in memory up to ``IMPORT_SPOOL``
    bytes) and written in one transaction: all or nothing.
    """
    if (await log.head()).seq != 0:
        raise ValidationError(_NOT_EMPTY)
    walk = Walk()
    with tempfile.SpooledTemporaryFile(max_size=IMPORT_SPOOL) as spool:
        async for number, line in _numbered(lines):
            raw = (line.encode() if isinstance(line, str) else bytes(line)).strip()
            if not raw:
                continue
            found = walk.step(Entry(record=_record_of(number, raw)))
            if found:
                raise ValidationError(found[0].detail, field=f"line {number}")
            spool.write(raw + b"\n")
        spool.seek(0)
        batch: list[Record] = []
        async with log.write() as writer:
            if (await writer.head()).seq != 0:
                raise ValidationError(_NOT_EMPTY)
            for number, raw in enumerate(spool, start=1):
                batch.append(_record_of(number, raw))
                if len(batch) > IMPORT_CHUNK:  # the last of it goes with the read model
                    await writer.append(batch[:-1], Changes())
                    batch = batch[-1:]
            await writer.append(batch, Changes.of(walk.model))
    return walk.count


_NOT_EMPTY = "the log is not empty: import only into an empty log"


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


def _record_of(number: int, raw: bytes) -> Record:
    """The record of one export line, decoded (``ValidationError`` naming the
    line when it is not a log entry of a known event type)."""
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
    except (msgspec.DecodeError, ValueError, TypeError) as exc:
        raise ValidationError(f"not a log entry: {exc}", field=f"line {number}") from exc
    return Record(envelope, data)


async def copy_log(
    source: Backend,
    target: Backend,
    source_content: ContentStore,
    target_content: ContentStore,
) -> Head:
    """Copy the whole log of ``source`` into the empty ``target`` (another
    backend, say from SQLite to PostgreSQL): first every resource's content,
    then every entry with its exact bytes and hash, through the checks of
    :func:`import_log` (all or nothing, the read model built from the copy).
    Returns the target's head, the same as the source's: ``verify`` with it
    as the digest passes on the copy. A target that is not empty is refused
    (``ValidationError``) before anything is copied."""
    if (await target.head()).seq != 0:
        raise ValidationError(_NOT_EMPTY)
    after = 0
    while page := await source.list_resources(after_seq=after, limit=500):
        for resource in page:
            await target_content.put(await source_content.get(resource.digest))
        after = page[-1].created_seq
    count = await import_log(target, export_log(source))
    head = await target.head()
    _log.info("log copied", events=count, head=head.text)
    return head
