"""jobledger.store: the event log behind a Protocol, in memory and in SQLite,
with its read model, replay and verification, named by a path or a URL
(``store.url``). Imports only ``jobledger.core``."""

from .audit import LogLine, export_log, import_log, replay, verify
from .content import ContentFolder, MemoryContent, content_folder_for
from .memory import MemoryLog
from .protocol import (
    TABLES,
    Changes,
    EventLog,
    Head,
    Loaded,
    LogWriter,
    Problem,
    RawText,
    RawValue,
    Record,
    StaleWrite,
    VerifyReport,
)
from .sqlite import SCHEMA_VERSION, SqliteLog
from .url import BackendURL, backend_for

__all__ = [
    "SCHEMA_VERSION",
    "TABLES",
    "BackendURL",
    "Changes",
    "ContentFolder",
    "EventLog",
    "Head",
    "Loaded",
    "LogLine",
    "LogWriter",
    "MemoryContent",
    "MemoryLog",
    "Problem",
    "RawText",
    "RawValue",
    "Record",
    "SqliteLog",
    "StaleWrite",
    "VerifyReport",
    "backend_for",
    "content_folder_for",
    "export_log",
    "import_log",
    "replay",
    "verify",
]
