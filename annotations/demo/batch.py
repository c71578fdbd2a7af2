"""The demo's batch: which jobs a run submits, for which users, on which
documents (:data:`DEFAULT_JOBS`, every job type and every ending), the
workers that run them, and the report a run returns (:class:`DemoReport`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec

from jobledger.annotations import (
    OfflineClient,
    annotation_workers,
)
from jobledger.core import (
    Job,
    Mark,
    Resource,
    RetryPolicy,
)
from jobledger.store import VerifyReport
from jobledger.workers import JobWorker

from .documents import SAMPLES, DemoFetcher
from .small_workers import DigestWorker, IndexWorker, ReadabilityWorker

__all__ = ["DEFAULT_JOBS", "DemoDocument", "DemoReport"]


DEFAULT_JOBS = 11
"""How many jobs a demo run submits unless told otherwise: the six annotation
job types, and every ending (completed, retried, failed, cancelled, partial
and skipped)."""

# -- the batch -------------------------------------------------------------


class _Spec(NamedTuple):
    """One demo job: its type and params, per-job retry rules, ``cancel_after``:
    cancel it (as its owner) once it reports that many steps, and ``link``: a
    generation job, submitted once the reference job before it has ended,
    about the first mark of that entity type it made (linked to the new
    resource)."""

    job_type: str
    params: dict[str, Any]
    max_retries: int | None = None
    retry: RetryPolicy | None = None
    cancel_after: int | None = None
    link: str | None = None


_QUICK_RETRY = RetryPolicy(base_delay=0.2, max_delay=0.5, jitter=False)
"""Retry after 0.2 s, then 0.4 s (real time: kept short for the demo)."""

_FLAKY = ("nap-recall",)
"""The documents whose first read drops the connection."""

_MISSING = "lost-chapter"
"""A document the demo's jobs ask for that does not exist."""

_BATCH: Sequence[_Spec] = (
    _Spec("highlight-annotation", {"resourceId": "analytical-engine", "density": 2}),
    _Spec(
        "reference-annotation",
        {
            "resourceId": "analytical-engine",
            "entityTypes": ["Person", "Location", "Organization", "Date"],
        },
    ),
    _Spec(
        "tag-annotation",
        {"resourceId": "nap-recall", "schemaId": "scientific-imrad"},
        max_retries=2,
        retry=_QUICK_RETRY,
    ),
    _Spec("highlight-annotation", {"resourceId": _MISSING}, max_retries=0),
    _Spec("index", {"docs": list(SAMPLES)}, cancel_after=6),
    _Spec("digest", {"sources": ["analytical-engine", _MISSING, "four-day-week"]}),
    _Spec("readability", {"doc": "boulangerie"}),
    _Spec("generation", {}, link="Person"),
    _Spec("tag-annotation", {"resourceId": "four-day-week", "schemaId": "argument-toulmin"}),
    _Spec(
        "comment-annotation",
        {"resourceId": "analytical-engine", "tone": "explanatory", "density": 2},
    ),
    _Spec(
        "assessment-annotation",
        {"resourceId": "four-day-week", "tone": "balanced", "density": 4},
    ),
    _Spec("readability", {"doc": "four-day-week"}),
)
_USERS = ("alice", "bob")


def _demo_batch(count: int) -> list[tuple[_Spec, str]]:
    """The first ``count`` demo jobs as ``(spec, user)``: the bundled specs in
    turn, users alternating ``alice`` and ``bob``. The first eleven show
    every job type and every ending: the third fails once and is retried,
    the fourth fails, the fifth is cancelled midway, the sixth ends partial,
    the seventh is skipped, the eighth writes and links a new resource."""
    return [(_BATCH[i % len(_BATCH)], _USERS[i % len(_USERS)]) for i in range(count)]


def _workers(fetcher: DemoFetcher, pause: float) -> list[JobWorker]:
    return [
        *annotation_workers(fetcher, OfflineClient()),
        IndexWorker(fetcher, pause=pause),
        DigestWorker(fetcher, pause=pause),
        ReadabilityWorker(fetcher, pause=pause),
    ]


class DemoDocument(msgspec.Struct, frozen=True, kw_only=True):
    """A document of a demo run: a bundled sample or a resource a generation
    job of the run wrote, its ``content`` (text), and the ``marks`` this run's
    jobs made on it as they are at the end (links included), in creation
    order."""

    resource: Resource
    content: str
    marks: tuple[Mark, ...]


class DemoReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one demo run did.

    ``jobs`` are this run's jobs in their final (terminal) state, in
    submission order; ``events`` is the number of events in the whole log
    and ``new_events`` how many this run appended; ``marks`` counts the marks
    this run's jobs created; ``documents`` are the bundled samples, then the
    resources this run's jobs wrote; ``generator`` names the inference
    client the annotation workers used and ``offline`` says no model ran;
    ``verify`` is the log's verification afterwards.
    """

    path: str
    jobs: tuple[Job, ...]
    events: int
    new_events: int
    marks: int
    documents: tuple[DemoDocument, ...]
    generator: str
    offline: bool
    verify: VerifyReport
