"""Selectors and states of the W3C Web Annotation Data Model, and the
value checks every part of an annotation shares (used by
:mod:`jobledger.core.w3c`).

:class:`Checks` records each problem with its path (``fail``) instead of
raising at the first, so one refusal names every MUST broken; jobledger's own
rules are recorded apart (``own=True``) and named after the MUSTs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

__all__ = ["BARE_ID", "IRI", "MAX_DEPTH", "Checks", "as_list", "is_date_time", "items_of"]

MAX_DEPTH = 32
"""How deep an annotation may nest (objects and lists inside one another)."""

IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`\x00-\x1f\x7f]+$")
"""An absolute IRI: a scheme, a colon, and no space or character an IRI forbids."""

BARE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._~-]*$")
"""A jobledger id where a resource is named: letters, digits, ``._~-``, no scheme."""

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

_SELECTOR_KEYS: dict[str, set[str]] = {
    "FragmentSelector": {"value", "conformsTo"},
    "CssSelector": {"value"},
    "XPathSelector": {"value"},
    "TextQuoteSelector": {"exact", "prefix", "suffix"},
    "TextPositionSelector": {"start", "end"},
    "DataPositionSelector": {"start", "end"},
    "SvgSelector": {"value"},
    "RangeSelector": {"startSelector", "endSelector"},
}
_STATE_KEYS: dict[str, set[str]] = {
    "TimeState": {"sourceDate", "sourceDateStart", "sourceDateEnd", "cached"},
    "HttpRequestState": {"value"},
}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def items_of(value: Any, path: str) -> list[tuple[Any, str]]:
    """A single value or each of a list, with its path."""
    if isinstance(value, list):
        return [(item, f"{path}[{i}]") for i, item in enumerate(value)]
    return [(value, path)]


def is_date_time(value: object) -> bool:
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


class Checks:
    """The problems found so far, and the checks of values, selectors and states."""

    def __init__(self, *, extended: bool) -> None:
        self.problems: list[tuple[str, str]] = []
        self.own: list[tuple[str, str]] = []
        # Another context beside the W3C one may define terms the model has not.
        self.extended = extended

    def fail(self, path: str, message: str, *, own: bool = False) -> None:
        """Record a problem; ``own`` for jobledger's rules, named after the MUSTs."""
        (self.own if own else self.problems).append((path, message))

    # -- values ----------------------------------------------------------------

    def json(self, value: Any, path: str, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            self.fail(path, f"an annotation MUST NOT nest deeper than {MAX_DEPTH} levels")
        elif isinstance(value, float) and not math.isfinite(value):
            self.fail(path, "a JSON value MUST NOT be NaN or infinite")
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    self.fail(path, "a JSON object's keys MUST be strings")
                else:
                    self.json(item, f"{path}.{key}", depth + 1)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.json(item, f"{path}[{i}]", depth + 1)
        elif not isinstance(value, str | int | float | bool | type(None)):
            self.fail(path, f"a {type(value).__name__} has no JSON form")

    def iri(self, value: Any, path: str, what: str) -> None:
        if not (isinstance(value, str) and IRI.match(value)):
            self.fail(path, f"{what} MUST be an IRI")

    def iris(self, value: Any, path: str, what: str) -> None:
        """Zero or more IRIs: one, or a non-empty list."""
        if isinstance(value, list) and not value:
            self.fail(path, f"{what} MUST be an IRI or a non-empty list of IRIs")
        for item, at in items_of(value, path):
            self.iri(item, at, what)

    def single(self, value: Any, path: str, what: str, test: Callable[[Any], bool]) -> None:
        """Exactly one value (a one-item list is one value) that passes ``test``."""
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if isinstance(value, list) or not test(value):
            self.fail(path, what)

    def strings(self, value: Any, path: str, what: str) -> None:
        if isinstance(value, list) and not value:
            self.fail(path, f"{what} MUST be a string or a non-empty list of strings")
        for item, at in items_of(value, path):
            if not isinstance(item, str):
                self.fail(at, f"{what} MUST be a string or a non-empty list of strings")

    def known(self, obj: dict[str, Any], allowed: set[str], path: str, what: str) -> None:
        for key, value in obj.items():
            if key in allowed:
                continue
            if ":" in key or self.extended:  # a compact IRI, or a term of another context
                self.json(value, f"{path}.{key}")
                continue
            self.fail(
                f"{path}.{key}",
                f"{key!r} is not a property of a W3C {what} (and no other @context defines it)",
                own=True,
            )

    def many(
        self, value: Any, path: str, check: Callable[[Any, str, int], None], depth: int
    ) -> None:
        if isinstance(value, list) and not value:
            self.fail(path, "a list of selectors or states MUST NOT be empty")
        for item, at in items_of(value, path):
            check(item, at, depth + 1)

    # -- selectors and states ----------------------------------------------------

    def selector(self, item: Any, path: str, depth: int) -> None:
        kind = self.typed(item, path, _SELECTOR_KEYS, "selector", depth)
        if kind is None:
            return
        what = f"a {kind}"
        if kind in ("FragmentSelector", "CssSelector", "XPathSelector"):
            self.single(
                item.get("value"),
                f"{path}.value",
                f"{what} MUST have a value (a single string)",
                lambda v: isinstance(v, str),
            )
            if "conformsTo" in item:
                self.iri(item["conformsTo"], f"{path}.conformsTo", "conformsTo")
        elif kind == "TextQuoteSelector":
            self.single(
                item.get("exact"),
                f"{path}.exact",
                f"{what} MUST have exact (a single string)",
                lambda v: isinstance(v, str),
            )
            for key in ("prefix", "suffix"):
                if key in item:
                    self.single(
                        item[key],
                        f"{path}.{key}",
                        f"{what}'s {key} MUST be a single string",
                        lambda v: isinstance(v, str),
                    )
        elif kind in ("TextPositionSelector", "DataPositionSelector"):
            for key in ("start", "end"):
                value = item.get(key)
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    self.fail(
                        f"{path}.{key}", f"{what} MUST have start and end as non-negative integers"
                    )
        elif kind == "SvgSelector":
            if "id" in item:
                self.iri(item["id"], f"{path}.id", "an SvgSelector's id")
            elif not isinstance(item.get("value"), str):
                self.fail(path, "an SvgSelector MUST have a value (a string) or an id (an IRI)")
        elif kind == "RangeSelector":
            for key in ("startSelector", "endSelector"):
                if key not in item:
                    self.fail(path, "a RangeSelector MUST have a startSelector and an endSelector")
                else:
                    self.selector(item[key], f"{path}.{key}", depth + 1)
        if "refinedBy" in item:
            self.many(item["refinedBy"], f"{path}.refinedBy", self.refinement, depth)

    def state(self, item: Any, path: str, depth: int) -> None:
        kind = self.typed(item, path, _STATE_KEYS, "state", depth)
        if kind == "TimeState":
            has_date = "sourceDate" in item
            has_range = "sourceDateStart" in item or "sourceDateEnd" in item
            if has_date == has_range or (
                has_range and not ("sourceDateStart" in item and "sourceDateEnd" in item)
            ):
                self.fail(
                    path,
                    "a TimeState MUST have sourceDate, or else both sourceDateStart "
                    "and sourceDateEnd",
                )
            for key in ("sourceDate", "sourceDateStart", "sourceDateEnd"):
                if key in item:
                    for value, at in items_of(item[key], f"{path}.{key}"):
                        if not is_date_time(value):
                            self.fail(
                                at,
                                f"a TimeState's {key} MUST be an xsd:dateTime "
                                "with a time zone (RFC 3339)",
                            )
            if "cached" in item:
                self.iris(item["cached"], f"{path}.cached", "a TimeState's cached")
        elif kind == "HttpRequestState":
            self.single(
                item.get("value"),
                f"{path}.value",
                "an HttpRequestState MUST have a value (a single string)",
                lambda v: isinstance(v, str),
            )
        if kind is not None and "refinedBy" in item:
            self.many(item["refinedBy"], f"{path}.refinedBy", self.refinement, depth)

    def refinement(self, item: Any, path: str, depth: int) -> None:
        """A ``refinedBy``: a selector or a state (a state may be refined by a
        selector, as in the W3C's own examples)."""
        kind = item.get("type") if isinstance(item, dict) else None
        if kind in _STATE_KEYS:
            self.state(item, path, depth)
        else:
            self.selector(item, path, depth)

    def typed(
        self, item: Any, path: str, kinds: dict[str, set[str]], what: str, depth: int
    ) -> str | None:
        """The selector's or state's type, once its keys are known; ``None`` if
        it is an IRI (fine) or unusable (a problem is recorded)."""
        if depth > MAX_DEPTH:
            self.fail(path, f"an annotation MUST NOT nest deeper than {MAX_DEPTH} levels")
            return None
        if isinstance(item, str):
            self.iri(item, path, f"a {what} given as a string")
            return None
        if isinstance(item, dict) and set(item) == {"id"}:  # a reference, by its IRI
            self.iri(item["id"], f"{path}.id", f"a {what}'s id")
            return None
        kind = item.get("type") if isinstance(item, dict) else None
        if not isinstance(item, dict) or kind not in kinds:
            self.fail(
                path,
                f"a {what} MUST be an IRI or an object whose type is one of {', '.join(kinds)}",
            )
            return None
        allowed = kinds[kind] | {"type", "refinedBy"} | ({"id"} if kind == "SvgSelector" else set())
        self.known(item, allowed, path, kind)
        return str(kind)
