"""jobledger.workers: JobWorker, JobContext and the runner that polls, claims,
executes, heartbeats and reports. The engine only: an application's workers
(such as the annotation workers of :mod:`jobledger.annotations`) build on
these. Imports only ``jobledger.core`` and ``jobledger.eventbus``."""

from .capacity import QueueCapacity
from .desk import ClaimDesk
from .runner import ABANDON_AFTER, WorkerRunner, WorkerStatistics
from .worker import (
    JobContext,
    JobWorker,
    NonRetryableError,
    PartialResult,
    SkipJob,
    result_of,
    store_resource,
)

__all__ = [
    "ABANDON_AFTER",
    "ClaimDesk",
    "JobContext",
    "JobWorker",
    "NonRetryableError",
    "PartialResult",
    "QueueCapacity",
    "SkipJob",
    "WorkerRunner",
    "WorkerStatistics",
    "result_of",
    "store_resource",
]
