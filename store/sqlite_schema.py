"""The SQLite schema: its version, the migrations that make it, and how a
file's schema is compared with the one they make (``integrity`` reports the
difference)."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Any

__all__ = ["SCHEMA_VERSION"]

SCHEMA_VERSION = 5
"""The schema this code writes. Older files are migrated on open (from 2 to 3:
the read model is rebuilt from the log, once; from 3 to 4: the queues'
table is made, empty, as no older log configured a queue; from 4 to 5:
nothing changes but the version, which marks a log that may hold
``job.retried``, so that older code refuses it)."""

# Each step takes the schema from version i to i+1. Never edit a released
# step: add a new one.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        seq            INTEGER PRIMARY KEY,
        event_id       TEXT    NOT NULL UNIQUE,
        stream         TEXT    NOT NULL,
        version        INTEGER NOT NULL,
        type           TEXT    NOT NULL,
        time           TEXT    NOT NULL,
        actor          TEXT    NOT NULL,
        correlation_id TEXT,
        causation_id   TEXT,
        data           BLOB    NOT NULL,
        hash           TEXT    NOT NULL,
        UNIQUE (stream, version)
    );
    CREATE TABLE jobs (
        id               TEXT    PRIMARY KEY,
        job_type         TEXT    NOT NULL,
        status           TEXT    NOT NULL,
        user_id          TEXT    NOT NULL,
        tenant           TEXT,
        priority         INTEGER NOT NULL,
        run_at_us        INTEGER,
        lease_expires_us INTEGER,
        deadline_us      INTEGER,
        finished_us      INTEGER,
        idempotency_key  TEXT,
        created_seq      INTEGER NOT NULL,
        doc              BLOB    NOT NULL
    );
    CREATE INDEX jobs_pending ON jobs (job_type, priority DESC, created_seq)
        WHERE status = 'pending';
    CREATE INDEX jobs_user ON jobs (user_id, created_seq);
    CREATE INDEX jobs_created ON jobs (created_seq);
    CREATE INDEX jobs_lease ON jobs (lease_expires_us) WHERE status = 'running';
    CREATE INDEX jobs_deadline ON jobs (deadline_us)
        WHERE status = 'running' AND deadline_us IS NOT NULL;
    CREATE INDEX jobs_finished ON jobs (finished_us) WHERE finished_us IS NOT NULL;
    CREATE UNIQUE INDEX jobs_key ON jobs (user_id, ifnull(tenant, ''), idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE TABLE assets (
        id          TEXT    PRIMARY KEY,
        job_id      TEXT    NOT NULL,
        created_seq INTEGER NOT NULL,
        doc         BLOB    NOT NULL
    );
    CREATE INDEX assets_job ON assets (job_id, created_seq);
    CREATE TABLE marks (
        id          TEXT    PRIMARY KEY,
        resource_id TEXT    NOT NULL,
        job_id      TEXT,
        created_seq INTEGER NOT NULL,
        doc         BLOB    NOT NULL
    );
    CREATE INDEX marks_resource ON marks (resource_id, created_seq);
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('checkpoint', '0');
    """,
    """
    CREATE TABLE resources (
        id          TEXT    PRIMARY KEY,
        created_seq INTEGER NOT NULL,
        doc         BLOB    NOT NULL
    );
    CREATE INDEX resources_created ON resources (created_seq);
    """,
    # 3: jobs keep their recoveries and what caused their lease and their stop
    # request (issue 13); the rows written before lack them, so the read model
    # is rebuilt from the log when the file is first opened.
    """
    UPDATE meta SET value = '0' WHERE key = 'checkpoint';
    """,
    # 4: queues whose capacity the log records (queue.configured).
    """
    CREATE TABLE IF NOT EXISTS queues (
        name TEXT PRIMARY KEY,
        doc  BLOB NOT NULL
    );
    """,
    # 5: the job.retried event (job:retry, issue 17). No table changes: the
    # version alone tells older code that this log may hold an event it
    # does not know, so it refuses to open it instead of misreading it.
    """
    SELECT 1;
    """,
)

_SELECT_SCHEMA = "SELECT type, name, tbl_name, sql FROM sqlite_master"


@functools.cache
def _made_schema() -> frozenset[tuple[str, str, str, str]]:
    """Every table and index the migrations make, as ``sqlite_master`` lists them."""
    conn = sqlite3.connect(":memory:")
    try:
        for step in _MIGRATIONS:
            for statement in step.split(";"):
                if statement.strip():
                    conn.execute(statement)
        return frozenset(_schema_entry(row) for row in conn.execute(_SELECT_SCHEMA))
    finally:
        conn.close()


def _schema_entry(row: Sequence[Any]) -> tuple[str, str, str, str]:
    kind, name, table, sql = (str(v) if v is not None else "" for v in row)
    return (kind, name, table, " ".join(sql.split()))


def _schema_findings(rows: Sequence[Sequence[Any]]) -> list[str]:
    """What differs between the file's schema and the one the migrations make:
    a table or index of ours missing or defined otherwise (dropped
    constraints, other columns), or an index or trigger added to one of our
    tables. Tables of the application's own are let be."""
    made = _made_schema()
    ours = {table for _, _, table, _ in made}
    found = {_schema_entry(row) for row in rows}
    findings = [
        f"{kind} {name!r} is not as this jobledger made it (or is missing)"
        for kind, name, _, _ in sorted(made - found)
    ]
    findings += [
        f"{kind} {name!r} on table {table!r} was not made by this jobledger"
        for kind, name, table, _ in sorted(found - made)
        if table in ours and (kind, name) not in {(k, n) for k, n, _, _ in made}
    ]
    return findings
