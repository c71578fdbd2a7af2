"""The three small demo workers, beside the six annotation workers, so that
every ending is shown: :class:`IndexWorker` (cancelled midway),
:class:`DigestWorker` (partial), :class:`ReadabilityWorker` (skipped for a
text in another language); their params and job types (:data:`JOB_TYPES`),
and the plain text statistics they compute.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, TypeVar

import msgspec

from jobledger.annotations import (
    ANNOTATION_JOB_TYPES,
)
from jobledger.core import (
    Job,
    JobType,
    NotFound,
)
from jobledger.workers import JobContext, JobWorker, NonRetryableError, PartialResult, SkipJob

from .documents import DemoFetcher

__all__ = [
    "DEFAULT_PAUSE",
    "JOB_TYPES",
    "DigestParams",
    "DigestWorker",
    "DocParams",
    "IndexParams",
    "IndexWorker",
    "ReadabilityWorker",
]


DEFAULT_PAUSE = 0.08
"""Seconds each small demo worker waits between two steps of its work (the
fetcher waits three times that per read)."""


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
