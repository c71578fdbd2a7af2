"""The auditor's tools: replay at a past point, verification (every kind of
tampering, named by its seq), head digests, and export → import."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest

import jobledger
from jobledger import Job, JobContext, JobWorker
from jobledger.core import Projection
from jobledger.store import Head

from .conftest import note


class Steps(JobWorker):
    """Reports progress in two steps and makes a mark on the way."""

    job_types = ("steps",)
    progress_interval = 0.0

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        await ctx.progress(50, stage="first")
        await ctx.create_mark("doc", note("doc", job.id))
        await ctx.progress(100, stage="second")
        return {"done": job.params["n"]}


def encoded(value: Any) -> bytes:
    return msgspec.json.encode(value)


def state_of(model: Projection) -> dict[str, bytes]:
    """A projection as comparable bytes: its jobs, marks and assets."""
    return {
        "jobs": encoded(dict(sorted(model.jobs.items()))),
        "marks": encoded(dict(sorted(model.marks.items()))),
        "assets": encoded(dict(sorted(model.assets.items()))),
    }


async def observed(ledger: jobledger.Ledger) -> tuple[int, dict[str, bytes]]:
    """The state as the read model shows it now (what a user saw), with the
    seq it is at: both from one consistent view, as workers go on."""
    async with ledger._log.frozen() as view:
        model = await view.snapshot()
    return model.seq, state_of(model)


async def observed_state(ledger: jobledger.Ledger) -> dict[str, bytes]:
    return (await observed(ledger))[1]


async def test_replay_at_each_point_equals_the_state_observed_then(db_path: Path) -> None:
    async with jobledger.open(db_path, workers=[Steps()]) as ledger:
        seen = dict([await observed(ledger)])
        times = {}
        for n in range(3):
            job = await ledger.submit("steps", {"n": n}, user="alice")
            seen.update([await observed(ledger)])  # while the worker is at it
            done = await ledger.wait(job.id, timeout=10)
            seq, state = await observed(ledger)
            seen[seq] = state
            times[seq] = done.finished_at
        await ledger.cancel((await ledger.submit("steps", {"n": 9})).id)
        seen.update([await observed(ledger)])
        assert len(seen) >= 6
        for seq, state in seen.items():
            assert state_of(await ledger.replay(until_seq=seq)) == state, seq
        # By time: the longest prefix written up to that moment.
        for seq, moment in times.items():
            assert state_of(await ledger.replay(until=moment)) == seen[seq]
        assert state_of(await ledger.replay()) == await observed_state(ledger)


@pytest.fixture
async def filled(tmp_path: Path) -> Path:
    """A closed log of a few jobs, their marks and progress."""
    path = tmp_path / "audited.db"
    async with jobledger.open(path, workers=[Steps()]) as ledger:
        for n in range(3):
            await ledger.wait((await ledger.submit("steps", {"n": n})).id, timeout=10)
        assert (await ledger.verify()).ok
    return path


async def verify_copy(source: Path, tamper: str, *args: Any) -> list[tuple[int, str]]:
    """Tamper with a copy of ``source`` through raw SQL (statements separated
    by ``;`` run in turn); return verify's problems."""
    copy = source.with_name(f"tampered-{abs(hash((tamper, args)))}.db")
    shutil.copy(source, copy)
    conn = sqlite3.connect(copy)
    with conn:
        for statement in tamper.split(";"):
            conn.execute(statement, args if "?" in statement else ())
    conn.close()
    async with jobledger.open(copy) as ledger:
        report = await ledger.verify()
    return [(p.seq, p.kind) for p in report.problems]


