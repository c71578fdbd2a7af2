"""jobledger.workers: JobWorker, JobContext and the runner that polls, claims,
executes, heartbeats and reports; the inference clients the annotation
workers call (:mod:`.inference`, :mod:`.offline`). Imports only ``jobledger.core`` and
``jobledger.eventbus``."""

from jobledger.core.errors import InferenceError

from .capacity import QueueCapacity
from .inference import Generation, InferenceClient, InferenceStatistics, OpenAIClient, Usage
from .offline import OFFLINE_LABEL, ExtractiveMethods, OfflineClient, Span
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
    "OFFLINE_LABEL",
    "ExtractiveMethods",
    "Generation",
    "InferenceClient",
    "InferenceError",
    "InferenceStatistics",
    "JobContext",
    "JobWorker",
    "NonRetryableError",
    "OfflineClient",
    "OpenAIClient",
    "PartialResult",
    "QueueCapacity",
    "SkipJob",
    "Span",
    "Usage",
    "WorkerRunner",
    "WorkerStatistics",
    "result_of",
]
