"""The demo behind ``jobledger demo``: the six annotation workers of
:mod:`jobledger.workers.annotators` on bundled sample documents, with the
offline client (no model runs), for two users, with a live view of the log.

The bundled documents (package data, ``jobledger/samples/*.md``; see
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
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources as package_files
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, NamedTuple, TypeVar

import msgspec
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
)
from rich.progress_bar import ProgressBar
from rich.text import Text

from jobledger.core import (
    JOB_ENDINGS,
    BodyAdd,
    Envelope,
    InvalidTransition,
    Job,
    JobCancelled,
    JobCancelRequested,
    JobCompleted,
    JobCreated,
    JobFailed,
    JobLeaseExpired,
    JobPartiallyCompleted,
    JobProgressed,
    JobRetryScheduled,
    JobSkipped,
    JobStarted,
    JobStatus,
    JobTimedOut,
    JobType,
    Mark,
    MarkBodyUpdated,
    MarkCreated,
    NotFound,
    Resource,
    ResourceCreated,
    RetryPolicy,
    SpecificResource,
    ValidationError,
)
from jobledger.store import VerifyReport, content_folder_for
from jobledger.workers import (
    ANNOTATION_JOB_TYPES,
    JobContext,
    JobWorker,
    NonRetryableError,
    OfflineClient,
    PartialResult,
    SkipJob,
    annotation_workers,
)

from .fetcher import LedgerFetcher
from .ledger import Ledger
from .ledger import open as open_ledger
from .terminal import printable

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

DEFAULT_PAUSE = 0.08
"""Seconds each small demo worker waits between two steps of its work (the
fetcher waits three times that per read)."""

DEFAULT_JOBS = 11
"""How many jobs a demo run submits unless told otherwise: the six annotation
job types, and every ending (completed, retried, failed, cancelled, partial
and skipped)."""

STATUS_STYLE: Mapping[JobStatus, str] = MappingProxyType(
    {
        JobStatus.PENDING: "dim",
        JobStatus.RUNNING: "cyan",
        JobStatus.SUSPENDED: "blue",
        JobStatus.COMPLETED: "green",
        JobStatus.PARTIAL: "yellow",
        JobStatus.FAILED: "red",
        JobStatus.CANCELLED: "magenta",
        JobStatus.SKIPPED: "bright_black",
        JobStatus.TIMED_OUT: "red",
    }
)
"""The rich style of each job status, in the live bars and the CLI's tables."""

_GLYPH: Mapping[JobStatus, str] = MappingProxyType(
    {
        JobStatus.PENDING: "·",
        JobStatus.RUNNING: "▸",
        JobStatus.SUSPENDED: "‖",
        JobStatus.COMPLETED: "✓",
        JobStatus.PARTIAL: "◐",
        JobStatus.FAILED: "✗",
        JobStatus.CANCELLED: "■",
        JobStatus.SKIPPED: "↷",
        JobStatus.TIMED_OUT: "⌛",
    }
)


def _load_samples() -> Mapping[str, str]:
    folder = package_files.files("jobledger").joinpath("samples")
    found = {
        entry.name.removesuffix(".md"): entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".md")
    }
    return MappingProxyType(dict(sorted(found.items())))


SAMPLES: Mapping[str, str] = _load_samples()
"""The bundled sample documents (``jobledger/samples/ID.md``), by resource id,
in order of id. ``boulangerie`` is in French, on purpose."""

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")
_FUNCTION_WORDS: Mapping[str, frozenset[str]] = {
    "English": frozenset({"the", "a", "an", "of", "and", "to", "in", "is", "it", "that", "by"}),
    "French": frozenset({"le", "la", "les", "de", "des", "du", "et", "un", "une", "est", "sur"}),
}


