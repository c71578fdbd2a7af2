"""Marks as W3C Web Annotations (https://www.w3.org/TR/annotation-model/).

An :class:`Annotation` says what a mark is about (``target``: a resource,
narrowed by selectors to a span of its text), why it was made
(``motivation``), what it says (``body``), who made it (``creator``, a
person) and with what (``generator``, software). These Structs encode to the
W3C JSON form; :func:`to_jsonld` adds what the mark itself knows (its id, its
time) and the JSON-LD context, giving a valid W3C annotation document.

Offsets are in characters (Python ``str`` indices, i.e. Unicode code points),
as the W3C ``TextPositionSelector`` defines them. A ``TextQuoteSelector`` quotes
the span (``exact``) with up to :data:`QUOTE_CONTEXT` characters either side,
so the span can be found again if the text changes.

Body updates are :data:`BodyOperation`\\ s (``add``, ``remove``, ``replace``),
applied in order by :func:`apply_body_operations`, which refuses an operation
that does not apply, so a ``mark.body_updated`` event always folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from .errors import ValidationError
from .models import Mark, User

__all__ = [
    "ANNOTATION_CONTEXT",
    "MOTIVATIONS",
    "QUOTE_CONTEXT",
    "Agent",
    "Annotation",
    "Body",
    "BodyAdd",
    "BodyOperation",
    "BodyRemove",
    "BodyReplace",
    "Motivation",
    "Selector",
    "SpecificResource",
    "Target",
    "TextPositionSelector",
    "TextQuoteSelector",
    "TextualBody",
    "apply_body_operations",
    "quote",
    "to_jsonld",
]

ANNOTATION_CONTEXT = "http://www.w3.org/ns/anno.jsonld"
"""The JSON-LD context of every W3C annotation document."""

QUOTE_CONTEXT = 32
"""How many characters of text :func:`quote` keeps either side of a span."""

Motivation = Literal[
    "assessing",
    "bookmarking",
    "classifying",
    "commenting",
    "describing",
    "editing",
    "highlighting",
    "identifying",
    "linking",
    "moderating",
    "questioning",
    "replying",
    "tagging",
]
"""The W3C motivations (also the purposes a body may have)."""

MOTIVATIONS: tuple[str, ...] = Motivation.__args__  # type: ignore[attr-defined]

_Text = Annotated[str, msgspec.Meta(max_length=65536)]
_Iri = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
_Offset = Annotated[int, msgspec.Meta(ge=0)]


class _W3C(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True
):
    """Base of the W3C Structs: absent optional fields are left out of the JSON."""


class TextPositionSelector(
    _W3C, frozen=True, kw_only=True, tag_field="type", tag="TextPositionSelector"
):
    """The span ``[start, end)`` of the resource's text, in characters."""

    start: _Offset
    end: _Offset


class TextQuoteSelector(_W3C, frozen=True, kw_only=True, tag_field="type", tag="TextQuoteSelector"):
    """The span's text (``exact``) and up to :data:`QUOTE_CONTEXT` characters
    before (``prefix``) and after (``suffix``) it."""

    exact: Annotated[str, msgspec.Meta(min_length=1, max_length=65536)]
    prefix: _Text = ""
    suffix: _Text = ""


Selector = TextPositionSelector | TextQuoteSelector


class Target(_W3C, frozen=True, kw_only=True):
    """What an annotation is about: the resource ``source``, narrowed by its
    selectors (all naming the same span); no selector means the whole resource."""

    source: _Iri
    selector: list[Selector] = []


class TextualBody(_W3C, frozen=True, kw_only=True, tag_field="type", tag="TextualBody"):
    """Text the annotation says: a comment, an assessment, a tag."""

    value: _Text
    format: Annotated[str, msgspec.Meta(max_length=128)] = "text/plain"
    language: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    purpose: Motivation | None = None