async def test_every_kind_of_tampering_is_named_by_its_seq(filled: Path) -> None:
    # An edited payload (the same JSON meaning, other bytes): that entry's hash.
    edited = await verify_copy(
        filled, "UPDATE events SET data = CAST(' ' || CAST(data AS TEXT) AS BLOB) WHERE seq = 4"
    )
    assert edited[0] == (4, "hash")
    assert {kind for _, kind in edited} <= {"hash", "read_model"}
    # A deleted row: a gap named by the missing seq (and the chain breaks there).
    deleted = await verify_copy(filled, "DELETE FROM events WHERE seq = ?", 5)
    assert deleted[0] == (5, "gap") and (6, "hash") in deleted
    # Reordered rows: two entries swap places; the chain breaks at the first.
    swapped = await verify_copy(
        filled,
        "UPDATE events SET seq = -7 WHERE seq = 7; UPDATE events SET seq = 7 WHERE seq = 8;"
        " UPDATE events SET seq = 8 WHERE seq = -7",
    )
    assert swapped[0][0] == 7 and (7, "hash") in swapped
    # A changed hash: that entry, and the next one no longer chains to it.
    rehashed = await verify_copy(filled, "UPDATE events SET hash = ? WHERE seq = 2", "0" * 64)
    assert rehashed[:2] == [(2, "hash"), (3, "hash")]
    # A changed envelope field (the actor): that entry's hash.
    actor = await verify_copy(filled, "UPDATE events SET actor = 'mallory' WHERE seq = 3")
    assert actor == [(3, "hash")]
    # An edited read-model row: the entity, named by its stream's last seq.
    async with jobledger.open(filled) as ledger:
        first = (await ledger.list(limit=100)).jobs[-1]
        last_seq = (await ledger.history(first.id))[-1].seq
    row = await verify_copy(
        filled,
        "UPDATE jobs SET doc = replace(doc, '\"done\":0', '\"done\":1') WHERE id = ?",
        first.id,
    )
    assert row == [(last_seq, "read_model")]
    # And the untouched original is clean.
    async with jobledger.open(filled) as ledger:
        assert (await ledger.verify()).ok


async def test_a_digest_kept_elsewhere_finds_a_rewritten_or_cut_log(
    filled: Path, tmp_path: Path
) -> None:
    async with jobledger.open(filled) as ledger:
        digest = Head.parse((await ledger.digest()).text)
        assert (await ledger.verify(digest=digest)).ok
        head = await ledger.head()
    assert digest.seq == head
    # A whole new log of the same length, chained afresh: every hash is "valid".
    rewritten = tmp_path / "rewritten.db"
    async with jobledger.open(rewritten, workers=[Steps()]) as forger:
        while await forger.head() < head:
            await forger.submit("nobody-runs-this")
    async with jobledger.open(rewritten) as forger:
        report = await forger.verify(digest=digest)
    assert [(p.seq, p.kind) for p in report.problems if p.kind == "digest"] == [
        (digest.seq, "digest")
    ]
    # The log cut short: the rows after seq 4 deleted (a consistent prefix).
    cut = tmp_path / "cut.db"
    shutil.copy(filled, cut)
    conn = sqlite3.connect(cut)
    with conn:
        conn.execute("DELETE FROM events WHERE seq > 4")
        conn.execute("UPDATE meta SET value = '4' WHERE key = 'checkpoint'")
    conn.close()
    async with jobledger.open(cut) as ledger:
        await ledger.rebuild()
        assert (await ledger.verify()).ok  # on its own, a prefix looks fine
        report = await ledger.verify(digest=digest)
    assert [(p.seq, p.kind) for p in report.problems] == [(digest.seq, "digest")]
    with pytest.raises(jobledger.ValidationError):
        Head.parse("12:not-a-hash")


async def test_export_then_import_keeps_every_hash_and_the_state(
    filled: Path, tmp_path: Path
) -> None:
    async with jobledger.open(filled) as source:
        lines = [line async for line in source.export_log()]
        source_head = await source.digest()
        source_state = await observed_state(source)
        source_records = [(r.envelope, r.data) async for r in source._log.scan_records()]
    assert all(line.endswith(b"\n") for line in lines)
    assert len(lines) == source_head.seq
    copy = tmp_path / "copy.db"
    async with jobledger.open(copy) as target:
        assert await target.import_log(lines) == len(lines)
        assert await target.digest() == source_head
        assert (await target.verify(digest=source_head)).ok
        assert await observed_state(target) == source_state
        copied = [(r.envelope, r.data) async for r in target._log.scan_records()]
        assert copied == source_records  # the same envelopes and the same stored bytes
        # A second import into the now non-empty log is refused, writing nothing.
        with pytest.raises(jobledger.ValidationError, match="not empty"):
            await target.import_log(lines)
        assert await target.head() == source_head.seq
    # The export after a seq is the tail of the whole export.
    async with jobledger.open(filled) as source:
        assert [line async for line in source.export_log(after=5)] == lines[5:]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda lines: lines[:3] + lines[4:], "line 4: seq 5 where 4 was due"),
        (lambda lines: [*lines[:2], lines[2].replace(b'"actor":"', b'"actor":"x'), *lines[3:]],
         "line 3: hash does not match the chain at seq 3"),
        (lambda lines: [*lines[:1], b"{not json}\n", *lines[2:]], "line 2: not a log entry"),
    ],
)  # fmt: skip
async def test_a_damaged_export_is_refused_by_line_and_nothing_is_written(
    filled: Path, tmp_path: Path, damage: Any, message: str
) -> None:
    async with jobledger.open(filled) as source:
        lines = [line async for line in source.export_log()]
    async with jobledger.open(tmp_path / "refused.db") as target:
        with pytest.raises(jobledger.ValidationError, match=message):
            await target.import_log(damage(lines))
        assert await target.head() == 0
        assert (await target.list()).jobs == ()
        # The ledger goes on serving.
        job = await target.submit("after")
        assert (await target.get(job.id)).status == "pending"
        assert await target.head() == 1