def _sentences(text: str) -> list[str]:
    """Split ``text`` into sentences (at ``.``, ``!`` or ``?`` followed by
    space), leaving out markdown headings."""
    prose = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return [s for s in _SENTENCE_END.split(prose.strip()) if s]


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _language(text: str) -> str:
    """``"English"``, ``"French"`` or ``"unknown"``: whose function words ``text`` uses most."""
    words = _words(text)
    counts = {lang: sum(w in common for w in words) for lang, common in _FUNCTION_WORDS.items()}
    best = max(counts, key=lambda lang: counts[lang])
    return best if counts[best] > 0 else "unknown"


def _syllables(word: str) -> int:
    """A rough English syllable count: vowel groups, less a silent final ``e``."""
    groups = len(re.findall(r"[aeiouy]+", word))
    if word.endswith("e") and not word.endswith(("le", "ee")) and groups > 1:
        groups -= 1
    return max(1, groups)


def body_values(annotation: Mapping[str, Any]) -> list[str]:
    """What a mark's body says, one string per body item: a ``TextualBody``'s
    value (with its purpose, if any, as ``purpose: value``), a link as ``→``
    and its target. A body that is not a W3C list is shown as its JSON."""
    body = annotation.get("body")
    if body is None:
        return []
    items = body if isinstance(body, list) else [body]
    values: list[str] = []
    for item in items:
        if isinstance(item, dict) and item.get("type") == "TextualBody":
            purpose = item.get("purpose")
            value = str(item.get("value", ""))
            values.append(f"{purpose}: {value}" if purpose else value)
        elif isinstance(item, dict) and item.get("type") == "SpecificResource":
            values.append(f"→ {item.get('source')}")
        else:
            values.append(msgspec.json.encode(item).decode())
    return values


# -- reading the documents ---------------------------------------------------


class DemoFetcher(LedgerFetcher):
    """The demo's fetcher: a :class:`~jobledger.LedgerFetcher` (the samples
    are stored as the ledger's resources) that behaves like a document store
    across a network, waiting ``latency`` seconds per read.

    The first read of each resource in ``flaky`` raises ``ConnectionError``
    (a dropped connection: the job's attempt fails and is retried); later
    reads succeed. ``reads`` counts the reads.
    """

    def __init__(self, *, latency: float = 0.0, flaky: Collection[str] = ()) -> None:
        if latency < 0:
            raise ValueError("latency must not be negative")
        super().__init__()
        self.latency = latency
        self.flaky = set(flaky)
        self.reads = 0

    async def fetch(self, resource_id: str) -> str:
        self.reads += 1
        await asyncio.sleep(self.latency)
        if resource_id in self.flaky:
            self.flaky.discard(resource_id)
            raise ConnectionError(f"connection reset while reading {resource_id} (a flaky store)")
        return await super().fetch(resource_id)


# -- params ----------------------------------------------------------------


class DocParams(msgspec.Struct, frozen=True, kw_only=True):
    """Params of ``readability``: one document (a resource id)."""

    doc: str


class IndexParams(msgspec.Struct, frozen=True, kw_only=True):
    """Params of ``index``: the documents to index."""

    docs: Annotated[list[str], msgspec.Meta(min_length=1)]


class DigestParams(msgspec.Struct, frozen=True, kw_only=True):
    """Params of ``digest``: the sources (document ids) to gather."""

    sources: Annotated[list[str], msgspec.Meta(min_length=1)]


JOB_TYPES: tuple[JobType, ...] = (
    *ANNOTATION_JOB_TYPES,
    JobType(name="index", description="a word index of documents", params=IndexParams),
    JobType(name="digest", description="lead sentences of sources", params=DigestParams),
    JobType(name="readability", description="Flesch reading ease", params=DocParams),
)
"""The demo's job types, registered when the demo opens its ledger: the six
annotation job types and the three small ones."""

_P = TypeVar("_P", bound=msgspec.Struct)


def _params(job: Job, kind: type[_P]) -> _P:
    """``job.params`` as ``kind``; params that do not fit fail the job at once
    (retrying cannot fix them)."""
    try:
        return msgspec.convert(job.params, kind)
    except msgspec.ValidationError as exc:
        raise NonRetryableError(f"invalid params: {exc}") from exc


