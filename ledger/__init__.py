"""jobledger: an embeddable, event-sourced job system for asyncio.

::

    import jobledger

    async with jobledger.open("jobs.db", workers=[MyWorker()]) as ledger:
        job = await ledger.submit("highlight-annotation", {"text": "..."}, user="alice")
        done = await ledger.wait(job.id, timeout=10)

What an embedding application uses is importable from here (``__all__``,
at most 40 names; docs/api.md states the rule). Everything else is
importable from the part that defines it, each with its own ``__all__``:
``jobledger.core``, ``jobledger.eventbus``, ``jobledger.store``,
``jobledger.stower`` and ``jobledger.workers``. The knowledge-base
application (annotation workers, inference clients, the demo) lives above
the engine in ``jobledger.annotations`` and the command line in
``jobledger.cli``; importing ``jobledger`` loads neither.
"""

from jobledger.core import (
    Agent,
    Annotation,
    Asset,
    BodyAdd,
    BodyRemove,
    BodyReplace,
    CancelRequested,
    Envelope,
    InvalidTransition,
    Job,
    JobledgerError,
    JobStatus,
    JobType,
    LedgerClosed,
    ManualClock,
    Mark,
    NotFound,
    Progress,
    Resource,
    RetryPolicy,
    SpecificResource,
    Target,
    TextPositionSelector,
    TextQuoteSelector,
    TextualBody,
    User,
    ValidationError,
    WaitTimeout,
    to_jsonld,
)
from jobledger.workers import (
    JobContext,
    JobWorker,
    NonRetryableError,
    PartialResult,
    SkipJob,
)

from .ledger import JobPage, Ledger, LedgerStatistics
from .opening import open
from .submissions import NewJob

__version__ = "0.1.0"

# The rule (docs/api.md, "What is at the top level"): a name is here if an
# embedding application writes it in ordinary use: to open and hold the
# ledger, declare job types, write workers, read the values it returns, build
# marks, catch its common errors and test with a manual clock.
__all__ = [
    "Agent",
    "Annotation",
    "Asset",
    "BodyAdd",
    "BodyRemove",
    "BodyReplace",
    "CancelRequested",
    "Envelope",
    "InvalidTransition",
    "Job",
    "JobContext",
    "JobPage",
    "JobStatus",
    "JobType",
    "JobWorker",
    "JobledgerError",
    "Ledger",
    "LedgerClosed",
    "LedgerStatistics",
    "ManualClock",
    "Mark",
    "NewJob",
    "NonRetryableError",
    "NotFound",
    "PartialResult",
    "Progress",
    "Resource",
    "RetryPolicy",
    "SkipJob",
    "SpecificResource",
    "Target",
    "TextPositionSelector",
    "TextQuoteSelector",
    "TextualBody",
    "User",
    "ValidationError",
    "WaitTimeout",
    "__version__",
    "open",
    "to_jsonld",
]
