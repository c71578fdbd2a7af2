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
from jobledger.store import PostgresLog, SqliteLog, postgres_schema, sqlite_schema

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
    assert await cli(["list", "--db", str(path)]) == 5  # a storage error
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
        assert await cli(["list", "--db", url]) == 2  # no log there
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


# -- schema 4 (SQLite) and 2 (PostgreSQL): the queues' records ------------------


async def test_an_sqlite_file_of_schema_3_gains_the_queues_table(tmp_path: Path) -> None:
    path = tmp_path / "three.db"
    async with jobledger.open(path) as ledger:
        job = await ledger.submit("report")
    with sqlite3.connect(path) as conn:  # as schema 3 left it: no queues table
        conn.execute("DROP TABLE queues")
        conn.execute("PRAGMA user_version = 3")
    conn.close()
    async with jobledger.open(path, queues={"narrow": 2}) as ledger:
        assert [(q.name, q.capacity) for q in await ledger.queues()] == [("narrow", 2)]
        assert (await ledger.get(job.id)).status == "pending"
        assert (await ledger.verify()).ok
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (sqlite_schema.SCHEMA_VERSION,)
    conn.close()


async def test_a_postgresql_schema_of_version_1_gains_queues_and_loses_the_old_append(
    pg_schemas: Schemas,
) -> None:
    schema = pg_schemas.new()
    url = f"{pg_schemas.url}?schema={schema}"
    async with jobledger.open(url) as ledger:
        job = await ledger.submit("report")
    conn = await asyncpg.connect(pg_schemas.url)
    try:  # as version 1 left it: no queues table, an append function of another signature
        await conn.execute(f'DROP TABLE "{schema}".queues')
        await conn.execute(f'DROP FUNCTION "{schema}".jobledger_append')
        await conn.execute(
            f'CREATE FUNCTION "{schema}".jobledger_append(old integer) RETURNS void'
            " LANGUAGE sql AS 'SELECT 1'"
        )
        await conn.execute(f'UPDATE "{schema}".schema_version SET version = 1')
        async with jobledger.open(url, queues={"narrow": 2}) as ledger:
            assert [(q.name, q.capacity) for q in await ledger.queues()] == [("narrow", 2)]
            assert (await ledger.get(job.id)).status == "pending"
            await ledger.submit("report")  # the new append function writes
            assert (await ledger.verify()).ok
        signatures = await conn.fetch(
            "SELECT pg_get_function_identity_arguments(p.oid) FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = $1 AND p.proname = 'jobledger_append'",
            schema,
        )
        assert len(signatures) == 1 and "old integer" not in signatures[0][0]
        version = await conn.fetchval(f'SELECT version FROM "{schema}".schema_version')
        assert version == postgres_schema.SCHEMA_VERSION
    finally:
        await conn.close()