# -- the small workers -------------------------------------------------------


class _DemoWorker(JobWorker):
    """A worker that reads documents through ``fetcher`` and pauses ``pause``
    seconds between steps; two jobs at once; every step's progress is
    reported (no throttling: the demo shows each one)."""

    concurrency = 2
    progress_interval = 0.0

    def __init__(
        self, fetcher: DemoFetcher, *, pause: float = DEFAULT_PAUSE, name: str | None = None
    ) -> None:
        super().__init__(name=name)
        if pause < 0:
            raise ValueError("pause must not be negative")
        self.fetcher = fetcher
        self.pause = pause

    async def step(self) -> None:
        """Wait between two steps of the work, so progress is visible."""
        await asyncio.sleep(self.pause)


class IndexWorker(_DemoWorker):
    """``index``: an inverted index (word → documents) of ``params["docs"]``,
    one sentence per step, each step at least ``min_step`` seconds (so the
    demo can cancel it midway even with ``pause`` 0).

    Checks ``ctx.stopping`` between steps and returns what it has when asked
    to stop (the job then ends ``cancelled``). Result: ``{"docs",
    "sentences", "terms"}``. Raises ``NotFound`` for an unknown document.
    """

    job_types: ClassVar[tuple[str, ...]] = ("index",)
    min_step = 0.01

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        docs = _params(job, IndexParams).docs
        sentences = [(doc, s) for doc in docs for s in _sentences(await self.fetcher.fetch(doc))]
        index: dict[str, set[str]] = {}
        done = 0
        for doc, sentence in sentences:
            if ctx.stopping:
                break  # cancelled (or suspended): wrap up and return
            await asyncio.sleep(max(self.pause, self.min_step))
            for word in _words(sentence):
                index.setdefault(word, set()).add(doc)
            done += 1
            await ctx.progress(
                processed=done,
                total=len(sentences),
                stage="indexing",
                message=f"{len(index)} terms",
            )
        return {"docs": len(docs), "sentences": done, "terms": len(index)}


class DigestWorker(_DemoWorker):
    """``digest``: the lead sentence of each of ``params["sources"]``, one
    source per step.

    A source that is missing (``NotFound``) or blank is unreadable; if any
    is, the job ends ``partial`` (a :class:`PartialResult`) with the error
    ``"k of n sources unreadable: …"``. Result: ``{"read", "unreadable",
    "words", "digest"}``.
    """

    job_types: ClassVar[tuple[str, ...]] = ("digest",)

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any] | PartialResult:
        sources = _params(job, DigestParams).sources
        leads: dict[str, str] = {}
        unreadable: list[str] = []
        words = 0
        for done, source in enumerate(sources, start=1):
            await self.step()
            try:
                parts = _sentences(await self.fetcher.fetch(source))
            except NotFound:
                parts = []
            if parts:
                leads[source] = parts[0]
                words += sum(len(_words(p)) for p in parts)
            else:
                unreadable.append(source)
            await ctx.progress(
                processed=done,
                total=len(sources),
                stage="reading",
                message=f"{len(unreadable)} unreadable",
            )
        result = {
            "read": list(leads),
            "unreadable": unreadable,
            "words": words,
            "digest": " ".join(leads.values()),
        }
        if unreadable:
            return PartialResult(
                result=result,
                error=f"{len(unreadable)} of {len(sources)} sources unreadable: "
                + ", ".join(unreadable),
            )
        return result


