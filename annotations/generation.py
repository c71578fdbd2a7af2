"""The generation worker: writes a new document with a model, stores it as
a resource, and links the reference mark that asked for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from jobledger.core import (
    BodyAdd,
    Job,
    NotFound,
    SpecificResource,
    ValidationError,
)
from jobledger.workers import JobContext, PartialResult

from .base import _ModelWorker, _params
from .params import GenerationParams, GenerationResult

__all__ = ["GenerationWorker"]


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
