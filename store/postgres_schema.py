"""The PostgreSQL schema: its version, the migrations that make it, and how a
schema's tables are compared with the ones they make (``integrity``).

Every table lives in one PostgreSQL schema (``?schema=NAME``, default
``jobledger``), so several ledgers share a database. The tables and columns
are those of :data:`jobledger.store.TABLES`, with the same stored values as
on SQLite: an event's data is the exact bytes that were hashed (``bytea``),
its time the canonical RFC 3339 text the hash covers, and each read-model
row's ``doc`` its model's JSON bytes, so ``verify`` and the head digest are
the same on both backends. ``content`` holds resources' bytes by digest, so
every host sees them; ``schema_version`` the version of this schema.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["SCHEMA_VERSION", "check_schema_name", "shown_dsn"]

SCHEMA_VERSION = 3
"""The schema this code writes; an older one is migrated when a writing
ledger opens it, a newer one refused. (3: ``job.retried``; no table
changes, the version marks a log that may hold it.)"""

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,52}")

# Each step takes the schema from version i to i+1. Never edit a released
# step: add a new one. ``{schema}`` is the (checked) schema name.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        seq            bigint  PRIMARY KEY,
        event_id       text    NOT NULL UNIQUE,
        stream         text    NOT NULL,
        version        bigint  NOT NULL,
        type           text    NOT NULL,
        time           text    NOT NULL,
        actor          text    NOT NULL,
        correlation_id text,
        causation_id   text,
        data           bytea   NOT NULL,
        hash           text    NOT NULL,
        UNIQUE (stream, version)
    );
    CREATE TABLE jobs (
        id               text    PRIMARY KEY,
        job_type         text    NOT NULL,
        status           text    NOT NULL,
        user_id          text    NOT NULL,
        tenant           text,
        priority         bigint  NOT NULL,
        run_at_us        bigint,
        lease_expires_us bigint,
        deadline_us      bigint,
        finished_us      bigint,
        idempotency_key  text,
        created_seq      bigint  NOT NULL,
        doc              bytea   NOT NULL
    );
    CREATE INDEX jobs_pending ON jobs (job_type, priority DESC, created_seq)
        WHERE status = 'pending';
    CREATE INDEX jobs_user ON jobs (user_id, created_seq);
    CREATE INDEX jobs_created ON jobs (created_seq);
    CREATE INDEX jobs_lease ON jobs (lease_expires_us) WHERE status = 'running';
    CREATE INDEX jobs_deadline ON jobs (deadline_us)
        WHERE status = 'running' AND deadline_us IS NOT NULL;
    CREATE INDEX jobs_finished ON jobs (finished_us) WHERE finished_us IS NOT NULL;
    CREATE UNIQUE INDEX jobs_key ON jobs (user_id, coalesce(tenant, ''), idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE TABLE assets (
        id          text    PRIMARY KEY,
        job_id      text    NOT NULL,
        created_seq bigint  NOT NULL,
        doc         bytea   NOT NULL
    );
    CREATE INDEX assets_job ON assets (job_id, created_seq);
    CREATE TABLE marks (
        id          text    PRIMARY KEY,
        resource_id text    NOT NULL,
        job_id      text,
        created_seq bigint  NOT NULL,
        doc         bytea   NOT NULL
    );
    CREATE INDEX marks_resource ON marks (resource_id, created_seq);
    CREATE TABLE resources (
        id          text    PRIMARY KEY,
        created_seq bigint  NOT NULL,
        doc         bytea   NOT NULL
    );
    CREATE INDEX resources_created ON resources (created_seq);
    CREATE TABLE meta (
        key   text PRIMARY KEY,
        value text NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('checkpoint', '0');
    CREATE TABLE content (
        digest text  PRIMARY KEY,
        data   bytea NOT NULL
    );
    """,
    # 2: queues whose capacity the log records (queue.configured); the
    # append function takes their rows and the load function (which
    # replaces the begin function) reads them, so the old functions go.
    """
    CREATE TABLE IF NOT EXISTS queues (
        name text  PRIMARY KEY,
        doc  bytea NOT NULL
    );
    DROP FUNCTION IF EXISTS jobledger_append;
    DROP FUNCTION IF EXISTS jobledger_begin(bigint);
    """,
    # 3: the job.retried event (job:retry); no table changes: the version
    # tells older code this log may hold an event it does not know.
    "SELECT 1",
)

_CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL, written_by text);
ALTER TABLE schema_version ADD COLUMN IF NOT EXISTS written_by text;
"""
"""The schema's version, and the jobledger that wrote it (named when a newer
schema is refused)."""

# What ``integrity`` compares: every column of our tables with its type and
# nullability, and every index with its definition (the schema's name taken out).
_SELECT_COLUMNS = (
    "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
    " WHERE table_schema = $1"
)
_SELECT_INDEXES = "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = $1"


def check_schema_name(name: str) -> str:
    """``name`` if it is a schema name this backend takes (lower-case letters,
    digits and ``_``, not starting with a digit, at most 53 characters, so
    that its notify channel ``jobledger_NAME`` fits PostgreSQL's 63: it is
    then safe to quote and needs no case folding); else ``ValueError``."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise ValueError(
            f"{name!r} is not a schema name jobledger takes: lower-case letters, digits "
            "and _, not starting with a digit, at most 53 characters"
        )
    if name.startswith("pg_"):
        raise ValueError(f"{name!r}: names starting with pg_ are PostgreSQL's own")
    return name


def lock_key(schema: str, purpose: str) -> int:
    """A stable advisory-lock key (a signed 64-bit integer) for ``purpose``
    (``"append"``, ``"migrate"``) in ``schema``: every process that opens the
    schema computes the same one."""
    digest = hashlib.sha256(f"jobledger:{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def channel_of(schema: str) -> str:
    """The LISTEN/NOTIFY channel on which commits to ``schema`` are told."""
    return f"jobledger_{schema}"


_SECRET_OPTIONS = frozenset({"password", "sslpassword"})


def shown_dsn(dsn: str) -> str:
    """``dsn`` as messages and logs show it: without the password, whether
    given as ``user:password@`` or as a ``password=`` option."""
    base, question, query = dsn.partition("?")
    scheme, _, rest = base.partition("://")
    credentials, at, place = rest.rpartition("@")
    shown = f"{scheme}://{credentials.partition(':')[0]}{at}{place}" if at else base
    if question:
        kept = [p for p in query.split("&") if p.partition("=")[0].lower() not in _SECRET_OPTIONS]
        if kept:
            shown += "?" + "&".join(kept)
    return shown