FIXTURES = Path(__file__).parent / "fixtures"
ADDED_AFTER_V1 = {
    "mark.body_updated",  # issue 7: W3C marks, resources
    "resource.created",
    "job.released",  # issue 13: a worker that stops gives its job back
    "job.retried",  # issue 17: a failed, timed-out or cancelled job run again by hand
    "queue.configured",  # issue 16: queue capacity in the log
}


async def test_a_log_written_by_version_1_still_imports_and_replays_the_same(
    tmp_path: Path,
) -> None:
    """tests/fixtures/log-v1.ndjson holds every event type as jobledger wrote
    it when events were first versioned; it is never regenerated. Each later
    version must take it with the same hashes and fold it to the same state."""
    from .fixtures.make_log_v1 import state_json

    lines = (FIXTURES / "log-v1.ndjson").read_bytes().splitlines(keepends=True)
    types = {msgspec.json.decode(line)["type"] for line in lines}
    assert types == set(jobledger.core.EVENT_TYPES) - ADDED_AFTER_V1
    async with jobledger.open(tmp_path / "from-v1.db") as ledger:
        assert await ledger.import_log(lines) == len(lines)
        assert (await ledger.verify()).ok
        assert [line async for line in ledger.export_log()] == lines
        expected = (FIXTURES / "log-v1.state.json").read_bytes().strip()
        assert state_json(await ledger.replay()) == expected
        async with ledger._log.frozen() as view:
            assert state_json(await view.snapshot()) == expected


async def test_a_log_written_with_w3c_marks_and_resources_still_imports_the_same(
    tmp_path: Path,
) -> None:
    """tests/fixtures/log-v2.ndjson holds the event types added after v1 (W3C
    marks, body updates, resources); never regenerated, like log-v1. Its
    resources' content is not part of the log: verify names each as missing
    until the content folder is copied along."""
    from .fixtures.make_log_v2 import ADDED, state_json

    lines = (FIXTURES / "log-v2.ndjson").read_bytes().splitlines(keepends=True)
    later = {"job.released", "queue.configured", "job.retried"}  # (added after v2)
    assert ADDED_AFTER_V1 - later | {"mark.created"} == ADDED
    assert {msgspec.json.decode(line)["type"] for line in lines} >= ADDED
    async with jobledger.open(tmp_path / "from-v2.db") as ledger:
        assert await ledger.import_log(lines) == len(lines)
        assert [line async for line in ledger.export_log()] == lines
        expected = (FIXTURES / "log-v2.state.json").read_bytes().strip()
        assert state_json(await ledger.replay()) == expected
        report = await ledger.verify()
        assert [(p.kind, p.seq) for p in report.problems] == [("content", 4), ("content", 8)]
        await ledger.create_resource("again", b"# Ada\n")  # the content arrives
        await ledger.create_resource("again too", "plain notes")
        assert (await ledger.verify()).ok
        [mark] = await ledger.annotations("doc")
        assert mark["body"] == [
            {"type": "TextualBody", "value": "Person", "purpose": "tagging"},
            {
                "type": "TextualBody",
                "value": "A programmer.",
                "purpose": "commenting",
                "language": "en",
            },
        ]


# -- import refuses crafted lines (issue 13) ------------------------------------

T0 = "2026-11-23T12:00:00Z"


