"""What every command shares: the console it writes to (markup off, a
broken pipe an ordinary exception), the log file it names (checked to be an
SQLite file before it is opened), the CLI's own exceptions, and the styles
of statuses and events.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from jobledger.annotations.demo import (
    STATUS_STYLE,
)
from jobledger.core import (
    JobStatus,
    NotALog,
)

_DEFAULT_DB = "jobledger.db"
_DB_HELP = f"the log: a path or a URL (default: $JOBLEDGER_DB, else {_DEFAULT_DB})"

_EVENT_STYLE = {
    "job.completed": STATUS_STYLE[JobStatus.COMPLETED],
    "job.failed": STATUS_STYLE[JobStatus.FAILED],
    "job.timed_out": STATUS_STYLE[JobStatus.TIMED_OUT],
    "job.partial": STATUS_STYLE[JobStatus.PARTIAL],
    "job.skipped": STATUS_STYLE[JobStatus.SKIPPED],
    "job.cancel_requested": STATUS_STYLE[JobStatus.CANCELLED],
    "job.cancelled": STATUS_STYLE[JobStatus.CANCELLED],
    "job.retry_scheduled": "yellow",
    "job.lease_expired": "yellow",
    "job.released": "yellow",
    "job.retried": "yellow",
}
"""The style of an event type in ``history`` and ``tail`` (others are plain)."""

_TALLY_ORDER = (
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
    JobStatus.PARTIAL,
    JobStatus.SKIPPED,
)
"""The statuses the demo summary always counts, in this order (others follow if any)."""


class _MissingLog(Exception):
    """The ``--db`` file of a reading command does not exist (exit code 2)."""


class _MissingFile(Exception):
    """A file or folder to import does not exist (exit code 2)."""


class _OutputClosed(Exception):
    """The reader of our output went away (a broken pipe, as in ``| head``)."""


class _Console(Console):
    """A rich Console that reports a broken pipe as :class:`_OutputClosed`.

    rich raises ``SystemExit`` there, which escapes the asyncio event loop
    from inside a task and skips the ledger's graceful close; an ordinary
    exception unwinds through ``async with jobledger.open(...)`` instead.
    """

    def on_broken_pipe(self) -> None:
        _silence(self.file)
        raise _OutputClosed


def _silence(stream: IO[Any]) -> None:
    """Point a stream whose reader went away at /dev/null, as rich does, so the
    final flush at interpreter exit does not fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())


def _console(*, stderr: bool = False) -> Console:
    # Markup and emoji codes off: no string is ever read as rich markup.
    console = _Console(stderr=stderr, highlight=False, markup=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped output: a width wide enough that job ids never wrap.
        console.width = 140
    return console


_SQLITE_MAGIC = b"SQLite format 3\x00"


def is_server_url(db: str) -> bool:
    """Whether ``db`` names a log on a database server (PostgreSQL), not a file."""
    return db.lower().startswith(("postgresql://", "postgres://"))


def _check_sqlite(db: str) -> None:
    """Raise ``NotALog`` if ``db`` exists but is not an SQLite file.

    Checked before opening: a non-empty file without the SQLite header can
    never be a jobledger log (an empty file is a valid, empty database).
    """
    if is_server_url(db):
        return  # (a server's log: no file to look at)
    path = Path(db)
    if not path.exists():
        return
    if not path.is_file():
        raise NotALog(f"{db} is not a file")
    with path.open("rb") as f:
        header = f.read(len(_SQLITE_MAGIC))
    if header and header != _SQLITE_MAGIC:
        raise NotALog(f"{db} is not a jobledger log (not an SQLite database)")


def _existing(db: str) -> str:
    """``db``, if it is an existing SQLite file (or a server's URL: the server
    says, when it is opened); else ``_MissingLog`` or ``NotALog``."""
    if is_server_url(db):
        return db
    if not Path(db).exists():
        raise _MissingLog(db)
    _check_sqlite(db)
    return db
