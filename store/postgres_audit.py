"""What the PostgreSQL backend checks of itself and keeps beside the log:
whether a schema's tables and indexes are the ones the migrations make
(``integrity``), and resources' content in the database (so every host sees
it).
"""

from __future__ import annotations

import secrets
from typing import Any

from jobledger.core import CorruptionError, NotFound, digest_of, get_logger

from .content import _hex_of
from .postgres_schema import _MIGRATIONS

__all__ = ["PostgresContent"]

log = get_logger("store")

_SELECT_COLUMNS = (
    "SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '')"
    " FROM information_schema.columns WHERE table_schema = $1"
)
_SELECT_INDEXES = "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = $1"
_SELECT_CONSTRAINTS = (
    "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)"
    " FROM pg_constraint AS c JOIN pg_namespace AS n ON n.oid = c.connamespace"
    " WHERE n.nspname = $1"
)

_made: frozenset[tuple[str, ...]] | None = None


async def _shape(conn: Any, schema: str) -> frozenset[tuple[str, ...]]:
    """The tables' columns, indexes and constraints in ``schema``, with the
    schema's name taken out of every definition."""
    found: set[tuple[str, ...]] = set()
    for row in await conn.fetch(_SELECT_COLUMNS, schema):
        found.add(("column", *(str(v) for v in row)))
    for table, name, definition in await conn.fetch(_SELECT_INDEXES, schema):
        found.add(
            ("index", table, name, definition.replace(f'"{schema}".', "").replace(f"{schema}.", ""))
        )
    for table, name, definition in await conn.fetch(_SELECT_CONSTRAINTS, schema):
        found.add(("constraint", table.split(".")[-1].strip('"'), name, definition))
    return frozenset(found)


async def made_shape(conn: Any) -> frozenset[tuple[str, ...]]:
    """What the migrations make, read from a scratch schema made in a
    transaction that is rolled back (so nothing is left)."""
    global _made
    if _made is None:
        scratch = f"jobledger_probe_{secrets.token_hex(6)}"
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute(f'CREATE SCHEMA "{scratch}"')
            await conn.execute(f'SET LOCAL search_path TO "{scratch}"')
            for step in _MIGRATIONS:
                await conn.execute(step)
            _made = await _shape(conn, scratch)
        finally:
            await tx.rollback()
    return _made


async def schema_findings(conn: Any, schema: str) -> list[str]:
    """What differs between ``schema``'s tables and the ones the migrations
    make: a column, index or constraint of ours missing or defined otherwise,
    or one added to our tables. Tables of the application's own are let be."""
    try:
        made = await made_shape(conn)
    except Exception as exc:  # (no right to create the scratch schema, a read-only view)
        log.warning("the schema cannot be compared with the one jobledger makes", error=str(exc))
        return []
    found = await _shape(conn, schema)
    ours = {entry[1] for entry in made}
    missing = sorted(made - found)
    added = sorted(e for e in found - made if e[1] in ours)
    return [
        f"{e[0]} {e[2]!r} of table {e[1]!r} is not as this jobledger made it (or is missing)"
        for e in missing
    ] + [f"{e[0]} {e[2]!r} on table {e[1]!r} was not made by this jobledger" for e in added]


class PostgresContent:
    """A :class:`~jobledger.core.ContentStore` in the log's PostgreSQL schema
    (table ``content``): a resource's bytes are seen by every host that
    opens the log, and are committed before ``put`` returns."""

    def __init__(self, log: Any) -> None:
        self._log = log

    async def put(self, data: bytes) -> str:
        data = bytes(data)
        digest = digest_of(data)
        await self._log._fetchall(
            "INSERT INTO content (digest, data) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING",
            (digest, data),
        )
        return digest

    async def get(self, digest: str) -> bytes:
        _hex_of(digest)
        rows = await self._log._fetchall("SELECT data FROM content WHERE digest = ?", (digest,))
        if not rows:
            raise NotFound("content", digest)
        data = bytes(rows[0][0])
        if digest_of(data) != digest:
            raise CorruptionError(f"content {digest} does not match its digest")
        return data