def crafted(*entries: dict[str, Any], chain: bool = True) -> list[bytes]:
    """Export lines for ``entries`` (each: ``stream`` and ``data``, and any
    envelope field to set), numbered and hash-chained as an export would be,
    so that only what an entry sets on purpose is wrong."""
    from jobledger.core import GENESIS_HASH, Envelope, chain_hash, decode_event

    lines, previous, versions = [], GENESIS_HASH, dict[str, int]()
    for seq, spec in enumerate(entries, start=1):
        spec = dict(spec)
        data = msgspec.json.encode(spec.pop("data"))
        stream = spec.pop("stream")
        versions[stream] = spec.get("version", versions.get(stream, 0) + 1)
        line: dict[str, Any] = {
            "seq": seq,
            "event_id": f"evt-{seq}",
            "stream": stream,
            "version": versions[stream],
            "type": msgspec.json.decode(data)["type"],
            "time": T0,
            "actor": "alice",
            "correlation_id": None,
            "causation_id": None,
        } | spec
        try:
            event = decode_event(data)
            env = msgspec.convert(
                {**line, "data": event, "hash": ""}, Envelope, from_attributes=True
            )
            digest = chain_hash(previous, env, data) if chain else "f" * 64
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError):
            digest = "0" * 64  # (an entry that does not decode: refused before the chain)
        previous = line["hash"] = spec.get("hash", digest)
        text = msgspec.json.encode({**line, "data": msgspec.Raw(data)})
        lines.append(text + b"\n")
    return lines


def created(job_id: str, **fields: Any) -> dict[str, Any]:
    data = {"type": "job.created", "job_id": job_id, "job_type": "t", "params": {}}
    return {"stream": job_id, "data": data | {"user": {"id": "alice"}} | fields}


def event(job_id: str, type_: str, **fields: Any) -> dict[str, Any]:
    extra = fields.pop("envelope", {})
    return {"stream": job_id, "data": {"type": type_, "job_id": job_id, **fields}, **extra}


STARTED = {"worker": "w", "attempt": 1, "lease_expires_at": "2026-11-23T12:01:00Z"}