class ReadabilityWorker(_DemoWorker):
    """``readability``: the Flesch reading ease of ``params["doc"]``, one
    sentence per step, after checking the document is in English.

    Raises :class:`SkipJob` (the job ends ``skipped``) for a document that is
    not in English: the formula's syllable counts only fit English. Result:
    ``{"doc", "sentences", "words", "syllables", "readingEase"}``. Raises
    ``NotFound`` for an unknown document.
    """

    job_types: ClassVar[tuple[str, ...]] = ("readability",)

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        doc = _params(job, DocParams).doc
        text = await self.fetcher.fetch(doc)
        language = _language(text)
        if language != "English":
            raise SkipJob(f"{doc} is {language}, not English")
        parts = _sentences(text)
        words = syllables = 0
        for done, sentence in enumerate(parts, start=1):
            await self.step()
            found = _words(sentence)
            words += len(found)
            syllables += sum(_syllables(w) for w in found)
            await ctx.progress(processed=done, total=len(parts), stage="scoring")
        ease = 206.835 - 1.015 * words / len(parts) - 84.6 * syllables / words
        return {
            "doc": doc,
            "sentences": len(parts),
            "words": words,
            "syllables": syllables,
            "readingEase": round(ease, 1),
        }


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


# -- the live view ---------------------------------------------------------

_TYPE_WIDTH = max(len(t.name) for t in JOB_TYPES)


def _short(job_id: str) -> str:
    return "…" + job_id[-8:]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _quote(annotation: Mapping[str, Any], limit: int = 40) -> str:
    """The text a mark quotes, in quotes and cut to ``limit``; ``""`` if none."""
    target = annotation.get("target")
    for selector in target.get("selector", []) if isinstance(target, dict) else []:
        if isinstance(selector, dict) and selector.get("type") == "TextQuoteSelector":
            return repr(_cut(" ".join(str(selector.get("exact", "")).split()), limit))
    return ""


def _compact(value: Any, limit: int = 60) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _glyph(status: JobStatus) -> Text:
    return Text(_GLYPH[status], STATUS_STYLE[status])


def _label(status: JobStatus, text: str | None = None, sep: str = " ") -> Text:
    """A bar's detail: ``status`` in its style, then ``sep`` and ``text``
    (:func:`~jobledger.terminal.printable`), if any."""
    head = Text(str(status), STATUS_STYLE[status])
    return head.append(f"{sep}{printable(text)}") if text else head


