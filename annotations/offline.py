"""The offline client: deterministic, extractive answers with no model at all.

A model can answer any prompt; this module cannot, so the annotation workers
ask it task by task (:class:`ExtractiveMethods`) instead of prompting it.
Each method reads the text with the plain rules of
:mod:`jobledger.annotations.reading` and picks passages of it.

Every :class:`Span` satisfies ``text[span.start:span.end] == span.exact``,
lists come in text order, and the same input always gives the same output.
Results are labelled offline by their generator (``OfflineClient.name ==
"jobledger-offline"``) and by ``OfflineClient.offline``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from jobledger.core import ValidationError

from .errors import InferenceError
from .inference import Generation, Usage, _check_request
from .reading import (
    _COMMENT_TEMPLATES,
    _DATE,
    _EMAIL,
    _NAME_WORD,
    _TRAILING,
    _URL,
    Span,
    _assessment,
    _classify,
    _count_for,
    _kind_of,
    _name_runs,
    _one_line,
    _quoted,
    _Reading,
    _stem,
)

__all__ = ["OFFLINE_LABEL", "ExtractiveMethods", "OfflineClient", "Span"]


OFFLINE_LABEL = "[jobledger-offline: extracted from the prompt, no model ran]"
"""The first line of every :meth:`OfflineClient.generate_text` answer."""


@runtime_checkable
class ExtractiveMethods(Protocol):
    """The task-level methods an offline client offers the six workers in
    place of prompts. All are synchronous (pure computation, no waiting) and
    deterministic; all raise ``ValidationError`` for malformed arguments. The
    workers call them in a thread (``asyncio.to_thread``) so that a long text
    does not hold up the event loop: they must share no mutable state."""

    def highlights(self, text: str, density: float) -> list[Span]:
        """The key sentences: ``density`` per 2000 characters (at least one
        when ``density > 0`` and the text has a sentence)."""
        ...

    def tags(self, text: str, categories: Mapping[str, Sequence[str]]) -> list[tuple[Span, str]]:
        """Sentences tagged with the category whose keywords they match most."""
        ...

    def references(self, text: str, entity_types: Sequence[str]) -> list[tuple[Span, str]]:
        """Mentions of entities of the requested types (named as requested)."""
        ...

    def comments(
        self,
        text: str,
        instructions: str | None = None,
        tone: str | None = None,
        *,
        density: float = 2.0,
    ) -> list[tuple[Span, str]]:
        """Templated comments on the top-scored sentences."""
        ...

    def assessments(
        self,
        text: str,
        instructions: str | None = None,
        tone: str | None = None,
        language: str | None = None,
        *,
        density: float = 2.0,
    ) -> list[tuple[Span, str]]:
        """Templated assessments of the sentences that make claims."""
        ...

    def generate_document(
        self, title: str, prompt: str | None, source_text: str, language: str | None = None
    ) -> str:
        """A markdown document assembled from sentences of ``source_text``."""
        ...


# ---------------------------------------------------------------- reading a text


class OfflineClient:
    """The deterministic default client: no model, no network, no randomness.

    As an :class:`~jobledger.workers.inference.InferenceClient`, its
    :meth:`generate_text` cannot answer the prompt: it returns
    :data:`OFFLINE_LABEL` on the first line, then up to three of the prompt's own
    highest-scored sentences (in their order), cut to ``max_tokens`` words
    (the label not counted; ``finish_reason="length"`` when cut).
    ``temperature`` is accepted and ignored. Usage counts words, not tokens.

    The six annotation workers call its :class:`ExtractiveMethods` instead,
    checking ``client.offline`` (or ``isinstance(client, ExtractiveMethods)``).
    """

    name = "jobledger-offline"
    offline = True

    def __repr__(self) -> str:
        return "OfflineClient()"

    async def generate_text(self, prompt: str, *, max_tokens: int, temperature: float) -> str:
        """The labelled extract (see the class docstring)."""
        return (await self.generate(prompt, max_tokens=max_tokens, temperature=temperature)).text

    async def generate(self, prompt: str, *, max_tokens: int, temperature: float) -> Generation:
        """The labelled extract with word counts as usage. Raises
        ``InferenceError`` (not retryable) if the prompt has no words."""
        _check_request(max_tokens, temperature)
        reading = _Reading(prompt)
        chosen = sorted(reading.ranked(headings=True)[:3], key=lambda s: s.start)
        if not chosen:
            raise InferenceError(
                "the offline client found no sentence in the prompt to extract", retryable=False
            )
        words = " ".join(_one_line(prompt[s.start : s.end]) for s in chosen).split()
        truncated = len(words) > max_tokens
        words = words[:max_tokens]
        usage = Usage(
            prompt_tokens=len(prompt.split()),
            completion_tokens=len(words),
            total_tokens=len(prompt.split()) + len(words),
            model=self.name,
            finish_reason="length" if truncated else "stop",
        )
        text = OFFLINE_LABEL + "\n" + " ".join(words)
        return Generation(text=text, usage=usage, truncated=truncated)

    def highlights(self, text: str, density: float) -> list[Span]:
        """The ``round(density * len(text) / 2000)`` best-scored sentences (at
        least one if ``density > 0``; none if it is 0), headings left out."""
        reading = _Reading(text)
        chosen = reading.ranked()[: _count_for(text, density)]
        return [reading.span(s) for s in sorted(chosen, key=lambda s: s.start)]

    def tags(self, text: str, categories: Mapping[str, Sequence[str]]) -> list[tuple[Span, str]]:
        """Each sentence (headings included) that matches a category's keywords,
        tagged with the category it matches most often (ties: the first
        category given). Keywords match whole words, case-insensitively, with
        a plural ``s``/``es``; a keyword starting ``re:`` is a regular
        expression; a category with no keywords matches its own name."""
        reading = _Reading(text)
        if not isinstance(categories, Mapping):
            raise ValidationError("must map category names to keywords", field="categories")
        rules: list[tuple[str, list[re.Pattern[str]]]] = []
        for category, keywords in categories.items():
            if not isinstance(category, str) or not category.strip():
                raise ValidationError("names must be non-empty strings", field="categories")
            if isinstance(keywords, str):
                raise ValidationError(
                    f"{category!r}: give a list of keywords, not a string", field="categories"
                )
            rules.append((category, [_keyword(k) for k in (list(keywords) or [category])]))
        tagged: list[tuple[Span, str]] = []
        for sentence in reading.sentences:
            exact = text[sentence.start : sentence.end]
            hits = [(sum(len(p.findall(exact)) for p in pats), c) for c, pats in rules]
            best = max(hits, key=lambda h: h[0], default=(0, ""))
            if best[0] > 0:
                tagged.append((reading.span(sentence), best[1]))
        return tagged

    def references(self, text: str, entity_types: Sequence[str]) -> list[tuple[Span, str]]:
        """Mentions of the requested entity types, each named as requested.

        Recognised (case and punctuation ignored): Person/People; Organization
        (Organisation, Org, Company); Location (Place, City, Country, GPE);
        Date (Time); URL (Link, Website); Email. Other types find nothing.
        Emails, URLs and dates are found by pattern; names are runs of
        capitalised words, an organization by a word such as ``University``,
        ``Inc`` or ``Agency`` (or an all-capital acronym), a location by a
        word such as ``River`` or ``City`` or a preceding ``in``, ``at``,
        ``from``…, a person by a title (``Dr.``, ``President``) or as two to
        four capitalised words. Mentions never overlap.
        """
        if not isinstance(text, str):
            raise ValidationError("must be a str", field="text")
        if isinstance(entity_types, str):
            raise ValidationError("give a list of entity types", field="entity_types")
        wanted: dict[str, str] = {}
        for entity_type in entity_types:
            if not isinstance(entity_type, str):
                raise ValidationError("entity types must be strings", field="entity_types")
            kind = _kind_of(entity_type)
            if kind is not None:
                wanted.setdefault(kind, entity_type)
        taken: list[tuple[int, int]] = []
        found: list[tuple[Span, str]] = []

        def claim(start: int, end: int, kind: str) -> None:
            if kind in wanted and all(end <= s or start >= e for s, e in taken):
                taken.append((start, end))
                found.append((Span.of(text, start, end), wanted[kind]))

        for kind, pattern in (("email", _EMAIL), ("url", _URL), ("date", _DATE)):
            for match in pattern.finditer(text):
                start, end = match.start(), match.end()
                while end > start and text[end - 1] in _TRAILING:
                    end -= 1
                claim(start, end, kind)
        if {"person", "organization", "location"} & wanted.keys():
            prose = _URL.sub(" ", _EMAIL.sub(" ", text))
            lowercase = frozenset(
                m.group() for m in _NAME_WORD.finditer(prose) if m.group()[0].islower()
            )
            for run, before in _name_runs(text):
                drop, kind = _classify([w for _, _, w in run], before, lowercase)
                if kind is not None:
                    claim(run[drop][0], run[-1][1], kind)
        return sorted(found, key=lambda item: item[0].start)

    def comments(
        self,
        text: str,
        instructions: str | None = None,
        tone: str | None = None,
        *,
        density: float = 2.0,
    ) -> list[tuple[Span, str]]:
        """A templated comment on each of the ``density``-per-2000-characters
        best-scored sentences, naming the sentence's most frequent terms.
        ``tone`` picks the template: scholarly, explanatory (the default),
        conversational or technical; sentences sharing words with
        ``instructions`` rank higher and say so."""
        reading = _Reading(text, instructions)
        template = _COMMENT_TEMPLATES.get((tone or "").lower(), _COMMENT_TEMPLATES["explanatory"])
        chosen = sorted(reading.ranked()[: _count_for(text, density)], key=lambda s: s.start)
        out: list[tuple[Span, str]] = []
        for sentence in chosen:
            terms = reading.top_terms(sentence)
            top = terms[0] if terms else ""
            count = reading.frequency[_stem(top)]
            comment = template.format(terms=_quoted(terms), top=top, count=count)
            focus = sorted(set(reading.words(sentence)) & reading.focus)
            if focus:
                names = _quoted([reading.surface.get(w, w) for w in focus[:3]])
                comment += f" It bears on your instructions ({names})."
            out.append((reading.span(sentence), comment))
        return out

    def assessments(
        self,
        text: str,
        instructions: str | None = None,
        tone: str | None = None,
        language: str | None = None,
        *,
        density: float = 2.0,
    ) -> list[tuple[Span, str]]:
        """Templated assessments of up to ``density``-per-2000-characters
        sentences that make a checkable claim: an absolute word (``always``,
        ``never``, ``proves``…), a cited source, a figure, or a hedge (``may``,
        ``suggests``…), best-scored first. ``tone`` (critical, constructive,
        analytical, balanced) sets a prefix. The templates are English
        whatever ``language`` says (it is accepted for the workers' sake)."""
        reading = _Reading(text, instructions)
        if language is not None and not isinstance(language, str):
            raise ValidationError("must be a language tag", field="language")
        limit = _count_for(text, density)
        out: list[tuple[Span, str]] = []
        for sentence in reading.ranked():
            if len(out) == limit:
                break
            assessment = _assessment(reading, sentence, tone)
            if assessment is not None:
                out.append((reading.span(sentence), assessment))
        return sorted(out, key=lambda item: item[0].start)

    def generate_document(
        self, title: str, prompt: str | None, source_text: str, language: str | None = None
    ) -> str:
        """A markdown document: ``# title``, a quoted note that it was drafted
        offline (with the prompt), a summary of the three best-scored
        sentences of ``source_text`` (sentences sharing words with
        ``prompt`` rank higher), up to five further sentences as key points,
        and the eight most frequent terms. Not translated: ``language`` is
        accepted for the workers' sake."""
        reading = _Reading(source_text, prompt)
        heading = _one_line(title) if isinstance(title, str) and title.strip() else "Untitled"
        lines = [
            f"# {heading}",
            "",
            "> Drafted offline by jobledger-offline from sentences of the source text;"
            " no model wrote it.",
        ]
        if prompt and prompt.strip():
            lines.append(f"> Prompt: {_one_line(prompt)}")
        ranked = reading.ranked()
        if not ranked:
            lines += ["", "The source text has no sentences to draw on."]
            return "\n".join(lines) + "\n"
        summary = sorted(ranked[:3], key=lambda s: s.start)
        points = sorted(ranked[3:8], key=lambda s: s.start)
        lines += ["", "## Summary", ""]
        lines.append(" ".join(_one_line(source_text[s.start : s.end]) for s in summary))
        if points:
            lines += ["", "## Key points", ""]
            lines += [f"- {_one_line(source_text[s.start : s.end])}" for s in points]
        lines += ["", "## Key terms", "", ", ".join(reading.top_terms(n=8))]
        return "\n".join(lines) + "\n"


def _keyword(keyword: str) -> re.Pattern[str]:
    if not isinstance(keyword, str) or not keyword.strip():
        raise ValidationError("keywords must be non-empty strings", field="categories")
    if keyword.startswith("re:"):
        try:
            return re.compile(keyword[3:], re.IGNORECASE)
        except re.error as exc:
            raise ValidationError(f"{keyword!r} is not a regular expression: {exc}") from exc
    words = r"\s+".join(re.escape(w) for w in keyword.split())
    return re.compile(rf"(?<!\w){words}(?:s|es)?(?!\w)", re.IGNORECASE)
