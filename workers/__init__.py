"""jobledger.workers: JobWorker, JobContext and the runner that polls, claims,
executes and reports. Imports only ``jobledger.core`` and ``jobledger.eventbus``."""

from .runner import WorkerRunner, WorkerStatistics
from .worker import JobContext, JobWorker, result_of

__all__ = ["JobContext", "JobWorker", "WorkerRunner", "WorkerStatistics", "result_of"]