class _TextField(ProgressColumn):
    """A column that shows the task's field ``name``, a rich ``Text`` (user
    data in a bar never goes through rich markup or emoji codes)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def render(self, task: Task) -> Text:
        value = task.fields.get(self.name)
        return value.copy() if isinstance(value, Text) else Text(printable(str(value or "")))


class _StatusBar(BarColumn):
    """A bar in the colour of its task's ``bar`` field, if set (a job that
    ended otherwise than completed, or waits for a retry); rich's own colours
    (in progress, finished) otherwise."""

    def render(self, task: Task) -> ProgressBar:
        bar = super().render(task)
        style = task.fields.get("bar")
        if style:
            bar.complete_style = bar.finished_style = style
        return bar


@dataclass
class _Row:
    job_id: str
    job_type: str
    user: str
    task: TaskID | None = None
    total: float | None = None
    marks: int = 0
    cancelled_by: str | None = None


@dataclass
class _Tracker:
    """Folds the live envelopes into a progress view: rich bars, or plain lines.

    ``stop_at`` is set once every job is terminal: the ``seq`` of the last
    event the view must show.
    """

    console: Console
    progress: Progress | None
    rows: dict[str, _Row] = field(default_factory=dict)
    last_seq: int = 0
    marks: int = 0
    stop_at: int | None = None

    @property
    def done(self) -> bool:
        return self.stop_at is not None and self.last_seq >= self.stop_at

    def _line(self, row: _Row, seq: int, what: str, style: str) -> None:
        job = printable(f"{row.job_id}  {row.job_type:<{_TYPE_WIDTH}}  {row.user:<5}")
        self.console.print(
            Text.assemble(f"{seq:>5}  {job}  ", (printable(what), style)), soft_wrap=True
        )

    def _show(self, row: _Row, seq: int, line: str, style: str = "", **bar: Any) -> None:
        """Show ``line`` (made printable, in ``style``) as a plain line, or
        update the job's bar with ``bar``."""
        if self.progress is None:
            self._line(row, seq, line, style)
        elif row.task is not None:
            self.progress.update(row.task, **bar)

    def handle(self, env: Envelope) -> None:
        """Show one envelope; events of jobs created before the run are skipped;
        the resources the demo stores itself get a line of their own."""
        self.last_seq = env.seq
        data = env.data
        if isinstance(data, JobCreated):
            row = _Row(job_id=data.job_id, job_type=data.job_type, user=data.user.id)
            self.rows[row.job_id] = row
            if self.progress is not None:
                row.task = self.progress.add_task(
                    printable(f"{_short(row.job_id)} {row.job_type:<{_TYPE_WIDTH}} {row.user:<5}"),
                    total=None,
                    bar=None,
                    glyph=_glyph(JobStatus.PENDING),
                    detail=_label(JobStatus.PENDING),
                )
            retries = f" (up to {data.max_retries} retries)" if data.max_retries else ""
            self._show(row, env.seq, f"created{retries}")
            return
        if isinstance(data, ResourceCreated) and data.job_id is None:
            self.console.print(
                Text(
                    printable(
                        f"{env.seq:>5}  {data.resource_id}  stored {data.name} ({data.size} bytes)"
                    )
                ),
                soft_wrap=True,
            )
            return
        found = self.rows.get(getattr(data, "job_id", None) or "")
        if found is None:
            return
        self._handle_job(found, env)

    def _handle_job(self, row: _Row, env: Envelope) -> None:
        data = env.data
        seq = env.seq
        # A finished job's bar stops pulsing: it gets a total if it never had one.
        last = row.total or 1
        if isinstance(data, JobStarted):
            self._show(
                row,
                seq,
                f"started (attempt {data.attempt}, worker {data.worker})",
                completed=0,
                bar=None,
                glyph=_glyph(JobStatus.RUNNING),
                detail=_label(JobStatus.RUNNING, f"(attempt {data.attempt})"),
            )
        elif isinstance(data, JobProgressed):
            note = " ".join(x for x in (data.stage, data.message) if x)
            done: float = data.percent
            total: float = 100
            amount = f"{data.percent:.0f}%"
            if data.processed is not None and data.total is not None:
                done, total = data.processed, data.total
                amount = f"{done}/{total}"
            row.total = total
            self._show(
                row,
                seq,
                f"progress {amount} {note}".rstrip(),
                completed=done,
                total=total,
                detail=Text(printable(note)),
            )
        elif isinstance(data, MarkCreated):
            row.marks += 1
            self.marks += 1
            motivation = data.annotation.get("motivation", "?")
            said = "; ".join(body_values(data.annotation))
            line = f"mark on {data.resource_id}: {motivation} {_quote(data.annotation)}"
            moved: dict[str, Any] = {"completed": row.marks} if row.total else {}
            self._show(row, seq, f"{line} {_cut(said, 50)}".rstrip(), **moved)
        elif isinstance(data, MarkBodyUpdated):
            links = [
                op.item.source
                for op in data.operations
                if isinstance(op, BodyAdd) and isinstance(op.item, SpecificResource)
            ]
            what = f"linked to {', '.join(links)}" if links else "body changed"
            self._show(row, seq, f"mark {data.mark_id} {what}")
        elif isinstance(data, ResourceCreated):
            self._show(row, seq, f"resource {data.resource_id} {data.name!r} ({data.size} bytes)")
        elif isinstance(data, JobRetryScheduled):
            delay = max(0.0, (data.run_at - env.time).total_seconds())
            self._show(
                row,
                seq,
                f"retry scheduled in {delay:.1f} s: attempt {data.attempt} failed: "
                f"{data.error_type + ': ' if data.error_type else ''}{data.error}",
                "yellow",
                bar="yellow",
                glyph=Text("↻", "yellow"),
                detail=Text.assemble(
                    (f"retry in {delay:.1f} s", "yellow"),
                    printable(f" (attempt {data.attempt}: {data.error})"),
                ),
            )
        elif isinstance(data, JobLeaseExpired):
            then = "retry scheduled" if data.retry_at is not None else "no retries left"
            self._show(
                row,
                seq,
                f"lease expired (attempt {data.attempt}); {then}",
                "yellow",
                bar="yellow",
                glyph=Text("↻", "yellow"),
                detail=Text.assemble(("lease expired", "yellow"), f" ({then})"),
            )
        elif isinstance(data, JobCancelRequested):
            why = f": {data.reason}" if data.reason else ""
            row.cancelled_by = env.actor
            self._show(
                row,
                seq,
                f"cancel requested by {env.actor}{why}",
                "magenta",
                detail=Text.assemble(
                    ("cancelling…", "magenta"), printable(f" (asked by {env.actor})")
                ),
            )
        elif isinstance(data, JobCancelled):
            at = f" (attempt {data.attempt})" if data.attempt is not None else ""
            why = f": {data.reason}" if data.reason else ""
            by = f"by {row.cancelled_by}" if row.cancelled_by else None
            self._end(row, seq, last, JobStatus.CANCELLED, f"cancelled{at}{why}", by, " ")
        elif isinstance(data, JobCompleted):
            again = f"(attempt {data.attempt})" if data.attempt > 1 else None
            line = f"completed {_compact(data.result)}"
            self._end(row, seq, last, JobStatus.COMPLETED, line, again, " ")
        elif isinstance(data, JobPartiallyCompleted):
            line = f"partial: {data.error}; result {_compact(data.result)}"
            self._end(row, seq, last, JobStatus.PARTIAL, line, data.error)
        elif isinstance(data, JobSkipped):
            line = f"skipped: {data.reason}"
            self._end(row, seq, last, JobStatus.SKIPPED, line, data.reason)
        elif isinstance(data, JobFailed):
            kind = f"{data.error_type}: " if data.error_type else ""
            line = f"failed: {kind}{data.error}"
            self._end(row, seq, last, JobStatus.FAILED, line, data.error)
        elif isinstance(data, JobTimedOut):
            line = f"timed out: {data.error}"
            self._end(row, seq, last, JobStatus.TIMED_OUT, line, data.error)

    def _end(
        self,
        row: _Row,
        seq: int,
        last: float,
        status: JobStatus,
        line: str,
        detail: str | None,
        joiner: str = ": ",
    ) -> None:
        """Show a job's ending: a plain line, or its bar in the status's colour
        (a completed bar is full)."""
        bar: dict[str, Any] = {"total": last, "glyph": _glyph(status)}
        if status is JobStatus.COMPLETED:
            bar["completed"] = last
        else:
            bar["bar"] = STATUS_STYLE[status]
        bar["detail"] = _label(status, detail, joiner)
        self._show(row, seq, line, STATUS_STYLE[status], **bar)


