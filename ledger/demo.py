"""The demo behind ``jobledger demo``: a few workers doing small, real work on
bundled sample texts, a mixed batch of jobs for two users, and a live view of
the log while they run.

The workers:

- :class:`WordCountWorker` (``word-count``) counts the words of a document
  sentence by sentence, reporting ``processed``/``total`` sentences;
- :class:`HighlightWorker` (``highlight``) scans a document for sentences with
  given keywords and creates one mark per hit on the document;
- :class:`ChecksumWorker` (``checksum``) hashes a document chunk by chunk
  (SHA-256), reporting ``processed``/``total`` chunks;
- :class:`SummarizeWorker` (``summarize``) picks a document's lead sentence,
  and raises on a document with no sentences (``doc-blank``), so every demo
  batch of four or more jobs shows a failed job;
- :class:`FetchWorker` (``fetch``) "downloads" a document chunk by chunk from a
  server that drops the connection on the first ``flaky_attempts`` attempts;
  the demo submits one with ``max_retries=2`` and a short retry policy, so it
  fails once, is retried, and completes on attempt 2;
- :class:`IndexWorker` (``index``) builds a word index of several documents,
  one sentence per step, and stops when asked (``ctx.stopping``); the demo
  cancels it as its owner once it has made some progress;
- :class:`DigestWorker` (``digest``) gathers the lead sentences of several
  sources; some are unreadable, so it returns a :class:`PartialResult`;
- :class:`ReadabilityWorker` (``readability``) scores English text (Flesch
  reading ease) and raises :class:`SkipJob` for a document in another
  language (the bundled ``doc-boulangerie`` is French).

The job types are registered (:data:`JOB_TYPES`, with params Structs), so bad
params are refused at submit. Each step pauses ``pause`` seconds (the work
itself takes microseconds), so a person can watch the progress bars move.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, NamedTuple, TypeVar

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TaskID,
    TextColumn,
)
from rich.progress_bar import ProgressBar
from rich.text import Text

from jobledger.core import (
    Agent,
    Annotation,
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
    MarkCreated,
    RetryPolicy,
    TextualBody,
    ValidationError,
)
from jobledger.store import VerifyReport
from jobledger.workers import JobContext, JobWorker, NonRetryableError, PartialResult, SkipJob

from .ledger import Ledger
from .ledger import open as open_ledger

__all__ = [
    "DEFAULT_JOBS",
    "DEFAULT_PAUSE",
    "JOB_TYPES",
    "SAMPLES",
    "STATUS_STYLE",
    "ChecksumParams",
    "ChecksumWorker",
    "DemoReport",
    "DigestParams",
    "DigestWorker",
    "DocParams",
    "FetchParams",
    "FetchWorker",
    "HighlightParams",
    "HighlightWorker",
    "IndexParams",
    "IndexWorker",
    "ReadabilityWorker",
    "SummarizeWorker",
    "WordCountWorker",
    "run_demo",
]

DEFAULT_PAUSE = 0.08
"""Seconds each demo worker waits between two steps of its work."""

DEFAULT_JOBS = 10
"""How many jobs a demo run submits unless told otherwise (enough for every
ending: completed, retried, failed, cancelled, partial and skipped)."""

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

SAMPLES: Mapping[str, str] = {
    "doc-rivers": (
        "A river is a long argument between water and stone. "
        "Over centuries the water wins, cutting valleys that later travellers mistake "
        "for permanent features of the land. "
        "Every bend in a river records a flood that nobody wrote down. "
        "Engineers straighten rivers to move ships faster, and the water slowly tries "
        "to bend them back. "
        "Where a river meets the sea it drops the silt it carried, building deltas "
        "grain by grain. "
        "Farmers have followed rivers since the first fields were sown, trusting the "
        "water to return each spring."
    ),
    "doc-bees": (
        "A honey bee colony is a single household of tens of thousands. "
        "The queen lays the eggs, sometimes two thousand in a summer day, while workers "
        "build comb, nurse larvae and guard the entrance of the hive. "
        "Foragers report where flowers grow by dancing on the comb, and the angle of "
        "the dance points toward the sun. "
        "When the hive grows crowded, the old queen leaves with half the workers to "
        "found a new home. "
        "Beekeepers read a hive by its sound as much as by its look. "
        "A calm hive hums, and a queenless one roars."
    ),
    "doc-ledgers": (
        "The oldest ledgers were clay tablets listing sheep, grain and beer. "
        "Double-entry bookkeeping, described in print in Venice in 1494, made every "
        "record appear twice, once as a debit and once as a credit. "
        "A ledger is trusted because nothing in it is erased: a mistake is corrected "
        "by a new entry that reverses the old one. "
        "Auditors replay the record from the first page to check that the balances "
        "still hold. "
        "Modern event logs borrow the same idea, and a hash chain makes a quiet edit "
        "to an old record impossible to hide. "
        "The record of what happened is worth more than a snapshot of what is."
    ),
    "doc-lighthouse": (
        "Lighthouse keepers kept a logbook of every night on the rock. "
        "They wrote down the weather, the ships that passed and the hours the lamp "
        "was lit. "
        "The lamp had to turn without stopping from dusk to dawn, so keepers wound "
        "the clockwork every few hours. "
        "Fog brought the horn, and a keeper might sound it all night. "
        "Most lights are automatic now, and the logbooks sit in archives. "
        "Historians read them to learn how storms and shipping changed over a century."
    ),
    "doc-boulangerie": (
        "Le boulanger se lève bien avant le jour pour allumer le four. "
        "La pâte a reposé toute la nuit dans le pétrin, sous un linge. "
        "Il façonne les baguettes une à une et les pose sur la toile. "
        "Quand le pain sort du four, la croûte chante en refroidissant. "
        "Les premiers clients attendent déjà devant la porte de la boutique."
    ),
    "doc-blank": "   ",
}
"""The bundled sample documents, by resource id. ``doc-blank`` is blank and
``doc-boulangerie`` is in French, on purpose."""

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")
_FUNCTION_WORDS: Mapping[str, frozenset[str]] = {
    "English": frozenset({"the", "a", "an", "of", "and", "to", "in", "is", "it", "that", "by"}),
    "French": frozenset({"le", "la", "les", "de", "des", "du", "et", "un", "une", "est", "sur"}),
}


def _sentences(text: str) -> list[str]:
    """Split ``text`` into sentences (at ``.``, ``!`` or ``?`` followed by space)."""
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _text(doc: str) -> str:
    """The text of the sample ``doc``; ``ValueError`` for an unknown one."""
    if doc not in SAMPLES:
        raise ValueError(f"unknown document {doc!r}; known: {', '.join(sorted(SAMPLES))}")
    return SAMPLES[doc]


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


# -- params ----------------------------------------------------------------


class DocParams(msgspec.Struct, frozen=True, kw_only=True):
    """Params of ``word-count``, ``summarize`` and ``readability``: one document."""

    doc: str


class HighlightParams(msgspec.Struct, frozen=True, kw_only=True):
    """Params of ``highlight``: a document and the keywords to mark."""

    doc: str
    keywords: Annotated[list[str], msgspec.Meta(min_length=1)]


class ChecksumParams(msgspec.Struct, frozen=True, kw_only=True):
    """Params of ``checksum``: a document and how many bytes to hash per step."""

    doc: str
    chunk: Annotated[int, msgspec.Meta(ge=1)] = 96


class FetchParams(msgspec.Struct, frozen=True, kw_only=True):
    """Params of ``fetch``: a document, and how many first attempts the
    (simulated) server drops the connection on."""

    doc: str
    flaky_attempts: Annotated[int, msgspec.Meta(ge=0)] = 0


class IndexParams(msgspec.Struct, frozen=True, kw_only=True):
    """Params of ``index``: the documents to index."""

    docs: Annotated[list[str], msgspec.Meta(min_length=1)]


class DigestParams(msgspec.Struct, frozen=True, kw_only=True):
    """Params of ``digest``: the sources (document ids) to gather."""

    sources: Annotated[list[str], msgspec.Meta(min_length=1)]


JOB_TYPES: tuple[JobType, ...] = (
    JobType(name="word-count", description="count a document's words", params=DocParams),
    JobType(name="highlight", description="mark keyword sentences", params=HighlightParams),
    JobType(name="checksum", description="SHA-256 of a document", params=ChecksumParams),
    JobType(name="summarize", description="a document's lead sentence", params=DocParams),
    JobType(name="fetch", description="download a document (flaky)", params=FetchParams),
    JobType(name="index", description="a word index of documents", params=IndexParams),
    JobType(name="digest", description="lead sentences of sources", params=DigestParams),
    JobType(name="readability", description="Flesch reading ease", params=DocParams),
)
"""The demo's job types, registered when the demo opens its ledger."""

