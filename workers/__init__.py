"""jobledger.workers: JobWorker, JobContext and the runner that polls, claims,
executes, heartbeats and reports. Imports only ``jobledger.core`` and
``jobledger.eventbus``."""

from .capacity import QueueCapacity
from .runner import WorkerRunner, WorkerStatistics
from .worker import (
    JobContext,
    JobWorker,
    NonRetryableError,
    PartialResult,
    SkipJob,
    result_of,
)

__all__ = [
    "JobContext",
    "JobWorker",
    "NonRetryableError",
    "PartialResult",
    "QueueCapacity",
    "SkipJob",
    "WorkerRunner",
    "WorkerStatistics",
    "result_of",
]
