"""The six annotation workers of a knowledge-base app (Semiont's job types).

Each reads a document through a :class:`ContentFetcher`, asks an
:class:`~jobledger.workers.inference.InferenceClient` where the passages are,
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
job with an :class:`~jobledger.core.errors.InferenceError` (retryable: a
model may answer better next time), never "found nothing". A reply cut short
at ``max_tokens`` keeps the passages that arrived whole and ends the job
*partial*, saying so; so does a passage whose quote cannot be found in the
text. Offsets a model gets wrong are corrected when its quote is found
elsewhere in the text (the nearest occurrence), and counted.

With the :class:`~jobledger.workers.offline.OfflineClient` (the default) no
model runs: the workers call its deterministic extractive methods, and every
result says ``offline: true`` and names ``jobledger-offline`` as its
generator.

Params and results are msgspec Structs whose JSON names are camelCase, as in
Semiont (``resourceId``, ``entityTypes``, ``highlightsFound``).
"""

from __future__ import annotations

import asyncio
import re
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Protocol, TypeVar

import msgspec

from jobledger.core import (
    Agent,
    Annotation,
    Body,
    BodyAdd,
    Job,
    JobType,
    Motivation,
    NotFound,
    SpecificResource,
    StorageError,
    TextQuoteSelector,
    TextualBody,
    ValidationError,
)
from jobledger.core.errors import InferenceError

from .inference import InferenceClient
from .offline import ExtractiveMethods, OfflineClient
from .worker import JobContext, JobWorker, NonRetryableError, PartialResult

__all__ = [
    "ANNOTATION_JOB_TYPES",
    "TAG_SCHEMAS",
    "AnnotationResult",
    "AssessmentParams",
    "AssessmentWorker",
    "CommentParams",
    "CommentWorker",
    "ContentFetcher",
    "FolderFetcher",
    "GenerationParams",
    "GenerationResult",
    "GenerationWorker",
    "HighlightParams",
    "HighlightWorker",
    "ReferenceParams",
    "ReferenceWorker",
    "TagCategory",
    "TagParams",
    "TagSchema",
    "TagWorker",
    "annotation_workers",
    "locate",
    "parse_passages",
]


# -- documents ---------------------------------------------------------------


class ContentFetcher(Protocol):
    """Where the workers read documents: the text of a resource by its id.

    The application implements it over its own document store. ``fetch``
    raises ``NotFound`` for an unknown resource."""

    async def fetch(self, resource_id: str) -> str: ...


_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class FolderFetcher:
    """A :class:`ContentFetcher` over a folder of UTF-8 text files: resource
    ``ID`` is the file ``ID``, or ``ID.md`` or ``ID.txt``. The text is the
    file's bytes decoded, line endings as they are (``\\r\\n`` stays two
    characters), so marks' offsets count the file's own characters.

    Raises ``ValidationError`` (``field="resource_id"``) for an id that could
    leave the folder (``/``, ``..``, a leading dot) or a file that is not
    UTF-8; ``NotFound`` for a missing file; ``StorageError`` when the file
    cannot be read (permissions, I/O). Files are read in a thread."""

    suffixes: ClassVar[tuple[str, ...]] = ("", ".md", ".txt")

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    async def fetch(self, resource_id: str) -> str:
        if not _SAFE_ID.match(resource_id) or ".." in resource_id:
            raise ValidationError("not a document id of this folder", field="resource_id")
        return await asyncio.to_thread(self._read, resource_id)

    def _read(self, resource_id: str) -> str:
        for suffix in self.suffixes:
            path = self.folder / f"{resource_id}{suffix}"
            try:
                if not path.is_file():
                    continue
                data = path.read_bytes()
            except FileNotFoundError:  # removed since is_file(): try the next suffix
                continue
            except OSError as exc:
                raise StorageError(f"cannot read {path.name}: {exc}") from exc
            try:
                # Not read_text: it would turn \r\n and \r into \n and shift every offset.
                return data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValidationError(
                    f"{path.name} is not UTF-8 text: {exc}", field="resource_id"
                ) from exc
        raise NotFound("resource", resource_id)


# -- params and results --------------------------------------------------------

