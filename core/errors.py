"""The one error tree of jobledger.

Every error jobledger raises on purpose derives from :class:`JobledgerError`::

    JobledgerError
    ├── NotFound              the job or mark does not exist, or is not the caller's
    ├── ValidationError       a command or argument is malformed; nothing was written
    ├── InvalidTransition     the command is not allowed in the job's current status
    ├── CancelRequested       a running job's work after a cancel was asked: stop
    ├── ConcurrencyConflict   another writer got there first (expected version differs)
    │   └── StaleAttempt      a worker reports for an attempt that is no longer current
    ├── QueueFull             a job may not start: its queue runs its capacity already
    ├── StorageError          the database failed; the batch was rolled back
    │   └── CorruptionError   the stored data is damaged or inconsistent
    ├── LedgerClosed          the ledger (or its Stower) is not running
    ├── WaitTimeout           a ``wait`` ran out of time (also a ``TimeoutError``)
    └── InternalError         a bug in jobledger; the batch was rolled back

Errors that come from a dependency (sqlite3, aiosqlite, msgspec) are wrapped at
the boundary with ``raise StorageError(...) from exc`` so callers only ever
catch ours.
"""

from __future__ import annotations

__all__ = [
    "CancelRequested",
    "ConcurrencyConflict",
    "CorruptionError",
    "InternalError",
    "InvalidTransition",
    "JobledgerError",
    "LedgerClosed",
    "NotALog",
    "NotFound",
    "QueueFull",
    "StaleAttempt",
    "StorageError",
    "ValidationError",
    "WaitTimeout",
]


class JobledgerError(Exception):
    """Root of every error jobledger raises on purpose."""


class NotFound(JobledgerError):
    """Raised when a job or mark does not exist *or* belongs to another user.

    The two cases are deliberately indistinguishable, so a caller cannot probe
    for the ids of other users' jobs.
    """

    def __init__(self, kind: str, id: str) -> None:
        super().__init__(f"{kind} {id!r} not found")
        self.kind = kind
        self.id = id


class ValidationError(JobledgerError):
    """Raised when a command or an argument is malformed. Nothing is written.

    ``field`` names the offending field when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message if field is None else f"{field}: {message}")
        self.field = field


class InvalidTransition(JobledgerError):
    """Raised when a command asks for a status change the transition table forbids.

    Names both states: ``current`` (where the job is) and ``target`` (where the
    command wanted it to go).
    """

    def __init__(self, job_id: str, current: str, target: str, command: str) -> None:
        super().__init__(f"job {job_id!r}: cannot go from {current!r} to {target!r} ({command})")
        self.job_id = job_id
        self.current = current
        self.target = target
        self.command = command


class CancelRequested(JobledgerError):
    """Raised into a running job's ``execute`` by its context (progress,
    heartbeat, a mark, an asset, a resource) once a cancel of the job was
    requested: the job must stop, and it ends ``cancelled`` whatever
    ``execute`` does next. Nothing the refused call asked for was written.
    """

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r}: a cancel was requested; stop the work")
        self.job_id = job_id


class ConcurrencyConflict(JobledgerError):
    """Raised when a command expected a stream version that is no longer current.

    This is how two claims of one job are settled: the first appends, the
    second finds the version moved on and gets this error.
    """

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream!r}: expected version {expected}, found {actual}")
        self.stream = stream
        self.expected = expected
        self.actual = actual


class StaleAttempt(ConcurrencyConflict):
    """Raised when a worker reports for an attempt that is not the job's current one.

    This is the fence that stops a worker whose claim was lost (for example
    its lease expired and another worker took the job) from writing.
    """

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(stream, expected, actual)
        self.args = (f"job {stream!r}: attempt {expected} is stale, current attempt is {actual}",)


class QueueFull(JobledgerError):
    """Raised when a claim would start a job whose queue already runs as many
    jobs as its capacity (counted over every process and host that shares
    the log). Nothing is written; the job stays pending for a later claim."""

    def __init__(self, queue: str, capacity: int) -> None:
        super().__init__(f"queue {queue!r} runs its capacity ({capacity}) already")
        self.queue = queue
        self.capacity = capacity


class StorageError(JobledgerError):
    """Raised when the database fails. The batch it was writing was rolled back."""


class CorruptionError(StorageError):
    """Raised when stored data is damaged: a row that does not decode, a broken
    hash chain, or a read model that disagrees with the log."""


class NotALog(CorruptionError):
    """Raised when a path or URL holds something that is not a jobledger log:
    a file that is not an SQLite database (never one, or damaged beyond
    recognition: so a ``CorruptionError`` too), or a database (or
    PostgreSQL schema) that holds another application's tables. Nothing was
    changed: jobledger never adds its tables beside another application's."""


class LedgerClosed(JobledgerError):
    """Raised when a command is sent to a ledger (or Stower) that is not running."""


class WaitTimeout(JobledgerError, TimeoutError):
    """Raised when ``Ledger.wait`` runs out of time before the job is terminal."""


class InternalError(JobledgerError):
    """Raised when jobledger itself failed (a bug) while writing a batch.

    The batch was rolled back, nothing of it is visible, and the Stower goes
    on with the next batch. The cause is chained and logged.
    """
