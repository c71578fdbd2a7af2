"""Replay and verification over any :class:`~jobledger.store.EventLog`.

Both read the log alone, streaming it in chunks, and fold it with the same
pure functions the Stower uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import msgspec

from jobledger.core import GENESIS_HASH, Projection, chain_hash

from .protocol import EventLog, Head, Problem, VerifyReport

__all__ = ["replay", "verify", "verify_view"]


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


async def verify(log: EventLog) -> VerifyReport:
    """Walk the whole log and compare it with the read model, both as they
    were at one instant (writes may go on meanwhile).

    See :func:`verify_view` for what is reported.
    """
    async with log.frozen() as view:
        return await verify_view(view)


async def verify_view(log: EventLog) -> VerifyReport:
    """Walk the whole log and compare it with the read model.

    Reports, each with its ``seq``: a gap or repeat in ``seq``, a stream whose
    versions are not contiguous, an entry whose hash (over its exact stored
    bytes) does not match the chain (the chain then continues from the stored
    hash, so one edit is reported once), and every job or mark where the read
    model differs from a fresh replay (named by the ``seq`` of the last event
    of its stream; 0 if the log has none).
    """
    problems: list[Problem] = []
    versions: dict[str, int] = {}
    previous = GENESIS_HASH
    expected_seq = 1
    count = 0
    model = Projection()
    last_seq: dict[str, int] = {}
    async for record in log.scan_records():
        env = record.envelope
        count += 1
        if env.seq != expected_seq:
            problems.append(Problem(seq=env.seq, kind="gap", detail=f"expected seq {expected_seq}"))
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
        model.apply(env)
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
    return VerifyReport(head=Head(head.seq, head.hash), events=count, problems=tuple(problems))
