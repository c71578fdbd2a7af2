"""What the annotation jobs are asked and what they answer: the params and
results of the six job types (msgspec Structs whose JSON names are camelCase,
as in Semiont: ``resourceId``, ``entityTypes``, ``highlightsFound``), and the
tag schemas a tag job names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

__all__ = [
    "TAG_SCHEMAS",
    "AnnotationResult",
    "AssessmentParams",
    "CommentParams",
    "GenerationParams",
    "GenerationResult",
    "HighlightParams",
    "ReferenceParams",
    "TagCategory",
    "TagParams",
    "TagSchema",
]


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
