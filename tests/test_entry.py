"""The command's entry points and the logs it refuses to touch: ``--version``,
``python -m jobledger``, and a database of another application, which is
``NotALog`` (exit 2) and left exactly as it was, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import asyncpg
import pytest

import jobledger
from jobledger.cli import main
from jobledger.core import NotALog

from .postgres import Schemas, pg_schemas, postgres_url

__all__ = ["pg_schemas", "postgres_url"]


def test_version_is_printed_by_the_command_and_by_python_m(
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = f"jobledger {metadata.version('jobledger')}\n"
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == expected
    done = subprocess.run(
        [sys.executable, "-m", "jobledger", "--version"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, expected, "")


def _foreign_sqlite(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO invoices (total) VALUES (12.5)")
    conn.commit()
    conn.close()
    return _tables(path)


def _tables(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT type, name FROM sqlite_master ORDER BY name").fetchall()
    finally:
        conn.close()


async def test_another_applications_sqlite_file_is_not_a_log_and_is_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.sqlite"
    before = _foreign_sqlite(path)
    with pytest.raises(NotALog, match="not a jobledger log"):
        async with jobledger.open(path):
            pass
    assert _tables(path) == before  # no jobledger table added beside the app's
    app_dir = str(Path(__file__).parent)
    for args in (
        ["list", "--db", str(path)],
        ["demo", "--db", str(path), "--no-live"],
        ["worker", "--db", str(path), "--app", "worker_app:WORKERS", "--app-dir", app_dir],
    ):
        code = await asyncio.to_thread(main, args)
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.count("\n") == 1 and "NotALog" in err and "Traceback" not in err
    assert _tables(path) == before


async def test_another_applications_postgresql_schema_is_not_a_log_and_is_left_alone(
    pg_schemas: Schemas,
) -> None:
    schema = pg_schemas.new()
    conn = await asyncpg.connect(pg_schemas.url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'CREATE TABLE "{schema}".invoices (id serial PRIMARY KEY)')
        url = f"{pg_schemas.url}?schema={schema}"
        for read_only in (False, True):
            with pytest.raises(NotALog, match="invoices"):
                async with jobledger.open(url, migrate=not read_only):
                    pass
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        )
        assert [row[0] for row in tables] == ["invoices"]
    finally:
        await conn.close()