_ResourceId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Instructions = Annotated[str, msgspec.Meta(max_length=4096)]
_Density = Annotated[float, msgspec.Meta(gt=0, le=50)]
_Language = Annotated[  # a BCP 47 tag, as long as a W3C TextualBody's language may be
    str, msgspec.Meta(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$", max_length=64)
]


class _Params(
    msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True
):
    """Base of the workers' params: camelCase on the wire."""


class HighlightParams(_Params, frozen=True, kw_only=True):
    """Key passages of ``resource_id``: about ``density`` per 2,000 characters.
    A model is told ``instructions`` (if given); the offline method ignores
    them (it picks the best-scored sentences)."""

    resource_id: _ResourceId
    instructions: _Instructions | None = None
    density: _Density = 2.0


class CommentParams(_Params, frozen=True, kw_only=True):
    """Explanatory comments on passages of ``resource_id``, in ``tone``."""

    resource_id: _ResourceId
    instructions: _Instructions | None = None
    tone: Literal["scholarly", "explanatory", "conversational", "technical"] | None = None
    density: _Density = 2.0


class AssessmentParams(_Params, frozen=True, kw_only=True):
    """Evaluative assessments of passages of ``resource_id``, in ``tone`` and
    ``language``."""

    resource_id: _ResourceId
    instructions: _Instructions | None = None
    tone: Literal["analytical", "critical", "balanced", "constructive"] | None = None
    language: _Language = "en"
    density: _Density = 2.0


class TagParams(_Params, frozen=True, kw_only=True):
    """Structural roles in ``resource_id`` by the tag schema ``schema_id``: one
    pass per category (``categories``, default all of the schema's)."""

    resource_id: _ResourceId
    schema_id: str
    categories: Annotated[list[str], msgspec.Meta(min_length=1)] | None = None


class ReferenceParams(_Params, frozen=True, kw_only=True):
    """Mentions of entities of ``entity_types`` in ``resource_id``."""

    resource_id: _ResourceId
    entity_types: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]],
        msgspec.Meta(min_length=1, max_length=32),
    ]


class GenerationParams(_Params, frozen=True, kw_only=True):
    """A new document titled ``title``, written as ``prompt`` asks in
    ``language``, from the context of ``source_resource_id`` (if given);
    then the reference mark ``reference_mark_id`` (if given) is linked to it."""

    title: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    prompt: _Instructions | None = None
    language: _Language = "en"
    source_resource_id: _ResourceId | None = None
    reference_mark_id: _ResourceId | None = None


