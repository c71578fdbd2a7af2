"""Corruption (issue 6, item 10): a byte flipped anywhere in the database
file gives a typed error or a verify report, never silently wrong data."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import jobledger
import jobledger.core

from .faults import flip_many

FLIPS = 40  # the quick subset; the battery flips more


async def test_a_flipped_byte_is_found_or_harmless(tmp_path: Path) -> None:
    # A silently wrong read fails an assertion inside; an untyped error escapes.
    outcomes = await flip_many(tmp_path, FLIPS, seed=10)
    assert sum(outcomes.values()) == FLIPS
    assert outcomes.get("reported by verify", 0) + outcomes.get("CorruptionError", 0) > 0


async def test_a_file_that_is_not_a_database_is_a_corruption_error(tmp_path: Path) -> None:
    path = tmp_path / "noise.db"
    path.write_bytes(random.Random(1).randbytes(8192))
    with pytest.raises(jobledger.core.CorruptionError):
        async with jobledger.open(path):
            pass


async def test_an_open_that_fails_late_leaves_no_thread_behind(tmp_path: Path) -> None:
    """A damage found after the connections are open (here: a checkpoint past
    the head) used to leave the reader's thread running: the process could
    not exit."""
    import sqlite3
    import threading

    path = tmp_path / "ahead.db"
    async with jobledger.open(path) as ledger:
        await ledger.submit("t")
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'checkpoint'")
    conn.close()
    before = set(threading.enumerate())
    with pytest.raises(jobledger.core.CorruptionError, match="past the log head"):
        async with jobledger.open(path):
            pass
    left = set(threading.enumerate()) - before
    for thread in left:  # a closed connection's thread ends by itself, soon
        thread.join(timeout=5)
    assert not [thread for thread in left if thread.is_alive()]


@pytest.mark.parametrize(
    ("damage", "place"),
    [
        ("UPDATE events SET actor = CAST(X'C3FF' AS TEXT) WHERE seq = 2", ("events", "actor")),
        ("UPDATE jobs SET doc = CAST(X'7B226964223A22C3FF227D' AS BLOB)", ("jobs", "doc")),
        # Found by the battery's flips: SQLite's dynamic typing lets a damaged
        # value come back as another type (here the head's hash as bytes).
        ("UPDATE events SET hash = X'00FF' WHERE seq = 2", ("events", "hash")),
    ],
)
async def test_text_that_is_not_utf8_is_reported_by_verify_and_refused_by_reads(
    tmp_path: Path, damage: str, place: tuple[str, str]
) -> None:
    """Found by the flips: invalid UTF-8 in a stored text escaped as a bare
    UnicodeDecodeError. A read that must decode it raises ``CorruptionError``;
    ``verify`` reads the stored bytes and reports the place (issue 13)."""
    import sqlite3

    path = tmp_path / "utf8.db"
    async with jobledger.open(path) as ledger:
        await ledger.submit("t")
        await ledger.submit("t")
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(damage)
    conn.close()
    try:
        async with jobledger.open(path) as ledger:
            report = await ledger.verify()
            assert not report.ok
            assert place in {(p.table, p.column) for p in report.problems}
            with pytest.raises(jobledger.core.CorruptionError):
                await ledger.replay() if place[0] == "events" else await ledger.list()
            assert await ledger.head() == 2  # the rest still serves
    except jobledger.core.CorruptionError:
        assert "hash" in damage  # the head itself is damaged: refused at open
