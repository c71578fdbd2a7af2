"""Reading a text with plain rules, for the offline client: its
sentences, content words and their frequencies, names of people, places and
organizations, dates, and the tone of a claim.

Sentences are split at ``.``, ``!``, ``?`` (not after ``Dr.``, ``e.g.``, an
initial, …), at blank lines and at markdown headings and list items. A
sentence's score is the summed frequency in the whole text of its distinct
content words (stop words and words under 3 letters left out), over the
square root of its length; the first sentence of the text and of each
paragraph score higher, fragments under 5 words lower, and sentences sharing
words with the caller's ``instructions`` or ``prompt`` higher.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import msgspec

from jobledger.core import ValidationError

__all__ = ["Span"]


class Span(msgspec.Struct, frozen=True, kw_only=True):
    """A passage of a text: ``text[start:end] == exact``, always."""

    start: int
    end: int
    exact: str

    @classmethod
    def of(cls, text: str, start: int, end: int) -> Span:
        """The span of ``text`` from ``start`` to ``end``."""
        return cls(start=start, end=end, exact=text[start:end])


_CHARS_PER_UNIT = 2000  # density counts marks per this many characters


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