class AnnotationResult(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What an annotation job found and did.

    ``found``: passages the model (or the offline method) gave; ``created``:
    marks made; ``corrected``: passages whose offsets were wrong but whose
    quote was found in the text; ``unmatched``: passages whose quote is not
    in the text, or is only whitespace (no mark); ``rejected``: passages that
    came without what the job needs (a comment, an assessment, an entity type
    of those asked for) or that do not fit a W3C mark (a quote or a body text
    over 65,536 characters); no mark; ``by_label``: marks per category or entity type
    (tag and reference jobs); ``generator``: the client that found them;
    ``offline``: True when no model ran."""

    resource_id: str
    found: int
    created: int
    corrected: int = 0
    unmatched: int = 0
    rejected: int = 0
    by_label: dict[str, int] = {}
    generator: str
    offline: bool


class GenerationResult(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The new resource (``resource_id``, ``resource_name``, ``size`` bytes),
    the mark linked to it (``linked_mark_id``), and the generator."""

    resource_id: str
    resource_name: str
    size: int
    linked_mark_id: str | None = None
    generator: str
    offline: bool


# -- tag schemas ---------------------------------------------------------------


class TagCategory(msgspec.Struct, frozen=True, kw_only=True):
    """A structural role: what it means (for the model's prompt) and the words
    that signal it (for the offline method: whole words, case-insensitive, a
    plural ``s``/``es`` allowed; ``re:`` starts a regular expression, as
    :meth:`~jobledger.workers.offline.OfflineClient.tags` reads them)."""

    description: str
    keywords: tuple[str, ...]


class TagSchema(msgspec.Struct, frozen=True, kw_only=True):
    """A named set of structural roles a text may be tagged with."""

    id: str
    name: str
    categories: dict[str, TagCategory]


TAG_SCHEMAS: Mapping[str, TagSchema] = {
    schema.id: schema
    for schema in (
        TagSchema(
            id="scientific-imrad",
            name="Scientific paper (IMRaD)",
            categories={
                "Introduction": TagCategory(
                    description="background, motivation and the question asked",
                    keywords=(
                        "question",
                        "problem",
                        "background",
                        r"re:\bmotivat\w*",
                        "aim",
                        "known",
                    ),
                ),
                "Methods": TagCategory(
                    description="how the study was done",
                    keywords=("method", "measure", "sample", "procedure", "design", "data"),
                ),
                "Results": TagCategory(
                    description="what was found",
                    keywords=("result", "found", "show", "increase", "decrease", r"re:\bobserv\w*"),
                ),
                "Discussion": TagCategory(
                    description="what the findings mean, limits, what next",
                    keywords=(
                        "suggest",
                        "mean",
                        "limit",
                        r"re:\bimplicat\w*",
                        "future",
                        r"re:\bconclu\w*",
                    ),
                ),
            },
        ),
        TagSchema(
            id="legal-irac",
            name="Legal analysis (IRAC)",
            categories={
                "Issue": TagCategory(
                    description="the legal question to decide",
                    keywords=("whether", "issue", "question", "dispute"),
                ),
                "Rule": TagCategory(
                    description="the law that governs it",
                    keywords=("law", "statute", "rule", "held", "section", r"re:\bprovid\w*"),
                ),
                "Application": TagCategory(
                    description="the rule applied to the facts",
                    keywords=("here", "because", "facts", "applied", "therefore"),
                ),
                "Conclusion": TagCategory(
                    description="the answer to the issue",
                    keywords=(
                        r"re:\bconclu\w*",
                        "thus",
                        "accordingly",
                        r"re:\bdecid\w*",
                        "outcome",
                    ),
                ),
            },
        ),
        TagSchema(
            id="argument-toulmin",
            name="Argument (Toulmin)",
            categories={
                "Claim": TagCategory(
                    description="what is argued for",
                    keywords=("should", "must", "argue", "claim", "believe"),
                ),
                "Evidence": TagCategory(
                    description="facts offered in support",
                    keywords=("data", "study", "percent", "evidence", "shows", "according"),
                ),
                "Warrant": TagCategory(
                    description="why the evidence supports the claim",
                    keywords=("because", "since", "therefore", "implies", "so"),
                ),
                "Rebuttal": TagCategory(
                    description="objections and their answers",
                    keywords=("however", "although", "critics", "unless", "but"),
                ),
            },
        ),
    )
}
"""The tag schemas the tag worker knows, by id."""


# -- reading a model's reply ---------------------------------------------------


_FENCE = re.compile(r"^\s*```[A-Za-z]*\s*\n?|\n?\s*```\s*$")


def parse_passages(reply: str, *, truncated: bool) -> tuple[list[dict[str, Any]], int, bool]:
    """The passages in a model's reply: a JSON list of objects (a markdown
    code fence around it is allowed).

    Returns ``(passages, malformed, cut)``: the objects that have a non-empty
    string ``exact``, how many items did not, and whether the reply was cut
    short. A ``truncated`` reply keeps the objects that arrived whole (none
    if it was cut before its list began). Raises
    :class:`~jobledger.core.errors.InferenceError` (retryable) if a reply that
    was not truncated holds no such list or is not valid JSON (nested too
    deeply to decode counts as not valid).
    """
    body = _FENCE.sub("", reply.strip())
    start = body.find("[")
    if start < 0:
        if truncated:  # cut before the list began: nothing arrived whole
            return [], 0, True
        raise InferenceError(
            f"the model's reply is not a JSON list of passages: {_snippet(reply)}", retryable=True
        )
    body = body[start:]
    cut = False
    try:
        items = msgspec.json.decode(body[: body.rfind("]") + 1] if "]" in body else body)
    except (msgspec.DecodeError, RecursionError):
        if not truncated:
            raise InferenceError(
                f"the model's reply is not valid JSON: {_snippet(reply)}", retryable=True
            ) from None
        items, cut = _salvage(body), True
    if not isinstance(items, list):
        raise InferenceError(
            f"the model's reply is not a JSON list: {_snippet(reply)}", retryable=True
        )
    passages = [i for i in items if isinstance(i, dict) and isinstance(i.get("exact"), str)]
    passages = [p for p in passages if p["exact"]]
    return passages, len(items) - len(passages), cut or truncated


def _salvage(body: str) -> list[Any]:
    """The whole objects at the start of a JSON list cut short."""
    end = body.rfind("}")
    while end > 0:
        try:
            found = msgspec.json.decode(body[: end + 1] + "]")
        except (msgspec.DecodeError, RecursionError):
            end = body.rfind("}", 0, end)
            continue
        return found if isinstance(found, list) else []
    return []


def _snippet(text: str, size: int = 160) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= size else flat[:size] + "…")


