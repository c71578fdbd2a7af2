"""The offline client: deterministic, extractive answers with no model at all.

A model can answer any prompt; this module cannot, so the annotation workers
ask it task by task (:class:`ExtractiveMethods`) instead of prompting it.
Each method reads the text with plain rules and picks passages of it:

- sentences are split at ``.``, ``!``, ``?`` (not after ``Dr.``, ``e.g.``, an
  initial, …), at blank lines and at markdown headings and list items;
- a sentence's score is the summed frequency in the whole text of its
  distinct content words (stop words and words under 3 letters left out),
  over the square root of its length; the first sentence of the text and of
  each paragraph score higher, fragments under 5 words lower, and sentences
  sharing words with the caller's ``instructions`` or ``prompt`` higher.

Every :class:`Span` satisfies ``text[span.start:span.end] == span.exact``,
lists come in text order, and the same input always gives the same output.
Results are labelled offline by their generator (``OfflineClient.name ==
"jobledger-offline"``) and by ``OfflineClient.offline``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import msgspec

from jobledger.core import ValidationError
from jobledger.core.errors import InferenceError

from .inference import Generation, Usage, _check_request

__all__ = [
    "OFFLINE_LABEL",
    "ExtractiveMethods",
    "OfflineClient",
    "Span",
]

OFFLINE_LABEL = "[jobledger-offline: extracted from the prompt, no model ran]"
"""The first line of every :meth:`OfflineClient.generate_text` answer."""

_CHARS_PER_UNIT = 2000  # density counts marks per this many characters


class Span(msgspec.Struct, frozen=True, kw_only=True):
    """A passage of a text: ``text[start:end] == exact``, always."""

    start: int
    end: int
    exact: str

    @classmethod
    def of(cls, text: str, start: int, end: int) -> Span:
        """The span of ``text`` from ``start`` to ``end``."""
        return cls(start=start, end=end, exact=text[start:end])


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


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_STOPWORDS = _word_set(
    """a about above after again against all also always am an and any are aren't as at be
    because been before being below between both but by can cannot could couldn't did
    didn't do does doesn't doing don't down during each either else even ever every few
    for from further had hadn't has hasn't have haven't having he her here hers herself
    him himself his how however i if in into is isn't it it's its itself just let like
    made make many may me might more most much must my myself neither never no nor not now of
    off often on once one only or other ought our ours ourselves out over own per quite
    rather really same shall she should shouldn't since so some still such than that
    that's the their theirs them themselves then there there's these they this those
    though through thus to too under until up upon us use used using very via was wasn't
    we well were weren't what when where whether which while who whom whose why will
    with within without won't would wouldn't yet you your yours yourself"""
)
_ABBREVIATIONS = _word_set(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e al inc ltd co corp no fig approx"
)
_WORD = re.compile(r"[^\W\d_](?:[\w'’.-]*\w)?")
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)")
_BLOCK_START = re.compile(r"[ \t]{0,3}(?:#{1,6}[ \t]+|[-*+>][ \t]+|\d{1,3}[.)][ \t]+)")
_HEADING = re.compile(r"[ \t]{0,3}#{1,6}[ \t]+")


class _Sentence(NamedTuple):
    start: int
    end: int
    first_in_text: bool
    first_in_block: bool
    heading: bool


def _lines(text: str) -> Iterator[tuple[int, int]]:
    start = 0
    while start <= len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        yield start, end
        start = end + 1


def _blocks(text: str) -> Iterator[tuple[int, int, bool]]:
    """Paragraphs, headings and list items: (start, end, is_heading), where
    ``start`` is past any markdown marker."""
    block: tuple[int, int] | None = None
    for start, end in _lines(text):
        line = text[start:end]
        marker = _BLOCK_START.match(line)
        if not line.strip() or marker:
            if block is not None:
                yield block[0], block[1], False
                block = None
            if not line.strip() or marker is None:
                continue
            if _HEADING.match(line):
                yield start + marker.end(), end, True
                continue
            block = (start + marker.end(), end)
        elif block is None:
            block = (start, end)
        else:
            block = (block[0], end)
    if block is not None:
        yield block[0], block[1], False


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _is_abbreviation(text: str, cursor: int, stop: int) -> bool:
    """Whether the ``.`` at ``stop`` ends an abbreviation or an initial."""
    if text[stop] != ".":
        return False
    words = _WORD.findall(text, cursor, stop + 1)
    if not words:
        return False
    last = words[-1].rstrip(".").lower()
    return last in _ABBREVIATIONS or (len(last) == 1 and words[-1][0].isupper())


def _sentences(text: str) -> list[_Sentence]:
    found: list[_Sentence] = []
    for block_start, block_end, heading in _blocks(text):
        cursor = block_start
        first = True
        pieces: list[tuple[int, int]] = []
        if not heading:
            for match in _SENTENCE_END.finditer(text, block_start, block_end):
                if _is_abbreviation(text, cursor, match.start()):
                    continue
                pieces.append((cursor, match.end()))
                cursor = match.end()
        pieces.append((cursor, block_end))
        for piece_start, piece_end in pieces:
            start, end = _trimmed(text, piece_start, piece_end)
            if _WORD.search(text, start, end) is None:
                continue
            found.append(_Sentence(start, end, not found, first, heading))
            first = False
    return found


def _stem(word: str) -> str:
    word = word.lower().replace("’", "'")
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _content_words(text: str, start: int = 0, end: int | None = None) -> list[str]:
    stop = len(text) if end is None else end
    words = (m.group().lower().replace("’", "'") for m in _WORD.finditer(text, start, stop))
    return [_stem(w) for w in words if len(w) >= 3 and w not in _STOPWORDS and "." not in w]


class _Reading:
    """One text, split and counted once for all the methods."""

    def __init__(self, text: str, focus: str | None = None) -> None:
        if not isinstance(text, str):
            raise ValidationError("must be a str", field="text")
        self.text = text
        self.sentences = _sentences(text)
        self.frequency = Counter(_content_words(text))
        self.focus = frozenset(_content_words(focus)) if focus else frozenset()
        self.surface: dict[str, str] = {}
        for match in _WORD.finditer(text):
            self.surface.setdefault(_stem(match.group()), match.group().lower())

    def words(self, sentence: _Sentence) -> list[str]:
        return _content_words(self.text, sentence.start, sentence.end)

    def score(self, sentence: _Sentence) -> float:
        words = self.words(sentence)
        if not words:
            return 0.0
        distinct = set(words)
        score = sum(self.frequency[w] for w in distinct) / math.sqrt(len(words) + 1)
        if sentence.first_in_text:
            score *= 1.3
        elif sentence.first_in_block:
            score *= 1.1
        if len(_WORD.findall(self.text, sentence.start, sentence.end)) < 5:
            score *= 0.5
        return score * (1 + len(distinct & self.focus))

    def ranked(self, *, headings: bool = False) -> list[_Sentence]:
        """Sentences best first (ties: earlier first); headings only if asked
        or if there is nothing else."""
        pool = [s for s in self.sentences if headings or not s.heading] or self.sentences
        return sorted(pool, key=lambda s: (-self.score(s), s.start))

    def top_terms(self, sentence: _Sentence | None = None, n: int = 3) -> list[str]:
        """The most frequent content words (of the text, or of one sentence)."""
        words = set(self.frequency) if sentence is None else set(self.words(sentence))
        best = sorted(words, key=lambda w: (-self.frequency[w], w))[:n]
        return [self.surface.get(w, w) for w in best]

    def span(self, sentence: _Sentence) -> Span:
        return Span.of(self.text, sentence.start, sentence.end)


def _count_for(text: str, density: float) -> int:
    if isinstance(density, bool) or not isinstance(density, int | float):
        raise ValidationError(f"must be a number, got {density!r}", field="density")
    if not math.isfinite(density) or density < 0:
        raise ValidationError(f"must be a finite number >= 0, got {density!r}", field="density")
    if density == 0:
        return 0
    return max(1, round(density * len(text) / _CHARS_PER_UNIT))


def _quoted(terms: Sequence[str]) -> str:
    quoted = [f"“{t}”" for t in terms]
    if len(quoted) <= 1:
        return "".join(quoted) or "its subject"
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------- references

_MONTHS = (
    "January|February|March|April|May|June|July|August|September|October|November|December"
    "|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
)
_DATE = re.compile(
    rf"""\b(?:
        \d{{4}}-\d{{2}}-\d{{2}}
      | (?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}
      | \d{{1,2}}(?:st|nd|rd|th)?\s+(?:{_MONTHS})\.?,?\s+\d{{4}}
      | (?:{_MONTHS})\.?\s+\d{{4}}
      | \d{{1,2}}/\d{{1,2}}/\d{{2,4}}
    )\b""",
    re.VERBOSE,
)
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'()\[\]{}]+")
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_TRAILING = ".,;:!?"
_NAME_WORD = re.compile(r"[^\W\d_][\w'’-]*")
_CALENDAR = frozenset(
    (
        _MONTHS + "|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|Mon|Tue|Wed|"
        "Thu|Fri|Sat|Sun"
    ).split("|")
)
_CONNECTORS = _word_set("of de del der van von da di du la le al bin")
_HONORIFICS = _word_set(
    "mr mrs ms dr prof sir dame lord lady president senator judge justice king queen "
    "minister governor mayor rev father sister"
)
_ORGANIZATION_WORDS = _word_set(
    """inc corp corporation ltd llc plc gmbh company co university institute college
    school foundation association society agency bank council committee ministry
    department organization organisation group alliance union party labs laboratory
    laboratories press times news nations club team church hospital museum library court
    commission federation fund office bureau academy center centre systems technologies
    software airlines inc."""
)
_PLACE_WORDS = _word_set(
    """city county state states river lake mountain mountains mount island islands ocean
    sea bay valley street avenue road park kingdom republic province region district desert
    forest gulf coast peninsula canyon"""
)
_ARTICLES = _word_set("the a an this that these those")
_PLACE_CUES = _word_set("in at from near to across into toward towards")
_KINDS = {
    "person": "person",
    "people": "person",
    "persons": "person",
    "organization": "organization",
    "organisation": "organization",
    "org": "organization",
    "company": "organization",
    "location": "location",
    "place": "location",
    "city": "location",
    "country": "location",
    "gpe": "location",
    "date": "date",
    "time": "date",
    "url": "url",
    "link": "url",
    "website": "url",
    "email": "email",
    "emailaddress": "email",
}


def _kind_of(entity_type: str) -> str | None:
    return _KINDS.get(re.sub(r"[^a-z]", "", entity_type.lower()))


def _one_space(gap: str) -> bool:
    """Whether ``gap`` separates two words of one name: one space, tab or
    line break (a hard-wrapped line), not a blank line."""
    return gap in (" ", "\t", "\n", " \n", "\n ")


def _name_runs(text: str) -> Iterator[tuple[list[tuple[int, int, str]], str]]:
    """Runs of capitalised words (with connectors such as ``of`` between
    them): ([(start, end, word), ...], the word just before the run if only a
    space separates them)."""
    words = [(m.start(), m.end(), m.group()) for m in _NAME_WORD.finditer(text)]
    i = 0
    while i < len(words):
        word = words[i][2]
        if not word[0].isupper() or word in _CALENDAR:
            i += 1
            continue
        run = [words[i]]
        j = i + 1
        while j < len(words):
            gap = text[words[j - 1][1] : words[j][0]]
            previous = words[j - 1][2].lower()
            joinable = _one_space(gap) or (
                gap[:1] == "."
                and _one_space(gap[1:])
                and (previous in _HONORIFICS or len(previous) == 1)
            )
            candidate = words[j][2]
            if not joinable or candidate in _CALENDAR:
                break
            if candidate[0].isupper() or (
                candidate.lower() in _CONNECTORS
                and j + 1 < len(words)
                and words[j + 1][2][0].isupper()
                and _one_space(text[words[j][1] : words[j + 1][0]])
            ):
                run.append(words[j])
            else:
                break
            j += 1
        # A connector may open a run ("Of course"): popping it can empty the run.
        while run and run[-1][2].lower() in _CONNECTORS:
            run.pop()
        if not run:
            i = j
            continue
        adjacent = i > 0 and _one_space(text[words[i - 1][1] : words[i][0]])
        yield run, words[i - 1][2].lower() if adjacent else ""
        i = j


def _classify(words: list[str], before: str, lowercase: frozenset[str]) -> tuple[int, str | None]:
    """(how many leading words to drop, the kind of the name or None).
    ``lowercase`` holds the words the text also uses in lower case: a run made
    only of capitalised ordinary words (a title, a sentence start) is no name;
    nor is a run after an article (``the Analytical Engine``) without an
    organization or place word."""
    drop = 0
    while drop < len(words) and words[drop].lower() in _STOPWORDS:
        drop += 1
    name = words[drop:]
    if not name:
        return drop, None
    lowered = [w.lower() for w in name]
    if any(w in _ORGANIZATION_WORDS for w in lowered) or (
        len(name) == 1 and len(name[0]) >= 2 and name[0].isupper() and name[0].isalpha()
    ):
        return drop, "organization"
    if any(w in _PLACE_WORDS for w in lowered):
        return drop, "location"
    if lowered[0] in _HONORIFICS and len(name) >= 2:
        return drop, "person"
    if before in _ARTICLES or any(w in lowercase for w in lowered if w not in _CONNECTORS):
        return drop, None
    if drop == 0 and before in _PLACE_CUES:
        return drop, "location"
    if 2 <= len(name) <= 4 and all(w[0].isupper() and not w.isupper() for w in name):
        return drop, "person"
    return drop, None


# ---------------------------------------------------------------- assessments

_ABSOLUTE = re.compile(
    r"\b(always|never|all|every|none|nobody|everyone|proves?|proven|certainly|undoubtedly"
    r"|guarantees?|guaranteed|impossible)\b",
    re.IGNORECASE,
)
_HEDGED = re.compile(
    r"\b(may|might|could|perhaps|possibly|likely|unlikely|unclear|suggests?|appears?|seems?)\b",
    re.IGNORECASE,
)
_FIGURE = re.compile(r"\d[\d,.]*\s?%?")
_CITATION = re.compile(r"according to|et al\.|\(\d{4}\)|https?://", re.IGNORECASE)
_ASSESSMENT_TONES = {
    "critical": "Weakness: ",
    "constructive": "Suggestion: ",
    "analytical": "Analysis: ",
    "balanced": "",
}
_COMMENT_TEMPLATES = {
    "scholarly": "This passage bears on {terms}; “{top}” recurs {count} times in the text, "
    "so it merits a close reading.",
    "explanatory": "This sentence is about {terms}; the text mentions “{top}” {count} times.",
    "conversational": "Worth noticing: this is where the text talks about {terms} — "
    "“{top}” comes up {count} times.",
    "technical": "Key statement on {terms} (“{top}”: {count} occurrences in the text).",
}


def _assessment(reading: _Reading, sentence: _Sentence, tone: str | None) -> str | None:
    """The templated assessment of a sentence that makes a checkable claim, or None."""
    exact = reading.text[sentence.start : sentence.end]
    prefix = _ASSESSMENT_TONES.get((tone or "").lower(), "")
    if (found := _ABSOLUTE.search(exact)) is not None:
        body = (
            f"the claim is absolute (“{found.group()}”); check that the text supports it "
            "without exception."
        )
    elif (found := _CITATION.search(exact)) is not None:
        body = "the claim rests on a cited source; check that the source says this."
    elif (found := _FIGURE.search(exact)) is not None:
        body = (
            f"the claim rests on a figure (“{found.group().strip()}”); "
            "check its source and what it counts."
        )
    elif (found := _HEDGED.search(exact)) is not None:
        body = f"the claim is hedged (“{found.group()}”); the text does not commit to it."
    else:
        return None
    return prefix + (body[0].upper() + body[1:] if not prefix else body)


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
