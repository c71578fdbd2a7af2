"""Schema migrations: a writing open migrates, a reading command refuses an
older schema and names ``jobledger migrate``, which migrates it; a schema
newer than the code is refused. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import pytest

import jobledger
import jobledger.core
from jobledger.cli import main
from jobledger.store import PostgresLog, SqliteLog

from .postgres import Schemas, pg_schemas, postgres_url

__all__ = ["pg_schemas", "postgres_url"]


async def cli(argv: list[str]) -> int:
    """The command line, as a user runs it (its own event loop, in a thread here)."""
    return await asyncio.to_thread(main, argv)


async def _older_sqlite_file(path: Path) -> str:
    """A log file as schema 2 left it (the step to 3 rebuilds the read model)."""
    async with jobledger.open(path) as ledger:
        job = await ledger.submit("report")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    return job.id


async def test_a_reading_command_refuses_an_older_sqlite_file_and_migrate_brings_it_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.db"
    job_id = await _older_sqlite_file(path)
    assert await cli(["list", "--db", str(path)]) == 1
    err = capsys.readouterr().err
    assert "has schema 2" in err and f"jobledger migrate --db {path}" in err
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (2,)  # nothing was changed
    conn.close()
    assert await cli(["migrate", "--db", str(path)]) == 0
    assert "migrated to the current schema" in capsys.readouterr().out
    assert await cli(["show", job_id, "--db", str(path)]) == 0
    assert await cli(["migrate", "--db", str(path)]) == 0
    assert "up to date" in capsys.readouterr().out


async def test_a_writing_open_migrates_and_a_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    job_id = await _older_sqlite_file(path)
    async with jobledger.open(path) as ledger:  # (writing: migrates)
        assert (await ledger.get(job_id)).status == "pending"
        assert (await ledger.verify()).ok
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(jobledger.core.StorageError, match=r"schema 99.*upgrade jobledger"):
        await SqliteLog(path).open()


async def test_a_reading_open_of_an_empty_postgresql_schema_names_migrate(
    pg_schemas: Schemas, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = pg_schemas.new()
    url = f"{pg_schemas.url}?schema={schema}"
    log = PostgresLog(pg_schemas.url, schema=schema, migrate=False)
    with pytest.raises(jobledger.core.StorageError, match=r"holds no jobledger log.*migrate"):
        await log.open()
    conn = await asyncpg.connect(pg_schemas.url)
    try:  # the refused open left nothing behind
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", schema
            )
            == 0
        )
        assert await cli(["list", "--db", url]) == 1
        assert "jobledger migrate --db URL" in capsys.readouterr().err
        assert await cli(["migrate", "--db", url]) == 0
        assert "migrated" in capsys.readouterr().out
        assert await cli(["list", "--db", url]) == 0
        assert await cli(["migrate", "--db", url]) == 0
        assert "up to date" in capsys.readouterr().out
        await conn.execute(
            f"UPDATE \"{schema}\".schema_version SET version = 99, written_by = '9.9.0'"
        )
    finally:
        await conn.close()
    with pytest.raises(
        jobledger.core.StorageError,
        match=r"schema 99 \(written by jobledger 9\.9\.0\).*upgrade jobledger to 9\.9\.0",
    ):
        await PostgresLog(pg_schemas.url, schema=schema).open()