def locate(text: str, exact: str, start: int | None, end: int | None) -> tuple[int, int] | None:
    """Where ``exact`` is in ``text``: at ``[start, end)`` if it is there;
    else its occurrence nearest to ``start`` (a model's offsets are often a
    little off); else the nearest match ignoring differences in whitespace;
    else ``None`` (also for an ``exact`` that is empty or only whitespace)."""
    if not exact.strip():
        return None
    if start is not None and end is not None and 0 <= start < end and text[start:end] == exact:
        return start, end
    anchor = start if start is not None else 0
    spans = [(m.start(), m.end()) for m in re.finditer(re.escape(exact), text)]
    if not spans:
        words = exact.split()
        if not words:
            return None
        pattern = r"\s+".join(re.escape(w) for w in words)
        spans = [(m.start(), m.end()) for m in re.finditer(pattern, text)]
    if not spans:
        return None
    return min(spans, key=lambda s: (abs(s[0] - anchor), s[0]))


# -- the workers -----------------------------------------------------------------

_P = TypeVar("_P", bound=msgspec.Struct)


class _Found(msgspec.Struct, kw_only=True):
    """Passages checked against the text, ready to become marks."""

    marks: list[tuple[int, int, list[Body], str | None]] = msgspec.field(default_factory=list)
    found: int = 0
    corrected: int = 0
    unmatched: list[str] = msgspec.field(default_factory=list)
    rejected: list[str] = msgspec.field(default_factory=list)
    oversized: list[tuple[str, str]] = msgspec.field(default_factory=list)  # (exact, why)
    problems: list[str] = msgspec.field(default_factory=list)

    def add(
        self,
        text: str,
        exact: str,
        start: int | None,
        end: int | None,
        body: list[Body],
        label: str | None = None,
    ) -> None:
        """Check a passage and keep it as a mark, or count why not: not in
        the text (``unmatched``), or too large for the W3C model
        (``oversized``: the Stower would refuse the mark mid-job)."""
        self.found += 1
        where = locate(text, exact, start, end)
        if where is None:
            self.unmatched.append(exact)
            return
        if where[1] - where[0] > _MAX_EXACT:
            why = f"a quote of {where[1] - where[0]} characters, over {_MAX_EXACT}"
            self.oversized.append((exact, why))
            return
        try:
            msgspec.convert(msgspec.to_builtins(body), list[Body])
        except msgspec.ValidationError as exc:
            self.oversized.append((exact, f"a body that does not fit: {exc}"))
            return
        if (start, end) != where:
            self.corrected += 1
        self.marks.append((where[0], where[1], body, label))


def _max_length(struct: type[msgspec.Struct], name: str) -> int:
    """The ``max_length`` core declares for the string field ``name`` of ``struct``."""
    info = msgspec.inspect.type_info(struct)
    fields = info.fields if isinstance(info, msgspec.inspect.StructType) else ()
    for field in fields:
        kind = field.type
        if field.name == name and isinstance(kind, msgspec.inspect.StrType) and kind.max_length:
            return kind.max_length
    raise TypeError(f"{struct.__name__}.{name} declares no max_length")


_MAX_EXACT = _max_length(TextQuoteSelector, "exact")  # 65,536 in core/annotations.py


class _ModelWorker(JobWorker):
    """What the six workers share: a document fetcher, an inference client
    (offline by default) and its settings. Every stage report is sent (no
    throttling: there are a handful per job)."""

    progress_interval = 0.0
    default_temperature: ClassVar[float] = 0.3

    def __init__(
        self,
        fetcher: ContentFetcher | None,
        client: InferenceClient | None = None,
        *,
        max_tokens: int = 2048,
        temperature: float | None = None,
        name: str | None = None,
        concurrency: int | None = None,
    ) -> None:
        super().__init__(name=name, concurrency=concurrency)
        self.fetcher = fetcher
        self.client: InferenceClient = client if client is not None else OfflineClient()
        self.max_tokens = max_tokens
        self.temperature = self.default_temperature if temperature is None else temperature

    @property
    def offline(self) -> ExtractiveMethods | None:
        """The client's extractive methods, when it runs no model (``offline``
        and offering :class:`~jobledger.workers.offline.ExtractiveMethods`)."""
        client = self.client
        return client if client.offline and isinstance(client, ExtractiveMethods) else None

    async def fetch(self, resource_id: str) -> str:
        """The text of ``resource_id``, from the fetcher."""
        if self.fetcher is None:
            raise NonRetryableError(f"{self.name} was given no fetcher to read documents with")
        return await self.fetcher.fetch(resource_id)


