"""The five workers that mark passages of a document: highlights,
comments, assessments, tags by a schema, and references to entities.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from jobledger.core import (
    Body,
    TextualBody,
)
from jobledger.workers import JobContext, NonRetryableError

from .base import _AnnotationWorker, _density, _fixed, _Found, _instructions, _made, _textual
from .errors import InferenceError
from .fetchers import ContentFetcher
from .inference import InferenceClient
from .params import (
    TAG_SCHEMAS,
    AssessmentParams,
    CommentParams,
    HighlightParams,
    ReferenceParams,
    TagParams,
    TagSchema,
)

__all__ = ["AssessmentWorker", "CommentWorker", "HighlightWorker", "ReferenceWorker", "TagWorker"]


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
