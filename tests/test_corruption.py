"""Corruption (issue 6, item 10): a byte flipped anywhere in the database
file gives a typed error or a verify report, never silently wrong data."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest

import jobledger
from jobledger import Job, JobContext, JobledgerError, JobWorker

FLIPS = 40  # the quick subset; the battery flips more


class Echo(JobWorker):
    job_types = ("echo",)
    progress_interval = 0.0

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        await ctx.progress(50)
        await ctx.create_mark("doc", {"n": job.params["n"]})
        return {"n": job.params["n"]}


def state(model: jobledger.Projection) -> bytes:
    return msgspec.json.encode(
        [sorted(model.jobs.items()), sorted(model.marks.items()), sorted(model.assets.items())]
    )


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A closed log (checkpointed: no WAL left) and the state it folds to."""
    import asyncio

    path = tmp_path_factory.mktemp("pristine") / "jobs.db"

    async def make() -> bytes:
        async with jobledger.open(path, workers=[Echo()]) as ledger:
            for n in range(12):
                await ledger.wait((await ledger.submit("echo", {"n": n})).id, timeout=10)
            return state(await ledger.replay())

    return path, asyncio.run(make())


def flip(source: Path, copy: Path, offset: int) -> None:
    """Copy ``source`` to ``copy`` with the byte at ``offset`` changed."""
    shutil.copy(source, copy)
    data = bytearray(copy.read_bytes())
    data[offset] ^= random.Random(offset).randrange(1, 256)
    copy.write_bytes(bytes(data))


async def outcome_of_a_flip(pristine: tuple[Path, bytes], copy: Path, offset: int) -> str:
    """Flip one byte of a copy at ``offset``; say how jobledger took it."""
    source, expected = pristine
    flip(source, copy, offset)
    try:
        async with jobledger.open(copy) as ledger:
            report = await ledger.verify()
            if not report.ok:
                return "reported by verify"
            # Verify finds nothing: then what it reads must be what was written.
            assert state(await ledger.replay()) == expected, f"silently wrong at {offset}"
            async with ledger._log.frozen() as view:
                assert state(await view.snapshot()) == expected, f"silently wrong at {offset}"
            return "harmless"
    except JobledgerError as exc:  # typed: StorageError, CorruptionError, ...
        return type(exc).__name__


async def test_a_flipped_byte_is_found_or_harmless(
    pristine: tuple[Path, bytes], tmp_path: Path
) -> None:
    size = pristine[0].stat().st_size
    rng = random.Random(10)
    outcomes: dict[str, int] = {}
    for index in range(FLIPS):
        offset = rng.randrange(size)
        found = await outcome_of_a_flip(pristine, tmp_path / f"flip-{index}.db", offset)
        outcomes[found] = outcomes.get(found, 0) + 1
    assert sum(outcomes.values()) == FLIPS
    assert outcomes.get("reported by verify", 0) + outcomes.get("CorruptionError", 0) > 0


async def test_a_file_that_is_not_a_database_is_a_corruption_error(tmp_path: Path) -> None:
    path = tmp_path / "noise.db"
    path.write_bytes(random.Random(1).randbytes(8192))
    with pytest.raises(jobledger.CorruptionError):
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
    before = threading.active_count()
    with pytest.raises(jobledger.CorruptionError, match="past the log head"):
        async with jobledger.open(path):
            pass
    assert threading.active_count() == before


@pytest.mark.parametrize(
    "damage",
    [
        "UPDATE events SET actor = CAST(X'C3FF' AS TEXT) WHERE seq = 2",
        "UPDATE jobs SET doc = CAST(X'7B226964223A22C3FF227D' AS BLOB)",
    ],
)
async def test_text_that_is_not_utf8_is_a_corruption_error(tmp_path: Path, damage: str) -> None:
    """Found by the flips: invalid UTF-8 in a stored text escaped as a bare
    UnicodeDecodeError."""
    import sqlite3

    path = tmp_path / "utf8.db"
    async with jobledger.open(path) as ledger:
        await ledger.submit("t")
        await ledger.submit("t")
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(damage)
    conn.close()
    async with jobledger.open(path) as ledger:
        with pytest.raises(jobledger.CorruptionError):
            await ledger.verify()
        assert await ledger.head() == 2  # the rest still serves