class _AnnotationWorker(_ModelWorker):
    """What the five passage-finding workers share: read the params and the
    document, find passages (with the model or offline), check them, mark
    them, and report what happened."""

    params_type: ClassVar[type[msgspec.Struct]]
    motivation: ClassVar[Motivation]
    needs: ClassVar[str] = "a body"  # what a passage from the model must carry, for messages

    def generator(self) -> Agent:
        """The W3C software agent recorded on this worker's marks."""
        return Agent.software(f"jobledger {self.name} with {self.client.name}")

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any] | PartialResult:
        params: Any = _params(job, self.params_type)
        if ctx.attempt > 1:  # a retry starts over: the marks of earlier attempts go
            earlier = [m for m in await ctx.marks(params.resource_id) if m.job_id == job.id]
            if earlier:
                await ctx.progress(5, stage="clearing", message=f"{len(earlier)} earlier marks")
                for mark in earlier:
                    await ctx.delete_mark(mark.id)
        await ctx.progress(10, stage="fetching", message=f"reading {params.resource_id}")
        text = await self.fetch(params.resource_id)
        found = await self.find(text, params, ctx)
        total = len(found.marks)
        await ctx.progress(60, stage="creating", message=f"{total} marks", processed=0, total=total)
        creator, generator = Agent.person(job.user), self.generator()
        by_label: dict[str, int] = {}
        for start, end, body, label in found.marks:
            annotation = Annotation.on_text(
                params.resource_id,
                text,
                start,
                end,
                motivation=self.motivation,
                body=body,
                creator=creator,
                generator=generator,
            )
            await ctx.create_mark(params.resource_id, annotation)
            if label is not None:
                by_label[label] = by_label.get(label, 0) + 1
        result = AnnotationResult(
            resource_id=params.resource_id,
            found=found.found,
            created=total,
            corrected=found.corrected,
            unmatched=len(found.unmatched),
            rejected=len(found.rejected) + len(found.oversized),
            by_label=by_label,
            generator=self.client.name,
            offline=self.offline is not None,
        )
        problems = list(found.problems)
        for passages, why in (
            (found.unmatched, "are not in the text"),
            (found.rejected, f"came without {self.needs}"),
        ):
            if passages:
                quotes = ", ".join(_snippet(q, 40) for q in passages[:3])
                problems.append(
                    f"{len(passages)} of {found.found} passages {why} (no mark made): {quotes}"
                )
        if found.oversized:
            quotes = ", ".join(_snippet(q, 40) for q, _ in found.oversized[:3])
            problems.append(
                f"{len(found.oversized)} of {found.found} passages do not fit a W3C mark "
                f"(no mark made): {quotes} ({found.oversized[0][1]})"
            )
        data: dict[str, Any] = msgspec.to_builtins(result)
        if problems:
            return PartialResult(result=data, error="; ".join(problems))
        return data

    @abstractmethod
    async def find(self, text: str, params: Any, ctx: JobContext) -> _Found:
        """The passages of ``text`` to mark (reporting the analyzing stage)."""

    async def ask(self, text: str, task: str, item: str, found: _Found, to_body: _BodyOf) -> None:
        """Ask the model for passages of ``text`` and add them to ``found``;
        ``to_body`` makes a passage's body and label from its ``text`` field
        (``None``: the passage lacks what the job needs, counted rejected)."""
        prompt = (
            f"{task}\n\n"
            "Answer with a JSON list only, no prose. Each element is an object with "
            f'"exact" (the passage, copied character for character from the text), '
            f'"start" and "end" (its character offsets in the text){item}.\n\n'
            f"TEXT:\n{text}"
        )
        reply = await self.client.generate(
            prompt, max_tokens=self.max_tokens, temperature=self.temperature
        )
        passages, malformed, cut = parse_passages(reply.text, truncated=reply.truncated)
        if malformed:
            found.problems.append(f"{malformed} items of the model's reply were not passages")
        if cut:
            found.problems.append(
                f"the model's reply was cut at max_tokens ({self.max_tokens}); "
                f"kept the {len(passages)} passages that arrived whole"
            )
        for passage in passages:
            made = to_body(passage.get("text"))
            if made is None:
                found.found += 1
                found.rejected.append(passage["exact"])
                continue
            start, end = _int(passage.get("start")), _int(passage.get("end"))
            found.add(text, passage["exact"], start, end, *made)