async def _follow(ledger: Ledger, after: int, tracker: _Tracker) -> None:
    """Feed ``tracker`` the log after ``after`` until it is done."""
    async with contextlib.aclosing(ledger.events(after, follow=True)) as envelopes:
        async for env in envelopes:
            tracker.handle(env)
            if tracker.done:
                return


async def _cancel_midway(ledger: Ledger, job: Job, steps: int) -> None:
    """Cancel ``job`` as its owner once it reports ``steps`` steps done; do
    nothing if it ends first."""
    async with contextlib.aclosing(
        ledger.events(job.created_seq - 1, follow=True, job_id=job.id)
    ) as envelopes:
        async for env in envelopes:
            data = env.data
            if isinstance(data, JobProgressed) and (data.processed or 0) >= steps:
                with contextlib.suppress(InvalidTransition):  # it ended meanwhile
                    await ledger.cancel(
                        job.id, user=job.user, reason=f"{job.user.id} no longer needs it"
                    )
                return
            if env.type in JOB_ENDINGS:
                return


def _prepare(path: str | Path, fresh: bool) -> str:
    """The absolute path of the log (or ``":memory:"``); with ``fresh``, delete
    the file, its ``-wal``/``-shm``/``-journal`` companions and its content
    folder (``PATH.content``) first."""
    if str(path) == ":memory:":
        return ":memory:"
    where = os.path.abspath(path)
    if fresh:
        if os.path.exists(where) and not os.path.isfile(where):
            raise ValidationError(f"{where} is not a file", field="path")
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{where}{suffix}").unlink(missing_ok=True)
        shutil.rmtree(content_folder_for(where), ignore_errors=True)
    return where


