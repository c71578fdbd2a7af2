"""jobledger: an embeddable, event-sourced job system for asyncio.

::

    import jobledger

    async with jobledger.open("jobs.db", workers=[MyWorker()]) as ledger:
        job = await ledger.submit("highlight-annotation", {"text": "..."}, user="alice")
        done = await ledger.wait(job.id, timeout=10)

Everything public is importable from here; the parts live in
``jobledger.core``, ``jobledger.eventbus``, ``jobledger.store``,
``jobledger.stower`` and ``jobledger.workers``.
"""

from jobledger.core import (
    SYSTEM_USER,
    TERMINAL,
    TRANSITIONS,
    Clock,
    Command,
    ConcurrencyConflict,
    CorruptionError,
    Envelope,
    Event,
    InvalidTransition,
    Job,
    JobComplete,
    JobCreate,
    JobFail,
    JobledgerError,
    JobProgress,
    JobStart,
    JobStatus,
    Lease,
    LedgerClosed,
    ManualClock,
    Mark,
    MarkCreate,
    MarkDelete,
    NotFound,
    Progress,
    Projection,
    StaleAttempt,
    StorageError,
    SystemClock,
    User,
    ValidationError,
    WaitTimeout,
)
from jobledger.eventbus import BusStatistics, EventBus
from jobledger.store import EventLog, MemoryLog, Problem, SqliteLog, VerifyReport
from jobledger.stower import StowerStatistics
from jobledger.workers import JobContext, JobWorker, WorkerStatistics

from .ledger import JobPage, Ledger, LedgerStatistics, open

__version__ = "0.1.0"

__all__ = [
    "SYSTEM_USER",
    "TERMINAL",
    "TRANSITIONS",
    "BusStatistics",
    "Clock",
    "Command",
    "ConcurrencyConflict",
    "CorruptionError",
    "Envelope",
    "Event",
    "EventBus",
    "EventLog",
    "InvalidTransition",
    "Job",
    "JobComplete",
    "JobContext",
    "JobCreate",
    "JobFail",
    "JobPage",
    "JobProgress",
    "JobStart",
    "JobStatus",
    "JobWorker",
    "JobledgerError",
    "Lease",
    "Ledger",
    "LedgerClosed",
    "LedgerStatistics",
    "ManualClock",
    "Mark",
    "MarkCreate",
    "MarkDelete",
    "MemoryLog",
    "NotFound",
    "Problem",
    "Progress",
    "Projection",
    "SqliteLog",
    "StaleAttempt",
    "StorageError",
    "StowerStatistics",
    "SystemClock",
    "User",
    "ValidationError",
    "VerifyReport",
    "WaitTimeout",
    "WorkerStatistics",
    "__version__",
    "open",
]
