"""jobledger.annotations.demo: the demo behind ``jobledger demo``: the six annotation workers of
:mod:`jobledger.annotations` on bundled sample documents, with the
offline client (no model runs), for two users, with a live view of the log.

The bundled documents (package data, ``jobledger/annotations/samples/*.md``; see
:data:`SAMPLES`) are stored in the ledger as resources with their file's
stem as id: ``analytical-engine`` (a short history of computing),
``nap-recall`` (a structured scientific abstract, for the ``scientific-imrad``
tag schema), ``four-day-week`` (an argument essay, for ``argument-toulmin``)
and ``boulangerie`` (a short text in French). The workers read them back
through a :class:`DemoFetcher`, which waits a little per read and drops the
connection on the first read of ``nap-recall``: that job is retried and
completes on attempt 2.

The batch (:func:`run_demo`) runs highlight, reference, tag, comment and
assessment jobs on the documents, then a generation job that writes a new
resource about a person the reference job found and links that reference
mark to it. So that every way a job can end is shown, it also has a job on a
document that does not exist (``failed``) and three small demo workers:

- :class:`IndexWorker` (``index``) builds a word index of the documents, one
  sentence per step, and stops when asked (``ctx.stopping``); the demo
  cancels it as its owner once it has made some progress;
- :class:`DigestWorker` (``digest``) gathers the lead sentences of several
  sources; one is missing, so it returns a :class:`PartialResult`;
- :class:`ReadabilityWorker` (``readability``) scores English text (Flesch
  reading ease) and raises :class:`SkipJob` for a document in another
  language (``boulangerie`` is French).

The job types are registered (:data:`JOB_TYPES`, with params Structs), so bad
params are refused at submit. The small workers pause ``pause`` seconds per
step and the fetcher a few times that per read (the work itself takes
microseconds), so a person can watch the progress bars move.

Its modules, one concept each: :mod:`.documents` (the samples and the
fetcher), :mod:`.small_workers`, :mod:`.batch` (what a run submits and
reports), :mod:`.view` (the live view) and :mod:`.run` (:func:`run_demo`).
"""

from .batch import DEFAULT_JOBS, DemoDocument, DemoReport
from .documents import SAMPLES, DemoFetcher
from .run import run_demo
from .small_workers import (
    DEFAULT_PAUSE,
    JOB_TYPES,
    DigestParams,
    DigestWorker,
    DocParams,
    IndexParams,
    IndexWorker,
    ReadabilityWorker,
)
from .view import STATUS_STYLE, body_values

__all__ = [
    "DEFAULT_JOBS",
    "DEFAULT_PAUSE",
    "JOB_TYPES",
    "SAMPLES",
    "STATUS_STYLE",
    "DemoDocument",
    "DemoFetcher",
    "DemoReport",
    "DigestParams",
    "DigestWorker",
    "DocParams",
    "IndexParams",
    "IndexWorker",
    "ReadabilityWorker",
    "body_values",
    "run_demo",
]