_P = TypeVar("_P", bound=msgspec.Struct)


def _params(job: Job, kind: type[_P]) -> _P:
    """``job.params`` as ``kind``; params that do not fit fail the job at once
    (retrying cannot fix them)."""
    try:
        return msgspec.convert(job.params, kind)
    except msgspec.ValidationError as exc:
        raise NonRetryableError(f"invalid params: {exc}") from exc


# -- workers ---------------------------------------------------------------


class _DemoWorker(JobWorker):
    """A worker that pauses ``pause`` seconds between steps; two jobs at once;
    every step's progress is reported (no throttling: the demo shows each one)."""

    concurrency = 2
    progress_interval = 0.0

    def __init__(self, *, pause: float = DEFAULT_PAUSE, name: str | None = None) -> None:
        super().__init__(name=name)
        if pause < 0:
            raise ValueError("pause must not be negative")
        self.pause = pause

    async def step(self) -> None:
        """Wait between two steps of the work, so progress is visible."""
        await asyncio.sleep(self.pause)


class WordCountWorker(_DemoWorker):
    """``word-count``: counts the words of ``params["doc"]``, one sentence per step.

    Result: ``{"doc", "sentences", "words"}``. Raises ``ValueError`` for an
    unknown document.
    """

    job_types: ClassVar[tuple[str, ...]] = ("word-count",)

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        doc = _params(job, DocParams).doc
        parts = _sentences(_text(doc))
        words = 0
        for done, sentence in enumerate(parts, start=1):
            await self.step()
            words += len(sentence.split())
            await ctx.progress(
                processed=done, total=len(parts), stage="counting", message=f"{words} words"
            )
        return {"doc": doc, "sentences": len(parts), "words": words}


