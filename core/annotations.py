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

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote as _pct

import msgspec

from .errors import ValidationError
from .models import Mark, User
from .selectors import MAX_DEPTH
from .w3c import (
    ANNOTATION_CONTEXT,
    MOTIVATIONS,
    Motivation,
    check_annotation,
    check_base_iri,
    iri_of,
    resource_of,
)

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
    "annotation_json",
    "apply_body_operations",
    "quote",
    "to_jsonld",
]

QUOTE_CONTEXT = 32
"""How many characters of text :func:`quote` keeps either side of a span."""

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
        ident = _pct(user.id, safe="-._~")
        iri = (
            f"https://{user.domain}/users/{ident}" if user.domain else f"urn:jobledger:user:{ident}"
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
        """Raise :class:`ValidationError` unless the annotation passes every
        MUST of the W3C model and jobledger's rules for a mark on
        ``resource_id`` (see :func:`~jobledger.core.w3c.check_annotation`)."""
        check_annotation(msgspec.to_builtins(self), resource_id)

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


def to_jsonld(mark: Mark, *, base_iri: str | None = None) -> dict[str, Any]:
    """The mark as a W3C annotation document (JSON-LD).

    The stored annotation, unchanged but for what jobledger sets: ``@context``
    and ``type`` when it has none; ``id``, always the mark's IRI
    (``urn:jobledger:mark:ID``, or ``BASE_IRI`` + ``marks/ID``), the id the
    annotation was given, if another, moving to ``via`` (as the W3C protocol
    has a server do); ``created`` (the mark's time) when it has none; and every
    reference to a jobledger resource by its bare id (``target``, ``body``,
    ``source``) as the resource's IRI (:func:`~jobledger.core.w3c.iri_of`).
    Raises :class:`ValidationError` if ``base_iri`` is not an absolute IRI
    ending in ``/``.

    A mark written before annotations were W3C (free-form JSON, schema 1 of
    ``mark.created``) is exported as a ``describing`` annotation of its whole
    resource whose body is that JSON (``format`` ``application/json``)."""
    check_base_iri(base_iri)
    stored = _annotation_of(mark)
    mark_iri = iri_of("mark", mark.id, base_iri)
    document: dict[str, Any] = {
        "@context": stored.get("@context", ANNOTATION_CONTEXT),
        "id": mark_iri,
        "type": stored.get("type", "Annotation"),
    }
    for key, value in stored.items():
        if key not in document:
            document[key] = _with_iris(value, key, base_iri)
    given = stored.get("id")
    given = given[0] if isinstance(given, list) and len(given) == 1 else given
    if isinstance(given, str) and given != mark_iri:
        via = document.get("via")
        if via is None:
            document["via"] = given
        elif given not in (via if isinstance(via, list) else [via]):
            document["via"] = [*(via if isinstance(via, list) else [via]), given]
    document.setdefault("created", _iso(mark.created_at))
    return document


def _with_iris(value: Any, key: str, base_iri: str | None) -> Any:
    """``value`` (of property ``key``) with each bare jobledger id that names a
    resource (a ``target`` or ``body`` string, a ``source``) as its IRI."""
    if key in ("target", "body", "source", "items"):
        if isinstance(value, str):
            named = resource_of(value)
            return value if named is None or named != value else iri_of("resource", named, base_iri)
        if isinstance(value, list):
            return [_with_iris(item, key, base_iri) for item in value]
    if isinstance(value, dict):
        return {k: _with_iris(v, k, base_iri) for k, v in value.items()}
    return value


def _annotation_of(mark: Mark) -> dict[str, Any]:
    """The mark's annotation; one stored before annotations were W3C (free-form
    JSON) becomes a ``describing`` annotation of the whole resource whose body
    is that JSON."""
    try:
        check_annotation(mark.annotation, mark.resource_id)
    except ValidationError:
        legacy = msgspec.json.encode(mark.annotation).decode()
        return annotation_json(
            Annotation(
                motivation="describing",
                target=Target(source=mark.resource_id),
                body=[TextualBody(value=legacy, format="application/json", purpose="describing")],
            )
        )
    return mark.annotation


def annotation_json(annotation: object) -> dict[str, Any]:
    """The JSON form of ``annotation``: an :class:`Annotation` encoded, or a
    mapping (a W3C annotation document) copied as plain dicts and lists.
    Raises :class:`ValidationError` (field ``annotation``) for anything else,
    or for a value JSON cannot carry unchanged (NaN, bytes, sets, …); whether
    it is a W3C annotation is :func:`~jobledger.core.w3c.check_annotation`'s
    to say."""
    if isinstance(annotation, Annotation):
        built: dict[str, Any] = msgspec.to_builtins(annotation)
        return built
    if not isinstance(annotation, Mapping):
        raise ValidationError("an annotation MUST be a JSON object", field="annotation")
    return {str(k): _plain(v, f"annotation.{k}", 0) for k, v in _keys(annotation, "annotation")}


def _keys(mapping: Mapping[Any, Any], path: str) -> list[tuple[str, Any]]:
    for key in mapping:
        if not isinstance(key, str):
            raise ValidationError(f"key {key!r} is not a string", field=path)
    return list(mapping.items())


def _plain(value: Any, path: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise ValidationError(f"nested deeper than {MAX_DEPTH} levels", field=path)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError("NaN and infinities have no JSON form", field=path)
    if isinstance(value, str | int | float | bool | type(None)):
        return value
    if isinstance(value, Mapping):
        return {k: _plain(v, f"{path}.{k}", depth + 1) for k, v in _keys(value, path)}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, msgspec.Struct):
        return _plain(msgspec.to_builtins(value), path, depth)
    raise ValidationError(f"{type(value).__name__} has no JSON form", field=path)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "-" for c in name.lower()).strip("-")
