"""The W3C Web Annotation Data Model's MUSTs, checked on an annotation's JSON.

:func:`check_annotation` walks an annotation document as the W3C defines it
(https://www.w3.org/TR/annotation-model/): single values or lists for
``body``, ``target``, ``selector`` …; bodies and targets given as IRIs,
External Web Resources, ``TextualBody``, ``SpecificResource`` or ``Choice``;
every selector and state of the model, with ``refinedBy``. It raises one
:class:`ValidationError` naming every MUST the document breaks (``field`` is
the path of the first), and changes nothing: jobledger stores the document
exactly as given.

Beyond the MUSTs, jobledger keeps its own rules: a property outside the model
is refused (a typo must not be stored silently) unless the ``@context`` brings
another context that may define it, or its name is a compact IRI
(``schema:…``); a target that names a jobledger resource must name the mark's
resource, and on it the ``TextPositionSelector`` and ``TextQuoteSelector``
must name one span (at most one of each, ``end`` after ``start``, a quote of
the span's length).

References: a jobledger id (letters, digits and ``._~-``, no scheme) where an
IRI of a resource is expected (``target``, ``body``, ``source``) names a
jobledger resource; :func:`iri_of` gives every resource, mark and job its IRI
(``urn:jobledger:KIND:ID``, or ``BASE_IRI`` + ``resources/ID`` …).
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote, unquote

from .errors import ValidationError
from .selectors import BARE_ID, IRI, MAX_DEPTH, Checks, as_list, is_date_time, items_of

__all__ = [
    "ANNOTATION_CONTEXT",
    "MOTIVATIONS",
    "Motivation",
    "check_annotation",
    "check_base_iri",
    "iri_of",
    "resource_of",
]

ANNOTATION_CONTEXT = "http://www.w3.org/ns/anno.jsonld"
"""The JSON-LD context of every W3C annotation document."""

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

_KINDS = {"resource": "resources", "mark": "marks", "job": "jobs"}
_REMOVED = ("Composite", "List", "Independents")
_DIRECTIONS = ("ltr", "rtl", "auto")

# Properties the model gives each kind of object (beside compact IRIs like schema:x).
_DESCRIBED = {
    "id",
    "type",
    "format",
    "language",
    "processingLanguage",
    "textDirection",
    "accessibility",
    "rights",
    "canonical",
    "via",
    "creator",
    "created",
    "modified",
    "generator",
    "generated",
    "audience",
}
_ANNOTATION_KEYS = {
    "@context",
    "id",
    "type",
    "body",
    "bodyValue",
    "target",
    "motivation",
    "creator",
    "created",
    "generator",
    "generated",
    "modified",
    "audience",
    "rights",
    "canonical",
    "via",
    "stylesheet",
}
_SPECIFIC_KEYS = _DESCRIBED | {
    "source",
    "selector",
    "state",
    "styleClass",
    "renderedVia",
    "scope",
    "purpose",
}
_TEXTUAL_KEYS = _DESCRIBED | {"value", "purpose"}
_CHOICE_KEYS = _DESCRIBED | {"items"}
_AGENT_KEYS = {"id", "type", "name", "nickname", "email", "email_sha1", "homepage"}


def iri_of(
    kind: Literal["resource", "mark", "job"], ident: str, base_iri: str | None = None
) -> str:
    """The IRI jobledger exports for its resource, mark or job ``ident``:
    ``urn:jobledger:KIND:ID`` by default, ``BASE_IRI`` + ``resources/ID``
    (``marks/ID``, ``jobs/ID``) under a base IRI. The id is percent-encoded,
    so any id gives a valid IRI."""
    encoded = quote(ident, safe="-._~")
    if base_iri is None:
        return f"urn:jobledger:{kind}:{encoded}"
    return f"{base_iri}{_KINDS[kind]}/{encoded}"


def check_base_iri(base_iri: str | None) -> None:
    """Raise :class:`ValidationError` unless ``base_iri`` is ``None`` or an
    absolute IRI ending in ``/``."""
    if base_iri is not None and not (
        isinstance(base_iri, str) and IRI.match(base_iri) and base_iri.endswith("/")
    ):
        raise ValidationError("must be an absolute IRI ending in '/'", field="base_iri")


def resource_of(reference: object) -> str | None:
    """The jobledger resource id that ``reference`` names (a bare id, or
    ``urn:jobledger:resource:ID``), or ``None`` for any other IRI."""
    if not isinstance(reference, str):
        return None
    if BARE_ID.match(reference):
        return reference
    if reference.startswith("urn:jobledger:resource:"):
        return unquote(reference.removeprefix("urn:jobledger:resource:")) or None
    return None


def check_annotation(document: object, resource_id: str, *, field: str = "annotation") -> None:
    """Raise :class:`ValidationError` if ``document`` breaks a MUST of the W3C
    Web Annotation Data Model or one of jobledger's rules (module docstring)
    for a mark on ``resource_id``. The message names every MUST broken;
    ``field`` is the path of the first (``annotation.target.selector.start``)."""
    checker = _Checker(document, resource_id)
    checker.annotation(document, field)
    problems = checker.problems + checker.own
    if problems:
        path, message = problems[0]
        more = [f"{p}: {m}" for p, m in problems[1:]]
        if more:
            message += f" (and {len(more)} more: {'; '.join(more)})"
        raise ValidationError(message, field=path)


def _types(obj: dict[str, Any]) -> list[str]:
    value = obj.get("type", [])
    return [t for t in as_list(value) if isinstance(t, str)]


class _Checker(Checks):
    def __init__(self, document: object, resource_id: str) -> None:
        context = document.get("@context") if isinstance(document, dict) else None
        super().__init__(extended=isinstance(context, list) and len(context) > 1)
        self.resource_id = resource_id
        self.styled = False

    # -- the annotation ----------------------------------------------------------

    def annotation(self, doc: object, path: str) -> None:
        if not isinstance(doc, dict):
            self.fail(path, "an annotation MUST be a JSON object")
            return
        if "@context" not in doc and ("id" in doc or "type" in doc):
            # Without id and type it is jobledger's JSON form of an Annotation,
            # to which the export adds @context; with them, a W3C document.
            self.fail(path, f"an annotation MUST have @context {ANNOTATION_CONTEXT!r}")
        self.known(doc, _ANNOTATION_KEYS, path, "Annotation")
        if "@context" in doc:
            context = doc["@context"]
            if not (
                context == ANNOTATION_CONTEXT
                or (isinstance(context, list) and ANNOTATION_CONTEXT in context)
            ):
                self.fail(
                    f"{path}.@context",
                    f"an annotation's @context MUST be or include {ANNOTATION_CONTEXT!r}",
                )
            self.json(context, f"{path}.@context")
        if "id" in doc:
            self.single(
                doc["id"],
                f"{path}.id",
                "an annotation MUST have one IRI as id",
                lambda v: isinstance(v, str) and bool(IRI.match(v)),
            )
        if "type" in doc and "Annotation" not in as_list(doc["type"]):
            self.fail(f"{path}.type", "an annotation's type MUST be or include 'Annotation'")
        self.styled = "stylesheet" in doc
        self.described(doc, path)
        if "motivation" in doc:
            self.motivations(doc["motivation"], f"{path}.motivation", "motivation")
        if "body" in doc and "bodyValue" in doc:
            self.fail(f"{path}.bodyValue", "an annotation MUST NOT have both body and bodyValue")
        if "bodyValue" in doc:
            self.single(
                doc["bodyValue"],
                f"{path}.bodyValue",
                "bodyValue MUST be a single string",
                lambda v: isinstance(v, str),
            )
        if "body" in doc:
            self.resources(doc["body"], f"{path}.body", "body")
        if "target" not in doc:
            self.fail(path, "an annotation MUST have at least one target")
        else:
            self.resources(doc["target"], f"{path}.target", "target")
            for target, at in items_of(doc["target"], f"{path}.target"):
                self.passage(target, at)
        if "stylesheet" in doc:
            self.stylesheet(doc["stylesheet"], f"{path}.stylesheet")

    def motivations(self, value: Any, path: str, what: str) -> None:
        for item, at in items_of(value, path):
            if not isinstance(item, str) or (item not in MOTIVATIONS and not self.extended):
                self.fail(
                    at, f"a {what} MUST be one of the W3C motivations: {', '.join(MOTIVATIONS)}"
                )

    def described(self, obj: dict[str, Any], path: str) -> None:
        """The properties that annotations, bodies and targets share."""
        for key in ("created", "modified", "generated"):
            if key in obj:
                self.single(
                    obj[key],
                    f"{path}.{key}",
                    f"{key} MUST be one xsd:dateTime with a time zone (RFC 3339)",
                    is_date_time,
                )
        for key in ("rights", "via"):
            if key in obj:
                self.iris(obj[key], f"{path}.{key}", key)
        if "canonical" in obj:
            self.single(
                obj["canonical"],
                f"{path}.canonical",
                "canonical MUST be one IRI",
                lambda v: isinstance(v, str) and bool(IRI.match(v)),
            )
        for key in ("creator", "generator"):
            if key in obj:
                self.agents(obj[key], f"{path}.{key}", key)
        if "audience" in obj:
            self.audience(obj["audience"], f"{path}.audience")

    def agents(self, value: Any, path: str, what: str) -> None:
        if isinstance(value, list) and not value:
            self.fail(path, f"a {what} MUST be an IRI, an Agent or a non-empty list of them")
        for agent, at in items_of(value, path):
            if isinstance(agent, str):
                self.iri(agent, at, f"a {what} given as a string")
            elif isinstance(agent, dict):
                self.known(agent, _AGENT_KEYS, at, "Agent")
                if "id" in agent:
                    self.single(
                        agent["id"],
                        f"{at}.id",
                        "an Agent's id MUST be one IRI",
                        lambda v: isinstance(v, str) and bool(IRI.match(v)),
                    )
                for key in ("type", "name", "nickname", "email_sha1"):
                    if key in agent:
                        self.strings(agent[key], f"{at}.{key}", f"an Agent's {key}")
                for key in ("email", "homepage"):
                    if key in agent:
                        self.iris(agent[key], f"{at}.{key}", f"an Agent's {key}")
            else:
                self.fail(at, f"a {what} MUST be an IRI, an Agent or a non-empty list of them")

    def audience(self, value: Any, path: str) -> None:
        for item, at in items_of(value, path):
            if isinstance(item, str):
                self.iri(item, at, "an audience given as a string")
            elif isinstance(item, dict):
                self.known(item, {"id", "type"}, at, "Audience")
                if "id" in item:
                    self.iri(item["id"], f"{at}.id", "an audience's id")
            else:
                self.fail(at, "an audience MUST be an IRI or an object")

    def stylesheet(self, value: Any, path: str) -> None:
        if isinstance(value, str):
            self.iri(value, path, "a stylesheet given as a string")
        elif isinstance(value, dict):
            self.known(value, {"id", "type", "value"}, path, "CssStylesheet")
            if "id" in value:
                self.iri(value["id"], f"{path}.id", "a stylesheet's id")
            elif not isinstance(value.get("value"), str):
                self.fail(path, "an embedded stylesheet MUST have a value (a string)")
        else:
            self.fail(path, "a stylesheet MUST be an IRI or a CssStylesheet object")

    # -- bodies and targets --------------------------------------------------------

    def resources(self, value: Any, path: str, role: str) -> None:
        if isinstance(value, list) and not value:
            self.fail(path, f"a {role} given as a list MUST NOT be empty")
        for item, at in items_of(value, path):
            self.resource(item, at, role, 0)

    def reference(self, text: str) -> bool:
        """True if ``text`` refers to a resource: an IRI, a bare jobledger id,
        or the mark's own resource id (whatever characters it holds: an
        export names it by its percent-encoded IRI)."""
        return text == self.resource_id or bool(IRI.match(text) or BARE_ID.match(text))

    def resource(self, item: Any, path: str, role: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            self.fail(path, f"an annotation MUST NOT nest deeper than {MAX_DEPTH} levels")
            return
        if isinstance(item, str):
            if not self.reference(item):
                self.fail(path, f"a {role} given as a string MUST be an IRI")
            return
        if not isinstance(item, dict):
            self.fail(path, f"a {role} MUST be an IRI or an object")
            return
        if not all(isinstance(t, str) for t in as_list(item.get("type", []))):
            self.fail(f"{path}.type", "type MUST be a string or a list of strings")
        types = _types(item)
        removed = [t for t in types if t in _REMOVED]
        if removed:
            self.fail(
                f"{path}.type",
                f"{', '.join(removed)} MUST NOT be used: the W3C removed "
                "them from the model (use Choice, or several targets)",
            )
            return
        self.described(item, path)
        for key in ("format", "language", "accessibility"):
            if key in item:
                self.strings(item[key], f"{path}.{key}", key)
        if "processingLanguage" in item:
            self.single(
                item["processingLanguage"],
                f"{path}.processingLanguage",
                "processingLanguage MUST be a single string",
                lambda v: isinstance(v, str),
            )
        if "textDirection" in item:
            self.single(
                item["textDirection"],
                f"{path}.textDirection",
                f"textDirection MUST be one of {', '.join(_DIRECTIONS)}",
                lambda v: v in _DIRECTIONS,
            )
        if "Choice" in types:
            self.choice(item, path, role, depth)
        elif "TextualBody" in types or ("value" in item and "source" not in item):
            self.textual(item, path, role)
        elif "SpecificResource" in types or "source" in item:
            self.specific(item, path, role, depth)
        else:
            self.external(item, path, role)

    def refuse(self, item: dict[str, Any], path: str, keys: dict[str, str]) -> None:
        for key, message in keys.items():
            if key in item:
                self.fail(f"{path}.{key}", message)

    def choice(self, item: dict[str, Any], path: str, role: str, depth: int) -> None:
        self.known(item, _CHOICE_KEYS | {"value", "source", "purpose"}, path, "Choice")
        self.refuse(
            item,
            path,
            {
                "value": "a Choice MUST NOT have a value (only a TextualBody has one)",
                "source": "a Choice MUST NOT have a source (only a SpecificResource has one)",
                "purpose": "a Choice MUST NOT have a purpose (only a SpecificResource or a "
                "TextualBody has one)",
            },
        )
        options = item.get("items")
        if not isinstance(options, list) or not options:
            self.fail(f"{path}.items", "a Choice MUST have items (a non-empty list)")
            return
        for option, at in items_of(options, f"{path}.items"):
            self.resource(option, at, role, depth + 1)

    def textual(self, item: dict[str, Any], path: str, role: str) -> None:
        if role == "target":
            self.fail(path, "a target MUST NOT be a TextualBody (an embedded text)")
            return
        self.known(item, _TEXTUAL_KEYS | {"items", "source"}, path, "TextualBody")
        self.refuse(
            item,
            path,
            {
                "items": "a TextualBody MUST NOT have items (only a Choice has them)",
                "source": "a TextualBody MUST NOT have a source (only a SpecificResource has one)",
            },
        )
        if "id" in item:
            self.iri(item["id"], f"{path}.id", "a TextualBody's id")
        self.single(
            item.get("value"),
            f"{path}.value",
            "a TextualBody MUST have a value (a single string)",
            lambda v: isinstance(v, str),
        )
        if "purpose" in item:
            self.motivations(item["purpose"], f"{path}.purpose", "purpose")

    def external(self, item: dict[str, Any], path: str, role: str) -> None:
        self.known(item, _DESCRIBED | {"items", "purpose"}, path, "External Web Resource")
        self.refuse(
            item,
            path,
            {
                "items": "an External Web Resource MUST NOT have items (only a Choice has them)",
                "purpose": "an External Web Resource MUST NOT have a purpose (only a "
                "SpecificResource or a TextualBody has one)",
            },
        )
        self.single(
            item.get("id"),
            f"{path}.id",
            f"an External Web Resource {role} MUST have one IRI as id",
            lambda v: isinstance(v, str) and bool(IRI.match(v)),
        )
        if "type" in item:
            self.strings(item["type"], f"{path}.type", "type")

    def specific(self, item: dict[str, Any], path: str, role: str, depth: int) -> None:
        self.known(item, _SPECIFIC_KEYS | {"items", "value"}, path, "SpecificResource")
        self.refuse(
            item,
            path,
            {
                "items": "a SpecificResource MUST NOT have items (only a Choice has them)",
                "value": "a SpecificResource MUST NOT have a value (only a TextualBody has one)",
            },
        )
        if "id" in item:
            self.iri(item["id"], f"{path}.id", "a SpecificResource's id")
        if "source" not in item:
            self.fail(path, "a SpecificResource MUST have a source")
        else:
            source = item["source"]
            if isinstance(source, dict):
                self.resource(source, f"{path}.source", "source", depth + 1)
            else:
                self.single(
                    source,
                    f"{path}.source",
                    "a SpecificResource's source MUST be one IRI or resource",
                    lambda v: isinstance(v, str) and self.reference(v),
                )
        if "purpose" in item:
            self.motivations(item["purpose"], f"{path}.purpose", "purpose")
        if "selector" in item:
            self.many(item["selector"], f"{path}.selector", self.selector, depth)
        if "state" in item:
            self.many(item["state"], f"{path}.state", self.state, depth)
        if "styleClass" in item:
            self.strings(item["styleClass"], f"{path}.styleClass", "styleClass")
            if not self.styled:
                self.fail(
                    f"{path}.styleClass", "an annotation with a styleClass MUST have a stylesheet"
                )
        if "renderedVia" in item:
            self.linked(item["renderedVia"], f"{path}.renderedVia", "renderedVia")
        if "scope" in item:
            self.linked(item["scope"], f"{path}.scope", "scope")

    def linked(self, value: Any, path: str, what: str) -> None:
        """IRIs or described objects (renderedVia, scope)."""
        for item, at in items_of(value, path):
            if isinstance(item, str):
                self.iri(item, at, f"a {what} given as a string")
            elif isinstance(item, dict):
                self.known(item, {"id", "type", "name"}, at, what)
                if "id" in item:
                    self.iri(item["id"], f"{at}.id", f"a {what}'s id")
            else:
                self.fail(at, f"a {what} MUST be an IRI or an object")

    # -- jobledger's own checks of a passage ---------------------------------------

    def passage(self, target: Any, path: str) -> None:
        """A target naming a jobledger resource names the mark's; on it, the
        position and quote selectors name one span."""
        source = target.get("source") if isinstance(target, dict) else target
        named = source if source == self.resource_id else resource_of(source)
        if named is None:
            return
        if named != self.resource_id:
            where = f"{path}.source" if isinstance(target, dict) else path
            self.fail(
                where, f"targets {source!r}, not the mark's resource {self.resource_id!r}", own=True
            )
            return
        if not isinstance(target, dict) or "selector" not in target:
            return
        selectors = [s for s in as_list(target["selector"]) if isinstance(s, dict)]
        positions = [s for s in selectors if s.get("type") == "TextPositionSelector"]
        quotes = [s for s in selectors if s.get("type") == "TextQuoteSelector"]
        at = f"{path}.selector"
        if len(positions) > 1 or len(quotes) > 1:
            self.fail(at, "at most one selector of each type on a jobledger resource", own=True)
            return
        for position in positions:
            start, end = position.get("start"), position.get("end")
            if not (isinstance(start, int) and isinstance(end, int)):
                return  # already refused above
            if end <= start:
                self.fail(at, f"end {end} is not after start {start}", own=True)
            for found in quotes:
                exact = found.get("exact")
                if isinstance(exact, str) and len(exact) != end - start:
                    self.fail(
                        at, f"quotes {len(exact)} characters for a span of {end - start}", own=True
                    )