class HighlightWorker(_DemoWorker):
    """``highlight``: marks every sentence of ``params["doc"]`` that contains one
    of ``params["keywords"]`` (case-insensitive, as a word prefix).

    Creates one mark per (sentence, keyword) hit on the document, with a
    W3C-style annotation (motivation, keyword, text position and quote).
    Result: ``{"doc", "highlightsFound"}``. Raises ``ValueError`` for an
    unknown document (no keywords is refused at submit).
    """

    job_types: ClassVar[tuple[str, ...]] = ("highlight",)

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        params = _params(job, HighlightParams)
        doc = params.doc
        text = _text(doc)
        patterns = [(k, re.compile(rf"\b{re.escape(k)}", re.IGNORECASE)) for k in params.keywords]
        parts = _sentences(text)
        found = 0
        cursor = 0
        for done, sentence in enumerate(parts, start=1):
            await self.step()
            start = text.find(sentence, cursor)
            cursor = start + len(sentence)
            for keyword, pattern in patterns:
                if pattern.search(sentence):
                    found += 1
                    await ctx.create_mark(
                        doc,
                        Annotation.on_text(
                            doc,
                            text,
                            start,
                            cursor,
                            motivation="highlighting",
                            body=[TextualBody(value=keyword, purpose="tagging")],
                            creator=Agent.person(job.user),
                        ),
                    )
            await ctx.progress(
                processed=done, total=len(parts), stage="scanning", message=f"{found} highlights"
            )
        return {"doc": doc, "highlightsFound": found}