async def _settle(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Wait for ``tasks``; re-raise the first exception one of them raised."""
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, Exception):
            raise outcome


async def _store_samples(ledger: Ledger) -> None:
    """Store each bundled sample as a resource (its id, ``ID.md``), unless the
    log already has it (a run appending to an earlier run's log)."""
    for resource_id, text in SAMPLES.items():
        try:
            await ledger.resource(resource_id)
        except NotFound:
            await ledger.create_resource(
                f"{resource_id}.md", text, actor="demo", resource_id=resource_id
            )


def _names(mark: Mark, value: str) -> bool:
    """Whether ``mark``'s body has a ``TextualBody`` of ``value``."""
    body = mark.annotation.get("body")
    return isinstance(body, list) and any(
        isinstance(item, dict) and item.get("value") == value for item in body
    )


async def _submit_linked(
    ledger: Ledger, spec: _Spec, user: str, reference: Job | None, timeout: float
) -> Job:
    """Submit the generation job of ``spec`` once the ``reference`` job has
    ended: about the first mark it made of the entity type ``spec.link``,
    from its document, linking that mark. With no such job or mark, the job
    writes notes on the bundled samples, linked to nothing."""
    params: dict[str, Any] = {"title": "Notes on the sample documents"}
    if reference is not None:
        ended = await ledger.wait(reference.id, timeout=timeout)
        source = str(reference.params["resourceId"])
        params["sourceResourceId"] = source
        found = [
            m
            for m in await ledger.marks(source)
            if m.job_id == ended.id and spec.link is not None and _names(m, spec.link)
        ]
        if found and found[0].exact:
            name = found[0].exact
            params["title"] = name
            params["prompt"] = f"Who was {name}, and what part did they play in this story?"
            params["referenceMarkId"] = found[0].id
    return await ledger.submit(
        spec.job_type, params, user=user, max_retries=spec.max_retries, retry=spec.retry
    )


async def _documents(ledger: Ledger, jobs: Sequence[Job]) -> tuple[DemoDocument, ...]:
    """The bundled samples and the resources ``jobs`` wrote, with the marks
    ``jobs`` made on each."""
    ids = {job.id for job in jobs}
    written = [
        str(job.result["resourceId"])
        for job in jobs
        if job.job_type == "generation" and job.result and "resourceId" in job.result
    ]
    documents: list[DemoDocument] = []
    for resource_id in (*SAMPLES, *written):
        documents.append(
            DemoDocument(
                resource=await ledger.resource(resource_id),
                content=(await ledger.content(resource_id)).decode(),
                marks=tuple(m for m in await ledger.marks(resource_id) if m.job_id in ids),
            )
        )
    return tuple(documents)


async def run_demo(
    path: str | Path = "jobledger.db",
    *,
    jobs: int = DEFAULT_JOBS,
    fresh: bool = False,
    pause: float = DEFAULT_PAUSE,
    console: Console | None = None,
    live: bool = False,
) -> DemoReport:
    """Run ``jobs`` demo jobs on the SQLite file ``path`` and return what happened.

    Appends to an existing file unless ``fresh``, which first deletes it (and
    its ``-wal``/``-shm`` files and its content folder). Registers
    :data:`JOB_TYPES`; stores the bundled samples as resources (if the log
    does not have them yet); submits the batch: the annotation jobs with the
    offline client, one job whose first read fails and is retried, one on a
    missing document, one the demo cancels midway as its owner, and a
    generation job once the reference job before it has ended. Progress goes
    to ``console`` (default: a new stdout console) as live bars when
    ``live`` is true, else as one plain line per event. Returns once every
    job is terminal, the view has shown every event up to then, and the log
    has been verified. Raises ``ValidationError`` for ``jobs < 1`` or a
    negative ``pause``, and any ``JobledgerError`` the ledger raises (for
    example ``StorageError`` for a file that is not a jobledger log).
    """
    if not isinstance(jobs, int) or jobs < 1:
        raise ValidationError("must be at least 1", field="jobs")
    if pause < 0:
        raise ValidationError("must not be negative", field="pause")
    console = console or Console()
    where = _prepare(path, fresh)
    batch = _demo_batch(jobs)
    client = OfflineClient()
    fetcher = DemoFetcher(latency=3 * pause, flaky=_FLAKY)
    # A short poll: a retry comes due 0.2 s after its failure, and the workers
    # find due retries by polling.
    async with open_ledger(
        where, workers=_workers(fetcher, pause), job_types=JOB_TYPES, poll_interval=0.05
    ) as ledger:
        fetcher.bind(ledger)
        start = await ledger.head()
        console.print(
            Text(
                printable(
                    f"jobledger demo: {jobs} jobs for alice and bob on {where} (log head {start})"
                )
            ),
            soft_wrap=True,
        )
        console.print(
            Text(
                printable(
                    f"offline: the annotation workers use the offline client ({client.name}); "
                )
                + "no model runs, passages are picked by plain extractive rules",
                "bold",
            ),
            soft_wrap=True,
        )
        progress = (
            Progress(
                _TextField("glyph"),
                TextColumn("{task.description}", markup=False),
                _StatusBar(),
                MofNCompleteColumn(),
                _TextField("detail"),
                console=console,
            )
            if live
            else None
        )
        tracker = _Tracker(console=console, progress=progress)
        helpers: list[asyncio.Task[Any]] = []
        # Generous: as if every job ran alone, a few dozen steps each.
        budget = 30.0 + len(batch) * 30 * (pause + 0.01)
        with progress if progress is not None else contextlib.nullcontext():
            follower = asyncio.create_task(_follow(ledger, start, tracker))
            try:
                await _store_samples(ledger)
                pending: list[Job | asyncio.Task[Job]] = []
                reference: Job | None = None
                for spec, user in batch:
                    if spec.link is not None:
                        linked = asyncio.create_task(
                            _submit_linked(ledger, spec, user, reference, budget)
                        )
                        helpers.append(linked)
                        pending.append(linked)
                        continue
                    job = await ledger.submit(
                        spec.job_type,
                        spec.params,
                        user=user,
                        max_retries=spec.max_retries,
                        retry=spec.retry,
                    )
                    pending.append(job)
                    if spec.job_type == "reference-annotation":
                        reference = job
                    if spec.cancel_after is not None:
                        helpers.append(
                            asyncio.create_task(_cancel_midway(ledger, job, spec.cancel_after))
                        )
                submitted = [p if isinstance(p, Job) else await p for p in pending]
                final = await asyncio.gather(
                    *(ledger.wait(job.id, timeout=budget) for job in submitted)
                )
                await _settle(helpers)
                tracker.stop_at = await ledger.head()
                if tracker.done:
                    follower.cancel()
                # The follower stops by itself once it has shown the head.
                await _settle([follower])
            finally:
                for task in (*helpers, follower):
                    if not task.done():
                        task.cancel()
                await asyncio.gather(*helpers, follower, return_exceptions=True)
        documents = await _documents(ledger, final)
        head = await ledger.head()
        report = await ledger.verify()
    return DemoReport(
        path=where,
        jobs=tuple(final),
        events=head,
        new_events=head - start,
        marks=tracker.marks,
        documents=documents,
        generator=client.name,
        offline=client.offline,
        verify=report,
    )
