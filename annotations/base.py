"""What the six annotation workers share: a worker that asks a model (or
the offline client) and checks every passage it names against the text
before it becomes a mark, and the counts of what was found, corrected,
unmatched or refused.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import msgspec

from jobledger.core import (
    Agent,
    Annotation,
    Body,
    Job,
    Motivation,
    TextQuoteSelector,
    TextualBody,
)
from jobledger.workers import JobContext, JobWorker, NonRetryableError, PartialResult

from .fetchers import ContentFetcher
from .inference import InferenceClient
from .offline import ExtractiveMethods, OfflineClient
from .params import AnnotationResult
from .replies import _snippet, locate, parse_passages

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
