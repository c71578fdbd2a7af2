"""The six annotation workers as one set: :func:`annotation_workers` (sharing
one fetcher and one client) and :data:`ANNOTATION_JOB_TYPES` (their job
types, params checked at submit).
"""

from __future__ import annotations

from collections.abc import Iterable

from jobledger.core import (
    JobType,
)
from jobledger.workers import JobWorker

from .fetchers import ContentFetcher
from .generation import GenerationWorker
from .inference import InferenceClient
from .marking import AssessmentWorker, CommentWorker, HighlightWorker, ReferenceWorker, TagWorker
from .offline import OfflineClient
from .params import (
    AnnotationResult,
    AssessmentParams,
    CommentParams,
    GenerationParams,
    GenerationResult,
    HighlightParams,
    ReferenceParams,
    TagParams,
)

__all__ = ["ANNOTATION_JOB_TYPES", "annotation_workers"]


def annotation_workers(
    fetcher: ContentFetcher, client: InferenceClient | None = None
) -> list[JobWorker]:
    """The six workers sharing one fetcher and one client (default: offline)."""
    shared = client if client is not None else OfflineClient()
    return [
        HighlightWorker(fetcher, shared),
        CommentWorker(fetcher, shared),
        AssessmentWorker(fetcher, shared),
        TagWorker(fetcher, shared),
        ReferenceWorker(fetcher, shared),
        GenerationWorker(fetcher, shared),
    ]


def _types() -> Iterable[JobType]:
    for name, params, result, description in (
        ("highlight-annotation", HighlightParams, AnnotationResult, "key passages"),
        ("comment-annotation", CommentParams, AnnotationResult, "explanatory comments"),
        ("assessment-annotation", AssessmentParams, AnnotationResult, "evaluative assessments"),
        ("tag-annotation", TagParams, AnnotationResult, "structural roles by a tag schema"),
        ("reference-annotation", ReferenceParams, AnnotationResult, "entity references"),
        ("generation", GenerationParams, GenerationResult, "a new document, linked"),
    ):
        yield JobType(
            name=name, description=description, params=params, result=result, max_retries=2
        )


ANNOTATION_JOB_TYPES: tuple[JobType, ...] = tuple(_types())
"""The six job types with their params checked at submit and two retries
(a model may answer better the next time)."""
