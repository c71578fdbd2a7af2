"""jobledger.annotations: the knowledge-base annotation application, built on
the engine as any application would be (``jobledger.core``,
``jobledger.workers`` and the face); the engine never imports it.

The six annotation workers of a knowledge-base app (Semiont's job types).

Each reads a document through a :class:`ContentFetcher`, asks an
:class:`InferenceClient` where the passages are,
checks every passage against the text, and records them as W3C marks:

=========================  =====================  ===========================
job type                   worker                 marks
=========================  =====================  ===========================
``highlight-annotation``   :class:`HighlightWorker`   ``highlighting``, no body
``comment-annotation``     :class:`CommentWorker`     ``commenting``, the comment
``assessment-annotation``  :class:`AssessmentWorker`  ``assessing``, the assessment
``tag-annotation``         :class:`TagWorker`         ``tagging``, category + schema
``reference-annotation``   :class:`ReferenceWorker`   ``linking``, the entity type
``generation``             :class:`GenerationWorker`  a new resource, linked
=========================  =====================  ===========================

Every job sends, in one global order: ``job:start`` (the runner), one
``job:progress`` per stage, one ``mark:create`` per mark, ``job:complete``
with the counts (the runner). Each command is committed before the next is
sent, so a job's completion is never before its marks in the log.

**No silent loss.** A model reply that is not the JSON asked for fails the
job with an :class:`InferenceError` (retryable: a
model may answer better next time), never "found nothing". A reply cut short
at ``max_tokens`` keeps the passages that arrived whole and ends the job
*partial*, saying so; so does a passage whose quote cannot be found in the
text. Offsets a model gets wrong are corrected when its quote is found
elsewhere in the text (the nearest occurrence), and counted.

With the :class:`OfflineClient` (the default) no
model runs: the workers call its deterministic extractive methods, and every
result says ``offline: true`` and names ``jobledger-offline`` as its
generator.

Params and results are msgspec Structs whose JSON names are camelCase, as in
Semiont (``resourceId``, ``entityTypes``, ``highlightsFound``).

The modules, one concept each: :mod:`.fetchers` (where documents are read),
:mod:`.params` (what jobs are asked and answer), :mod:`.replies` (reading a
model's reply), :mod:`.base`, :mod:`.marking` and :mod:`.generation` (the
workers), :mod:`.catalog` (the six as a set), :mod:`.inference` (the client
protocol), :mod:`.openai_client` and :mod:`.offline` (the two clients, the
offline one reading text by the rules of :mod:`.reading`), :mod:`.errors`
and the demo (:mod:`jobledger.annotations.demo`, with the bundled sample
documents).

:class:`OpenAIClient` needs httpx, the ``openai`` extra
(``pip install 'jobledger[openai]'``); it is imported on first use, so
``import jobledger.annotations`` and the offline demo run without it.
"""

import typing as _typing

from .catalog import ANNOTATION_JOB_TYPES, annotation_workers
from .errors import InferenceError
from .fetchers import ContentFetcher, FolderFetcher, LedgerFetcher
from .generation import GenerationWorker
from .inference import Generation, InferenceClient, InferenceStatistics, Usage
from .marking import AssessmentWorker, CommentWorker, HighlightWorker, ReferenceWorker, TagWorker
from .offline import OFFLINE_LABEL, ExtractiveMethods, OfflineClient, Span
from .params import (
    TAG_SCHEMAS,
    AnnotationResult,
    AssessmentParams,
    CommentParams,
    GenerationParams,
    GenerationResult,
    HighlightParams,
    ReferenceParams,
    TagCategory,
    TagParams,
    TagSchema,
)
from .replies import locate, parse_passages

if _typing.TYPE_CHECKING:
    from .openai_client import OpenAIClient

__all__ = [
    "ANNOTATION_JOB_TYPES",
    "OFFLINE_LABEL",
    "TAG_SCHEMAS",
    "AnnotationResult",
    "AssessmentParams",
    "AssessmentWorker",
    "CommentParams",
    "CommentWorker",
    "ContentFetcher",
    "ExtractiveMethods",
    "FolderFetcher",
    "Generation",
    "GenerationParams",
    "GenerationResult",
    "GenerationWorker",
    "HighlightParams",
    "HighlightWorker",
    "InferenceClient",
    "InferenceError",
    "InferenceStatistics",
    "LedgerFetcher",
    "OfflineClient",
    "OpenAIClient",
    "ReferenceParams",
    "ReferenceWorker",
    "Span",
    "TagCategory",
    "TagParams",
    "TagSchema",
    "TagWorker",
    "Usage",
    "annotation_workers",
    "locate",
    "parse_passages",
]


def __getattr__(name: str) -> object:
    # OpenAIClient imports httpx (the ``openai`` extra): only when asked for.
    if name == "OpenAIClient":
        try:
            from .openai_client import OpenAIClient
        except ModuleNotFoundError as exc:
            if exc.name != "httpx":
                raise
            raise ImportError(
                "OpenAIClient needs httpx: pip install 'jobledger[openai]'", name="httpx"
            ) from exc
        return OpenAIClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