_BodyOf = Callable[[Any], tuple[list[Body], str | None] | None]
"""Makes a passage's body and label from the ``text`` a model gave with it."""


def _made(
    value: Any, purpose: Motivation, language: str | None = None
) -> tuple[list[Body], str | None] | None:
    """A ``TextualBody`` of a model's ``text``; ``None`` if it gave none."""
    if not isinstance(value, str) or not value.strip():
        return None
    return _textual(value, purpose, language)


def _textual(
    value: str, purpose: Motivation, language: str | None = None
) -> tuple[list[Body], str | None]:
    return [TextualBody(value=value.strip(), purpose=purpose, language=language)], None


def _fixed(body: list[Body], label: str) -> _BodyOf:
    """The same body and label for every passage (a tag pass's category)."""

    def made(_: Any) -> tuple[list[Body], str | None]:
        return body, label

    return made


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _params(job: Job, kind: type[_P]) -> _P:
    """``job.params`` as ``kind``; params that do not fit fail the job at once."""
    try:
        return msgspec.convert(job.params, kind)
    except msgspec.ValidationError as exc:
        raise NonRetryableError(f"invalid params: {exc}") from exc


def _instructions(instructions: str | None) -> str:
    return f" Follow these instructions: {instructions}" if instructions else ""


def _density(density: float, text: str) -> int:
    return max(1, round(density * len(text) / 2000))


class HighlightWorker(_AnnotationWorker):
    """``highlight-annotation``: the key passages of a document.

    Stages: ``fetching``, ``analyzing``, ``creating``. Marks: ``highlighting``
    with no body. Result: :class:`AnnotationResult`."""

    job_types = ("highlight-annotation",)
    params_type = HighlightParams
    motivation = "highlighting"

    async def find(self, text: str, params: Any, ctx: JobContext) -> _Found:
        await ctx.progress(30, stage="analyzing", message="finding key passages")
        found = _Found()
        if self.offline is not None:
            spans = await asyncio.to_thread(self.offline.highlights, text, params.density)
            for span in spans:
                found.add(text, span.exact, span.start, span.end, [])
            return found
        task = (
            f"Find about {_density(params.density, text)} key passages of the text below "
            f"worth highlighting.{_instructions(params.instructions)}"
        )
        await self.ask(text, task, "", found, lambda _: ([], None))
        return found


class CommentWorker(_AnnotationWorker):
    """``comment-annotation``: explanatory comments on passages.

    Stages: ``fetching``, ``analyzing``, ``creating``. Marks: ``commenting``
    with the comment as a ``TextualBody`` (purpose ``commenting``)."""

    job_types = ("comment-annotation",)
    params_type = CommentParams
    motivation = "commenting"
    needs = "a comment"

    async def find(self, text: str, params: Any, ctx: JobContext) -> _Found:
        await ctx.progress(30, stage="analyzing", message="choosing passages to comment on")
        found = _Found()

        if self.offline is not None:
            comments = await asyncio.to_thread(
                self.offline.comments,
                text,
                params.instructions,
                params.tone,
                density=params.density,
            )
            for span, comment in comments:
                found.add(text, span.exact, span.start, span.end, *_textual(comment, "commenting"))
            return found
        tone = f" Write in a {params.tone} tone." if params.tone else ""
        task = (
            f"Choose about {_density(params.density, text)} passages of the text below that "
            f"a reader would want explained, and write a short comment on each.{tone}"
            f"{_instructions(params.instructions)}"
        )
        await self.ask(
            text, task, ', and "text" (the comment)', found, lambda c: _made(c, "commenting")
        )
        return found


class AssessmentWorker(_AnnotationWorker):
    """``assessment-annotation``: evaluative assessments of passages.

    Stages: ``fetching``, ``analyzing``, ``creating``. Marks: ``assessing``
    with the assessment as a ``TextualBody`` (purpose ``assessing``, in the
    job's ``language``)."""

    job_types = ("assessment-annotation",)
    params_type = AssessmentParams
    motivation = "assessing"
    needs = "an assessment"

    async def find(self, text: str, params: Any, ctx: JobContext) -> _Found:
        await ctx.progress(30, stage="analyzing", message="assessing claims")
        found = _Found()
        language = params.language
        if self.offline is not None:
            assessments = await asyncio.to_thread(
                self.offline.assessments,
                text,
                params.instructions,
                params.tone,
                language,
                density=params.density,
            )
            for span, assessment in assessments:
                made = _textual(assessment, "assessing", language)
                found.add(text, span.exact, span.start, span.end, *made)
            return found
        tone = f" Be {params.tone}." if params.tone else ""
        task = (
            f"Assess about {_density(params.density, text)} claims of the text below: is each "
            f"well supported, and why? Write each assessment in language {language!r}.{tone}"
            f"{_instructions(params.instructions)}"
        )
        await self.ask(
            text,
            task,
            ', and "text" (the assessment)',
            found,
            lambda a: _made(a, "assessing", language),
        )
        return found


