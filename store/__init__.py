"""jobledger.store: the event log behind a Protocol, in memory, in SQLite and
in PostgreSQL, with its read model, replay and verification, named by a
path or a URL (``store.url``). Imports only ``jobledger.core``."""

from .audit import LogLine, export_log, import_log, rebuild, replay, verify
from .content import ContentFolder, MemoryContent, content_folder_for
from .memory import MemoryLog
from .postgres import PostgresLog
from .postgres_audit import PostgresContent
from .protocol import (
    TABLES,
    AuditSource,
    Backend,
    Changes,
    EventLog,
    Head,
    JobCount,
    Loaded,
    LogWriter,
    Notice,
    Notices,
    Problem,
    RawText,
    RawValue,
    ReadModel,
    Record,
    Schedule,
    StaleWrite,
    VerifyReport,
)
from .server_clock import ServerClock, clock_for
from .sqlite import MEMORY, SCHEMA_VERSION, SqliteLog
from .url import BackendURL, backend_for, content_for

__all__ = [
    "MEMORY",
    "SCHEMA_VERSION",
    "TABLES",
    "AuditSource",
    "Backend",
    "BackendURL",
    "Changes",
    "ContentFolder",
    "EventLog",
    "Head",
    "JobCount",
    "Loaded",
    "LogLine",
    "LogWriter",
    "MemoryContent",
    "MemoryLog",
    "Notice",
    "Notices",
    "PostgresContent",
    "PostgresLog",
    "Problem",
    "RawText",
    "RawValue",
    "ReadModel",
    "Record",
    "Schedule",
    "ServerClock",
    "SqliteLog",
    "StaleWrite",
    "VerifyReport",
    "backend_for",
    "clock_for",
    "content_folder_for",
    "content_for",
    "export_log",
    "import_log",
    "rebuild",
    "replay",
    "verify",
]
