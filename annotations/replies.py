"""Reading a model's reply: the passages it names (:func:`parse_passages`,
JSON in or around code fences, what survives of a reply cut short) and where
each passage is in the text (:func:`locate`, the nearest occurrence).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from .errors import InferenceError

__all__ = ["locate", "parse_passages"]


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