class TagWorker(_AnnotationWorker):
    """``tag-annotation``: structural roles by a tag schema, one pass per
    category.

    Stages: ``fetching``, ``analyzing`` (one report per category), ``creating``.
    Marks: ``tagging`` with the category (purpose ``tagging``) and the schema
    id (purpose ``classifying``) as ``TextualBody``\\ s. A category whose pass
    fails is reported and the others go on (the job ends partial); if every
    pass fails, the job fails."""

    job_types = ("tag-annotation",)
    params_type = TagParams
    motivation = "tagging"

    def __init__(
        self,
        fetcher: ContentFetcher,
        client: InferenceClient | None = None,
        *,
        schemas: Mapping[str, TagSchema] = TAG_SCHEMAS,
        max_tokens: int = 2048,
        temperature: float | None = None,
        name: str | None = None,
        concurrency: int | None = None,
    ) -> None:
        super().__init__(
            fetcher,
            client,
            max_tokens=max_tokens,
            temperature=temperature,
            name=name,
            concurrency=concurrency,
        )
        self.schemas = dict(schemas)

    async def find(self, text: str, params: Any, ctx: JobContext) -> _Found:
        schema = self.schemas.get(params.schema_id)
        if schema is None:
            raise NonRetryableError(
                f"unknown tag schema {params.schema_id!r}; known: {sorted(self.schemas)}"
            )
        names = params.categories or list(schema.categories)
        unknown = [n for n in names if n not in schema.categories]
        if unknown:
            raise NonRetryableError(f"{schema.id} has no categories {unknown}")
        found = _Found()
        failed: list[InferenceError] = []
        for number, name in enumerate(names, start=1):
            await ctx.progress(
                20 + 40 * (number - 1) / len(names),
                stage="analyzing",
                message=f"category {number} of {len(names)}: {name}",
            )
            body: list[Body] = [
                TextualBody(value=name, purpose="tagging"),
                TextualBody(value=schema.id, purpose="classifying"),
            ]
            if self.offline is not None:
                category = schema.categories[name]
                rules = {name: list(category.keywords)}
                for span, _ in await asyncio.to_thread(self.offline.tags, text, rules):
                    found.add(text, span.exact, span.start, span.end, body, name)
                continue
            task = (
                f"In the text below, find the passages whose structural role is {name!r} "
                f"({schema.categories[name].description}) in the sense of {schema.name}."
            )
            try:
                await self.ask(text, task, "", found, _fixed(body, name))
            except InferenceError as exc:
                failed.append(exc)
                found.problems.append(f"category {name}: {exc}")
        if failed and len(failed) == len(names):  # retryable if any pass may do better
            raise InferenceError(
                "; ".join(found.problems), retryable=any(e.retryable for e in failed)
            )
        return found


class ReferenceWorker(_AnnotationWorker):
    """``reference-annotation``: mentions of entities of the asked types.

    Stages: ``fetching``, ``analyzing``, ``creating``. Marks: ``linking`` with
    the entity type as a ``TextualBody`` (purpose ``tagging``) and no link
    yet (a generation job, or the application, adds one with
    ``mark:update-body``). Offsets are validated against the text and
    corrected when the quote is found elsewhere. A passage of a type that was
    not asked for is counted rejected."""

    job_types = ("reference-annotation",)
    params_type = ReferenceParams
    motivation = "linking"
    needs = "an entity type of those asked for"

    async def find(self, text: str, params: Any, ctx: JobContext) -> _Found:
        types = list(params.entity_types)
        await ctx.progress(30, stage="analyzing", message="finding " + ", ".join(types))
        found = _Found()
        if self.offline is not None:
            references = await asyncio.to_thread(self.offline.references, text, types)
            for span, entity_type in references:
                body: list[Body] = [TextualBody(value=entity_type, purpose="tagging")]
                found.add(text, span.exact, span.start, span.end, body, entity_type)
            return found
        wanted = {t.casefold(): t for t in types}

        def body_of(entity_type: Any) -> tuple[list[Body], str | None] | None:
            if not isinstance(entity_type, str) or entity_type.casefold() not in wanted:
                return None
            named = wanted[entity_type.casefold()]
            return [TextualBody(value=named, purpose="tagging")], named

        task = (
            "Find every mention in the text below of an entity of these types: "
            + ", ".join(types)
            + "."
        )
        await self.ask(text, task, ', and "text" (its entity type)', found, body_of)
        return found