class ChecksumWorker(_DemoWorker):
    """``checksum``: the SHA-256 of ``params["doc"]`` (UTF-8), fed
    ``params["chunk"]`` bytes (default 96) per step.

    Result: ``{"doc", "bytes", "chunks", "sha256"}``. Raises ``ValueError``
    for an unknown document (a chunk size below 1 is refused at submit).
    """

    job_types: ClassVar[tuple[str, ...]] = ("checksum",)

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        params = _params(job, ChecksumParams)
        doc, chunk = params.doc, params.chunk
        data = _text(doc).encode()
        total = max(1, -(-len(data) // chunk))
        digest = hashlib.sha256()
        for done in range(1, total + 1):
            await self.step()
            digest.update(data[(done - 1) * chunk : done * chunk])
            await ctx.progress(processed=done, total=total, stage="hashing")
        return {"doc": doc, "bytes": len(data), "chunks": total, "sha256": digest.hexdigest()}


class SummarizeWorker(_DemoWorker):
    """``summarize``: the lead (first) sentence of ``params["doc"]``, after
    reading every sentence.

    Result: ``{"doc", "sentences", "summary"}``. Raises ``ValueError`` for a
    document with no sentences (the bundled ``doc-blank``) or an unknown one.
    """

    job_types: ClassVar[tuple[str, ...]] = ("summarize",)

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        doc = _params(job, DocParams).doc
        text = _text(doc)
        await self.step()
        parts = _sentences(text)
        if not parts:
            raise ValueError(f"document {doc!r} has no sentences to summarize")
        for done in range(1, len(parts) + 1):
            await self.step()
            await ctx.progress(processed=done, total=len(parts), stage="reading")
        return {"doc": doc, "sentences": len(parts), "summary": parts[0]}


class FetchWorker(_DemoWorker):
    """``fetch``: "downloads" ``params["doc"]`` ``chunk`` bytes per step from a
    simulated server that drops the connection halfway through each of the
    first ``params["flaky_attempts"]`` attempts (``ctx.attempt``).

    A dropped connection raises ``ConnectionError``: the attempt fails and
    the job is retried if it has retries left. Result: ``{"doc", "bytes",
    "attempt"}`` (the attempt that succeeded).
    """

    job_types: ClassVar[tuple[str, ...]] = ("fetch",)
    chunk = 128

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        params = _params(job, FetchParams)
        data = _text(params.doc).encode()
        total = max(1, -(-len(data) // self.chunk))
        received = 0
        for done in range(1, total + 1):
            await self.step()
            if ctx.attempt <= params.flaky_attempts and done > total // 2:
                raise ConnectionError(f"connection reset after {received} bytes (a flaky server)")
            received += len(data[(done - 1) * self.chunk : done * self.chunk])
            await ctx.progress(
                processed=done, total=total, stage="downloading", message=f"{received} bytes"
            )
        return {"doc": params.doc, "bytes": received, "attempt": ctx.attempt}


class IndexWorker(_DemoWorker):
    """``index``: an inverted index (word → documents) of ``params["docs"]``,
    one sentence per step, each step at least ``min_step`` seconds (so the
    demo can cancel it midway even with ``pause`` 0).

    Checks ``ctx.stopping`` between steps and returns what it has when asked
    to stop (the job then ends ``cancelled``). Result: ``{"docs",
    "sentences", "terms"}``. Raises ``ValueError`` for an unknown document.
    """

    job_types: ClassVar[tuple[str, ...]] = ("index",)
    min_step = 0.01

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        docs = _params(job, IndexParams).docs
        sentences = [(doc, s) for doc in docs for s in _sentences(_text(doc))]
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

    A source that is unknown or blank is unreadable; if any is, the job ends
    ``partial`` (a :class:`PartialResult`) with the error ``"k of n sources
    unreadable"``. Result: ``{"read", "unreadable", "words", "digest"}``.
    """

    job_types: ClassVar[tuple[str, ...]] = ("digest",)

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any] | PartialResult:
        sources = _params(job, DigestParams).sources
        leads: dict[str, str] = {}
        unreadable: list[str] = []
        words = 0
        for done, source in enumerate(sources, start=1):
            await self.step()
            parts = _sentences(SAMPLES.get(source, ""))
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
    ``{"doc", "sentences", "words", "syllables", "readingEase"}``.
    """

    job_types: ClassVar[tuple[str, ...]] = ("readability",)

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        doc = _params(job, DocParams).doc
        text = _text(doc)
        await self.step()
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
    """One demo job: its type and params, per-job retry rules, and
    ``cancel_after``: cancel it (as its owner) once it reports that many steps."""

    job_type: str
    params: dict[str, Any]
    max_retries: int | None = None
    retry: RetryPolicy | None = None
    cancel_after: int | None = None


_QUICK_RETRY = RetryPolicy(base_delay=0.2, max_delay=0.5, jitter=False)
"""Retry after 0.2 s, then 0.4 s (real time: kept short for the demo)."""

_BATCH: Sequence[_Spec] = (
    _Spec("word-count", {"doc": "doc-rivers"}),
    _Spec("highlight", {"doc": "doc-bees", "keywords": ["hive", "queen"]}),
    _Spec(
        "fetch",
        {"doc": "doc-ledgers", "flaky_attempts": 1},
        max_retries=2,
        retry=_QUICK_RETRY,
    ),
    _Spec("summarize", {"doc": "doc-blank"}),
    _Spec(
        "index",
        {"docs": ["doc-rivers", "doc-bees", "doc-ledgers", "doc-lighthouse"]},
        cancel_after=6,
    ),
    _Spec(
        "digest",
        {"sources": ["doc-rivers", "doc-blank", "doc-bees", "doc-atlantis", "doc-lighthouse"]},
    ),
    _Spec("readability", {"doc": "doc-boulangerie"}),
    _Spec("checksum", {"doc": "doc-ledgers"}),
    _Spec("highlight", {"doc": "doc-ledgers", "keywords": ["ledger", "record"]}),
    _Spec("readability", {"doc": "doc-lighthouse"}),
    _Spec("word-count", {"doc": "doc-lighthouse"}),
    _Spec("checksum", {"doc": "doc-rivers", "chunk": 64}),
    _Spec("summarize", {"doc": "doc-lighthouse"}),
    _Spec("fetch", {"doc": "doc-bees"}),
)
_USERS = ("alice", "bob")


def _demo_batch(count: int) -> list[tuple[_Spec, str]]:
    """The first ``count`` demo jobs as ``(spec, user)``: the bundled specs in
    turn, users alternating ``alice`` and ``bob``. The first ten show every
    ending: the third fails once and is retried, the fourth fails, the fifth
    is cancelled midway, the sixth ends partial and the seventh skipped."""
    return [(_BATCH[i % len(_BATCH)], _USERS[i % len(_USERS)]) for i in range(count)]


def _workers(pause: float) -> list[JobWorker]:
    return [
        WordCountWorker(pause=pause),
        HighlightWorker(pause=pause),
        ChecksumWorker(pause=pause),
        SummarizeWorker(pause=pause),
        FetchWorker(pause=pause),
        IndexWorker(pause=pause),
        DigestWorker(pause=pause),
        ReadabilityWorker(pause=pause),
    ]


class DemoReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one demo run did.

    ``jobs`` are this run's jobs in their final (terminal) state, in
    submission order; ``events`` is the number of events in the whole log
    and ``new_events`` how many this run appended; ``marks`` counts the marks
    this run's jobs created; ``verify`` is the log's verification afterwards.
    """

    path: str
    jobs: tuple[Job, ...]
    events: int
    new_events: int
    marks: int
    verify: VerifyReport


# -- the live view ---------------------------------------------------------

_TYPE_WIDTH = max(len(t.name) for t in JOB_TYPES)


def _short(job_id: str) -> str:
    return "…" + job_id[-8:]


def _compact(value: Any, limit: int = 60) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _glyph(status: JobStatus) -> str:
    return f"[{STATUS_STYLE[status]}]{_GLYPH[status]}[/]"


def _label(status: JobStatus, text: str | None = None, sep: str = " ") -> str:
    """Bar markup: ``status`` in its style, then ``sep`` and ``text`` (escaped), if any."""
    head = f"[{STATUS_STYLE[status]}]{status}[/]"
    return f"{head}{sep}{escape(text)}" if text else head


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

    def _line(self, row: _Row, seq: int, what: Text | str) -> None:
        self.console.print(
            Text.assemble(
                f"{seq:>5}  {row.job_id}  {row.job_type:<{_TYPE_WIDTH}}  {row.user:<5}  ", what
            ),
            soft_wrap=True,
        )

    def _show(self, row: _Row, seq: int, line: Text | str, **bar: Any) -> None:
        if self.progress is None:
            self._line(row, seq, line)
        elif row.task is not None:
            self.progress.update(row.task, **bar)

    def handle(self, env: Envelope) -> None:
        """Show one envelope; events of jobs created before the run are skipped."""
        self.last_seq = env.seq
        data = env.data
        if isinstance(data, JobCreated):
            row = _Row(job_id=data.job_id, job_type=data.job_type, user=data.user.id)
            self.rows[row.job_id] = row
            if self.progress is not None:
                row.task = self.progress.add_task(
                    escape(f"{_short(row.job_id)} {row.job_type:<{_TYPE_WIDTH}} {row.user:<5}"),
                    total=None,
                    bar=None,
                    glyph=_glyph(JobStatus.PENDING),
                    detail=_label(JobStatus.PENDING),
                )
            retries = f" (up to {data.max_retries} retries)" if data.max_retries else ""
            self._show(row, env.seq, f"created{retries}")
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
                detail=escape(note),
            )
        elif isinstance(data, MarkCreated):
            row.marks += 1
            self.marks += 1
            keyword = data.annotation.get("keyword", "")
            self._show(row, seq, f"mark on {data.resource_id} (keyword {keyword!r})")
        elif isinstance(data, JobRetryScheduled):
            delay = max(0.0, (data.run_at - env.time).total_seconds())
            self._show(
                row,
                seq,
                Text(
                    f"retry scheduled in {delay:.1f} s: attempt {data.attempt} failed: "
                    f"{data.error_type + ': ' if data.error_type else ''}{data.error}",
                    style="yellow",
                ),
                bar="yellow",
                glyph="[yellow]↻[/]",
                detail=f"[yellow]retry in {delay:.1f} s[/] "
                + escape(f"(attempt {data.attempt}: {data.error})"),
            )
        elif isinstance(data, JobLeaseExpired):
            then = "retry scheduled" if data.retry_at is not None else "no retries left"
            self._show(
                row,
                seq,
                Text(f"lease expired (attempt {data.attempt}); {then}", style="yellow"),
                bar="yellow",
                glyph="[yellow]↻[/]",
                detail=f"[yellow]lease expired[/] ({then})",
            )
        elif isinstance(data, JobCancelRequested):
            why = f": {data.reason}" if data.reason else ""
            row.cancelled_by = env.actor
            self._show(
                row,
                seq,
                Text(f"cancel requested by {env.actor}{why}", style="magenta"),
                detail=f"[magenta]cancelling…[/] (asked by {escape(env.actor)})",
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
        self._show(row, seq, Text(line, style=STATUS_STYLE[status]), **bar)


async def _follow(ledger: Ledger, after: int, tracker: _Tracker) -> None:
    """Feed ``tracker`` the log after ``after`` until it is done."""
    async with contextlib.aclosing(ledger.events(after, follow=True)) as envelopes:
        async for env in envelopes:
            tracker.handle(env)
            if tracker.done:
                return


_ENDINGS = frozenset(
    {
        "job.completed",
        "job.partial",
        "job.failed",
        "job.skipped",
        "job.cancelled",
        "job.timed_out",
        "job.deleted",
    }
)


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
            if env.type in _ENDINGS:
                return


def _prepare(path: str | Path, fresh: bool) -> str:
    """The absolute path of the log (or ``":memory:"``); with ``fresh``, delete
    the file and its ``-wal``/``-shm``/``-journal`` companions first."""
    if str(path) == ":memory:":
        return ":memory:"
    where = os.path.abspath(path)
    if fresh:
        if os.path.exists(where) and not os.path.isfile(where):
            raise ValidationError(f"{where} is not a file", field="path")
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{where}{suffix}").unlink(missing_ok=True)
    return where


async def _settle(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Wait for ``tasks``; re-raise the first exception one of them raised."""
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, Exception):
            raise outcome


async def run_demo(
    path: str | Path = "jobledger-demo.db",
    *,
    jobs: int = DEFAULT_JOBS,
    fresh: bool = False,
    pause: float = DEFAULT_PAUSE,
    console: Console | None = None,
    live: bool = False,
) -> DemoReport:
    """Run ``jobs`` demo jobs on the SQLite file ``path`` and return what happened.

    Appends to an existing file unless ``fresh``, which first deletes it (and
    its ``-wal``/``-shm`` files). Registers :data:`JOB_TYPES`; submits the
    batch (one job with retries, one the demo cancels midway as its owner);
    progress goes to ``console`` (default: a new stdout console) as live bars
    when ``live`` is true, else as one plain line per event. Returns once
    every job is terminal, the view has shown every event up to then, and
    the log has been verified. Raises ``ValidationError`` for ``jobs < 1`` or
    a negative ``pause``, and any ``JobledgerError`` the ledger raises (for
    example ``StorageError`` for a file that is not a jobledger log).
    """
    if not isinstance(jobs, int) or jobs < 1:
        raise ValidationError("must be at least 1", field="jobs")
    if pause < 0:
        raise ValidationError("must not be negative", field="pause")
    console = console or Console()
    where = _prepare(path, fresh)
    batch = _demo_batch(jobs)
    # A short poll: a retry comes due 0.2 s after its failure, and the workers
    # find due retries by polling.
    async with open_ledger(
        where, workers=_workers(pause), job_types=JOB_TYPES, poll_interval=0.05
    ) as ledger:
        start = await ledger.head()
        console.print(
            Text(f"jobledger demo: {jobs} jobs for alice and bob on {where} (log head {start})"),
            soft_wrap=True,
        )
        progress = (
            Progress(
                TextColumn("{task.fields[glyph]}"),
                TextColumn("{task.description}"),
                _StatusBar(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                console=console,
            )
            if live
            else None
        )
        tracker = _Tracker(console=console, progress=progress)
        cancellers: list[asyncio.Task[None]] = []
        with progress if progress is not None else contextlib.nullcontext():
            follower = asyncio.create_task(_follow(ledger, start, tracker))
            try:
                submitted: list[Job] = []
                for spec, user in batch:
                    job = await ledger.submit(
                        spec.job_type,
                        spec.params,
                        user=user,
                        max_retries=spec.max_retries,
                        retry=spec.retry,
                    )
                    submitted.append(job)
                    if spec.cancel_after is not None:
                        cancellers.append(
                            asyncio.create_task(_cancel_midway(ledger, job, spec.cancel_after))
                        )
                # Generous: as if every job ran alone, a few dozen steps each.
                budget = 30.0 + len(submitted) * 30 * (pause + 0.01)
                final = await asyncio.gather(
                    *(ledger.wait(job.id, timeout=budget) for job in submitted)
                )
                await _settle(cancellers)
                tracker.stop_at = await ledger.head()
                if tracker.done:
                    follower.cancel()
                # The follower stops by itself once it has shown the head.
                await _settle([follower])
            finally:
                for task in (*cancellers, follower):
                    if not task.done():
                        task.cancel()
                await asyncio.gather(*cancellers, follower, return_exceptions=True)
        head = await ledger.head()
        report = await ledger.verify()
    return DemoReport(
        path=where,
        jobs=tuple(final),
        events=head,
        new_events=head - start,
        marks=tracker.marks,
        verify=report,
    )