class SpecificResource(_W3C, frozen=True, kw_only=True, tag_field="type", tag="SpecificResource"):
    """A link from the annotation to another resource (``source``), usually
    with ``purpose="linking"``."""

    source: _Iri
    purpose: Motivation | None = None


Body = TextualBody | SpecificResource


class Agent(_W3C, frozen=True, kw_only=True):
    """A W3C agent: a ``Person`` (the creator) or ``Software`` (the generator)."""

    id: _Iri
    type: Literal["Person", "Organization", "Software"]
    name: _Text | None = None
    email: _Iri | None = None
    homepage: _Iri | None = None

    @classmethod
    def person(cls, user: User) -> Agent:
        """The W3C agent for a job's user: an ``https://DOMAIN/users/ID`` id
        when the user has a domain (``urn:jobledger:user:ID`` otherwise), their
        name (or id) and their email as a ``mailto:`` IRI."""
        iri = (
            f"https://{user.domain}/users/{user.id}"
            if user.domain
            else f"urn:jobledger:user:{user.id}"
        )
        email = f"mailto:{user.email}" if user.email else None
        return cls(id=iri, type="Person", name=user.name or user.id, email=email)

    @classmethod
    def software(cls, name: str, *, version: str | None = None) -> Agent:
        """The W3C agent for the software that made an annotation (a worker,
        with the model it used in ``name``)."""
        label = name if version is None else f"{name} {version}"
        return cls(id=f"urn:jobledger:software:{_slug(name)}", type="Software", name=label)


class Annotation(_W3C, frozen=True, kw_only=True):
    """A mark's content, as the W3C model has it (without the ``id`` and
    ``created`` that the mark itself holds; see :func:`to_jsonld`)."""

    motivation: Motivation
    target: Target
    body: list[Body] = []
    creator: Agent | None = None
    generator: Agent | None = None

    def check(self, resource_id: str) -> None:
        """Raise :class:`ValidationError` unless the annotation targets
        ``resource_id`` and its selectors name one consistent span."""
        if self.target.source != resource_id:
            raise ValidationError(
                f"targets {self.target.source!r}, not the mark's resource {resource_id!r}",
                field="annotation.target.source",
            )
        positions = [s for s in self.target.selector if isinstance(s, TextPositionSelector)]
        quotes = [s for s in self.target.selector if isinstance(s, TextQuoteSelector)]
        if len(positions) > 1 or len(quotes) > 1:
            raise ValidationError(
                "at most one selector of each type", field="annotation.target.selector"
            )
        for position in positions:
            if position.end <= position.start:
                raise ValidationError(
                    f"end {position.end} is not after start {position.start}",
                    field="annotation.target.selector",
                )
            for exact in quotes:
                if len(exact.exact) != position.end - position.start:
                    raise ValidationError(
                        f"quotes {len(exact.exact)} characters for a span of "
                        f"{position.end - position.start}",
                        field="annotation.target.selector",
                    )

    @classmethod
    def on_text(
        cls,
        resource_id: str,
        text: str,
        start: int,
        end: int,
        *,
        motivation: Motivation,
        body: Sequence[Body] = (),
        creator: Agent | None = None,
        generator: Agent | None = None,
    ) -> Annotation:
        """An annotation on ``text[start:end]`` of ``resource_id``, with both
        selectors filled from the text. Raises :class:`ValidationError` if the
        span is empty or outside the text."""
        return cls(
            motivation=motivation,
            target=Target(source=resource_id, selector=list(quote(text, start, end))),
            body=list(body),
            creator=creator,
            generator=generator,
        )

    def span(self) -> tuple[int, int] | None:
        """The ``(start, end)`` of the position selector, if there is one."""
        for selector in self.target.selector:
            if isinstance(selector, TextPositionSelector):
                return selector.start, selector.end
        return None

    def exact(self) -> str | None:
        """The quoted text, if there is a quote selector."""
        for selector in self.target.selector:
            if isinstance(selector, TextQuoteSelector):
                return selector.exact
        return None