class GenerationWorker(_ModelWorker):
    """``generation``: write a new document, store it as a resource, and link
    the reference mark that asked for it.

    Stages: ``fetching`` (the source, if any), ``generating``, ``creating``
    (``resource:create``), ``linking`` (``mark:update-body`` adding a
    ``SpecificResource`` to the reference mark, if one was named). The link
    names the resource id returned for *this* job's ``resource:create``: each
    reply is matched to its own command, never taken from whichever reply
    comes first. The document's id is ``res_`` and the job id, so a retried
    attempt finds what an earlier one stored (and linked) instead of storing
    another copy. A reply cut at ``max_tokens`` is stored and the job ends
    partial, saying so; so does a reference mark that does not exist (the
    document stays stored, unlinked). Result: :class:`GenerationResult`."""

    job_types = ("generation",)
    default_temperature = 0.7

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any] | PartialResult:
        params = _params(job, GenerationParams)
        # One document per job, whatever its attempts: a retry finds the one an
        # earlier attempt stored (and linked) and goes on from there.
        resource_id = f"res_{job.id}"
        stored = await ctx.resource(resource_id)
        if stored is not None:
            return await self._link(ctx, params, resource_id, stored.size, cut=False)
        source = ""
        if params.source_resource_id is not None:
            await ctx.progress(10, stage="fetching", message=f"reading {params.source_resource_id}")
            source = await self.fetch(params.source_resource_id)
        await ctx.progress(30, stage="generating", message=params.title)
        cut = False
        if self.offline is not None:
            content = await asyncio.to_thread(
                self.offline.generate_document,
                params.title,
                params.prompt,
                source,
                params.language,
            )
        else:
            reply = await self.client.generate(
                _generation_prompt(params, source),
                max_tokens=self.max_tokens,
                temperature=self.temperature,
            )
            content, cut = reply.text, reply.truncated
        await ctx.progress(70, stage="creating", message=f"{len(content)} characters")
        data = content.encode()
        await ctx.create_resource(
            params.title, data, media_type="text/markdown", resource_id=resource_id
        )
        return await self._link(ctx, params, resource_id, len(data), cut=cut)

    async def _link(
        self,
        ctx: JobContext,
        params: GenerationParams,
        resource_id: str,
        size: int,
        *,
        cut: bool,
    ) -> dict[str, Any] | PartialResult:
        """Link the reference mark (if any) to the stored document; the result."""
        linked = None
        problems: list[str] = []
        if params.reference_mark_id is not None:
            await ctx.progress(90, stage="linking", message=params.reference_mark_id)
            link = SpecificResource(source=resource_id, purpose="linking")
            try:
                await ctx.update_mark_body(params.reference_mark_id, [BodyAdd(item=link)])
                linked = params.reference_mark_id
            except NotFound:
                # The document is stored: a retry would find it and fail again.
                problems.append(
                    f"the reference mark {params.reference_mark_id} does not exist; "
                    f"the document is stored as {resource_id}, linked from no mark"
                )
            except ValidationError as exc:
                if exc.field != "operations[0]":  # (the one failure of an add: it is there)
                    raise
                linked = params.reference_mark_id  # an earlier attempt linked it
        result: dict[str, Any] = msgspec.to_builtins(
            GenerationResult(
                resource_id=resource_id,
                resource_name=params.title,
                size=size,
                linked_mark_id=linked,
                generator=self.client.name,
                offline=self.offline is not None,
            )
        )
        if cut:
            problems.insert(
                0,
                f"the model's reply was cut at max_tokens ({self.max_tokens}); "
                "the document is stored as far as it got",
            )
        if problems:
            return PartialResult(result=result, error="; ".join(problems))
        return result


def _generation_prompt(params: GenerationParams, source: str) -> str:
    parts = [
        f"Write a markdown document titled {params.title!r} in language {params.language!r}.",
        "Answer with the document only, starting with its title as a heading.",
    ]
    if params.prompt:
        parts.append(f"What it should cover: {params.prompt}")
    if source:
        parts.append(f"Use this source as context:\n{source}")
    return "\n\n".join(parts)


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
