"""The commands that look into what jobs made: ``marks`` (as a table or
W3C JSON-LD), ``resources`` and ``content`` (a resource's stored bytes).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec
from rich.console import Console
from rich.text import Text

from jobledger import open as open_ledger
from jobledger.terminal import printable

from .common import _existing, _OutputClosed, _silence
from .formatting import _marks_table, _resources_table, _text

# -- marks and resources -----------------------------------------------------


def _write_out(data: bytes) -> None:
    """Write ``data`` to standard output as is; ``_OutputClosed`` if its reader went away."""
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        _silence(sys.stdout)
        raise _OutputClosed from None


def _json_document(value: Any) -> bytes:
    """``value`` as indented JSON, with a newline, that is safe on a terminal.

    JSON escapes the C0 controls; the other characters :func:`printable`
    escapes (DEL, C1, format characters, U+2028/U+2029, ...) are written as
    ``\\uXXXX`` escapes too, so the bytes hold none of them raw while the
    document parses to exactly the same value."""
    text = msgspec.json.format(msgspec.json.encode(value), indent=2).decode()
    return ("".join(_json_char(c) for c in text) + "\n").encode()


def _json_char(char: str) -> str:
    """``char``, or its JSON ``\\uXXXX`` escape (a surrogate pair beyond
    U+FFFF) if :func:`printable` would escape it; JSON's own newlines stay."""
    if char == "\n" or printable(char) == char:
        return char
    code = ord(char)
    if code > 0xFFFF:
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


async def _marks(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db), migrate=False) as ledger:
        if args.jsonld:
            documents = await ledger.annotations(args.resource, base_iri=args.base_iri)
        else:
            marks = await ledger.marks(args.resource)
    if args.jsonld:
        _write_out(_json_document(documents))
        return 0
    if not marks:
        out.print(_text(f"no marks on {args.resource!r} in {args.db}", "dim"), soft_wrap=True)
        return 0
    out.print(_marks_table(marks, title=_text(f"Marks on {args.resource}")))
    out.print(Text(f"{len(marks)} mark(s), in order of creation"))
    return 0


async def _resources(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db), migrate=False) as ledger:
        found = await ledger.resources(limit=min(args.limit + 1, 10_000))
    if not found:
        out.print(_text(f"no resources in {args.db}", "dim"), soft_wrap=True)
        return 0
    shown = found[: args.limit]
    out.print(_resources_table(shown))
    more = "; more exist (raise --limit)" if len(found) > len(shown) else ""
    out.print(Text(f"{len(shown)} resource(s), oldest first{more}"))
    return 0


async def _content(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db), migrate=False) as ledger:
        data = await ledger.content(args.resource)
    if not out.is_terminal:  # into a file or a pipe: the stored bytes, exactly
        _write_out(data)
        return 0
    # On a terminal, a person reads it: each line printable, bytes that are
    # not UTF-8 as \xNN.
    text = data.decode("utf-8", "backslashreplace")
    for line in text.removesuffix("\n").split("\n") if text else ():
        out.print(_text(line.removesuffix("\r")), soft_wrap=True)
    return 0