def quote(text: str, start: int, end: int) -> tuple[TextPositionSelector, TextQuoteSelector]:
    """Both selectors for ``text[start:end]``. Raises :class:`ValidationError`
    if the span is empty or does not lie inside ``text``."""
    if not 0 <= start < end <= len(text):
        raise ValidationError(f"span [{start}, {end}) is not inside a text of {len(text)}")
    return (
        TextPositionSelector(start=start, end=end),
        TextQuoteSelector(
            exact=text[start:end],
            prefix=text[max(0, start - QUOTE_CONTEXT) : start],
            suffix=text[end : end + QUOTE_CONTEXT],
        ),
    )


class BodyAdd(_W3C, frozen=True, kw_only=True, tag_field="op", tag="add"):
    """Append ``item`` to the body; refused if it is already there."""

    item: Body


class BodyRemove(_W3C, frozen=True, kw_only=True, tag_field="op", tag="remove"):
    """Remove ``item`` from the body; refused if it is not there."""

    item: Body


class BodyReplace(_W3C, frozen=True, kw_only=True, tag_field="op", tag="replace"):
    """Put ``new_item`` where ``old_item`` is; refused if ``old_item`` is not there."""

    old_item: Body
    new_item: Body


BodyOperation = BodyAdd | BodyRemove | BodyReplace


def apply_body_operations(
    body: Sequence[dict[str, Any]], operations: Sequence[BodyOperation | dict[str, Any]]
) -> list[dict[str, Any]]:
    """The body (as stored: W3C JSON objects) after ``operations``, in order.

    Items compare by their JSON form. Raises :class:`ValidationError` if an
    operation does not apply (adding an item that is there, removing or
    replacing one that is not), naming the operation's index.
    """
    if not isinstance(body, list):  # a free-form mark from before W3C
        raise ValidationError("the mark's body is not a list of W3C bodies", field="body")
    items = list(body)
    for index, operation in enumerate(operations):
        step = msgspec.to_builtins(operation)
        field = f"operations[{index}]"
        if step["op"] == "add":
            if step["item"] in items:
                raise ValidationError("the item is already in the body", field=field)
            items.append(step["item"])
        elif step["op"] == "remove":
            if step["item"] not in items:
                raise ValidationError("the item is not in the body", field=field)
            items.remove(step["item"])
        else:
            if step["old_item"] not in items:
                raise ValidationError("the item to replace is not in the body", field=field)
            if step["new_item"] in items and step["new_item"] != step["old_item"]:
                raise ValidationError("the new item is already in the body", field=field)
            items[items.index(step["old_item"])] = step["new_item"]
    return items


def to_jsonld(mark: Mark, *, base: str = "urn:jobledger:mark:") -> dict[str, Any]:
    """The mark as a W3C annotation document (JSON-LD): its annotation with
    ``@context``, ``id`` (``base`` + the mark's id), ``type`` and ``created``.

    A mark written before annotations were W3C (free-form JSON, schema 1 of
    ``mark.created``) is exported as a ``describing`` annotation of its whole
    resource whose body is that JSON (``format`` ``application/json``)."""
    document: dict[str, Any] = {
        "@context": ANNOTATION_CONTEXT,
        "id": f"{base}{mark.id}",
        "type": "Annotation",
    }
    document.update(msgspec.to_builtins(_annotation_of(mark)))
    document["created"] = _iso(mark.created_at)
    return document


def _annotation_of(mark: Mark) -> Annotation:
    """The mark's annotation; one stored before annotations were W3C (free-form
    JSON) becomes a ``describing`` annotation of the whole resource whose body
    is that JSON."""
    try:
        return msgspec.convert(mark.annotation, Annotation)
    except msgspec.ValidationError:
        legacy = msgspec.json.encode(mark.annotation).decode()
        return Annotation(
            motivation="describing",
            target=Target(source=mark.resource_id),
            body=[TextualBody(value=legacy, format="application/json", purpose="describing")],
        )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "-" for c in name.lower()).strip("-")