CRAFTED: dict[str, tuple[list[bytes], int, str]] = {
    "a version that skips": (
        crafted(created("j1"), event("j1", "job.started", **STARTED, envelope={"version": 3})),
        2,
        "has version 3, expected 2",
    ),
    "a job id that is not its stream's": (
        crafted(created("j1"), {**event("j2", "job.started", **STARTED), "stream": "j1"}),
        2,
        "stream 'j1' is not its event's 'j2'",
    ),
    "an idempotency key held twice": (
        crafted(created("j1", idempotency_key="k"), created("j2", idempotency_key="k")),
        2,
        "idempotency key 'k' is held by job 'j1'",
    ),
    "a time without a zone": (
        crafted(created("j1"), created("j2") | {"time": "2026-11-23T12:00:00"}),
        2,
        "has no time zone",
    ),
    "a run_at without a zone": (
        crafted(created("j1", run_at="2026-11-24T12:00:00")),
        1,
        "(run_at) has no time zone",
    ),
    "a run_at past what UTC holds": (
        crafted(created("j1", run_at="9999-12-31T23:59:59-14:00")),
        1,
        "past what UTC can hold",
    ),
    "a seq gap": (
        crafted(created("j1"), created("j2"), created("j3"))[::2],
        2,
        "seq 3 where 2 was due",
    ),
    "a hash that does not chain": (
        crafted(created("j1"), created("j2"), chain=False),
        1,
        "hash does not match the chain at seq 1",
    ),
    "an unknown event type": (
        crafted(created("j1"), event("j1", "job.exploded")),
        2,
        "not a log entry",
    ),
    "an event before its stream's creation": (
        crafted(event("j1", "job.started", **STARTED)),
        1,
        "job.started before its stream's job.created",
    ),
    "an event after the job's deletion": (
        crafted(created("j1"), event("j1", "job.deleted"), event("j1", "job.resumed")),
        3,
        "job.resumed after the job was deleted",
    ),
    "an event after the job ended": (
        crafted(created("j1"), event("j1", "job.cancelled"), event("j1", "job.started", **STARTED)),
        3,
        "after the job ended (cancelled)",
    ),
    "a move decide refuses": (
        crafted(created("j1"), event("j1", "job.completed", attempt=1)),
        2,
        "from pending to completed, which the transition table refuses",
    ),
    "a deletion of a running job": (
        crafted(created("j1"), event("j1", "job.started", **STARTED), event("j1", "job.deleted")),
        3,
        "job.deleted while the job runs",
    ),
    "a job created twice": (
        crafted(created("j1"), created("j1")),
        2,
        "job.created again",
    ),
    "an event id seen before": (
        crafted(created("j1"), created("j2") | {"event_id": "evt-1"}),
        2,
        "'evt-1' seen before",
    ),
    "a type that is not its event's": (
        crafted(created("j1"), created("j2") | {"type": "job.started"}),
        2,
        "'job.started' is not its event's 'job.created'",
    ),
    "a data that is not an object": (
        [*crafted(created("j1")), crafted(created("j2"))[0].replace(b'"data":{', b'"data":[{')],
        2,
        "not a log entry",
    ),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
async def test_import_refuses_a_crafted_line_by_number_and_writes_nothing(
    tmp_path: Path, case: str
) -> None:
    lines, number, words = CRAFTED[case]
    async with jobledger.open(tmp_path / "crafted.db") as ledger:
        with pytest.raises(jobledger.ValidationError) as caught:
            await ledger.import_log(lines)
        assert type(caught.value) is jobledger.ValidationError
        assert caught.value.field == f"line {number}"
        assert str(caught.value).startswith(f"line {number}: ")
        assert words in str(caught.value)
        assert await ledger.head() == 0
        assert (await ledger.list()).jobs == ()
    # Each crafted log is well formed up to the line refused.
    async with jobledger.open(tmp_path / "prefix.db") as ledger:
        assert await ledger.import_log(lines[: number - 1]) == number - 1


async def test_a_big_import_that_fails_late_leaves_the_log_empty(tmp_path: Path) -> None:
    from jobledger.store.audit import IMPORT_CHUNK

    good = crafted(*(created(f"j{n}") for n in range(IMPORT_CHUNK + 50)))
    bad = crafted(*(created(f"j{n}") for n in range(IMPORT_CHUNK + 50)), created("j0"))
    async with jobledger.open(tmp_path / "big.db") as ledger:
        with pytest.raises(jobledger.ValidationError, match=f"line {len(bad)}: "):
            await ledger.import_log(bad)
        assert await ledger.head() == 0

        async def broken() -> Any:
            for line in good[:-10]:
                yield line
            raise OSError("the disk went away")

        with pytest.raises(OSError, match="went away"):
            await ledger.import_log(broken())
        assert await ledger.head() == 0
        assert await ledger.import_log(good) == len(good)
        assert (await ledger.verify()).ok


def test_jobledger_import_refuses_a_crafted_file_and_leaves_the_log_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobledger.cli import main

    lines, number, words = CRAFTED["an idempotency key held twice"]
    export = tmp_path / "crafted.ndjson"
    export.write_bytes(b"".join(lines))
    fresh, existing = tmp_path / "fresh.db", tmp_path / "existing.db"
    assert main(["import", str(export), "--db", str(fresh)]) == 2  # bad input
    assert f"line {number}" in capsys.readouterr().err
    assert not fresh.exists()  # the file the import made is gone with it
    sqlite3.connect(existing).close()
    assert main(["import", str(export), "--db", str(existing)]) == 2
    assert words in capsys.readouterr().err.replace("\n", "")
    with sqlite3.connect(existing) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)


async def test_a_log_with_holders_recoveries_and_releases_still_imports_the_same(
    tmp_path: Path,
) -> None:
    """tests/fixtures/log-v3.ndjson holds what issue 13 added (holders in
    leases, recoveries that spend no retry, a release, a poison job failing
    past its recoveries, causation ids); never regenerated, like the others."""
    from .fixtures.make_log_v3 import ADDED, state_json

    lines = (FIXTURES / "log-v3.ndjson").read_bytes().splitlines(keepends=True)
    assert {msgspec.json.decode(line)["type"] for line in lines} >= ADDED
    async with jobledger.open(tmp_path / "from-v3.db") as ledger:
        assert await ledger.import_log(lines) == len(lines)
        assert [line async for line in ledger.export_log()] == lines
        expected = (FIXTURES / "log-v3.state.json").read_bytes().strip()
        assert state_json(await ledger.replay()) == expected
        async with ledger._log.frozen() as view:
            assert state_json(await view.snapshot()) == expected
        assert (await ledger.verify()).ok
        released, recovered, poison = sorted(
            (await ledger.list()).jobs, key=lambda job: job.created_seq
        )
        assert (released.status, released.failures, released.attempt) == ("completed", 0, 2)
        assert (recovered.status, recovered.recoveries, recovered.failures) == ("pending", 1, 0)
        assert (poison.status, poison.recoveries, poison.error_type) == (
            "failed",
            1,
            "LeaseExpired",
        )
