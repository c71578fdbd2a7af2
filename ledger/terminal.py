"""Text that is safe to show to a person on a terminal.

A job carries text its users chose: its type, params, progress messages,
errors, results, mark bodies and quotes, resource names, user ids. A
terminal interprets some characters in that text as commands: an escape
sequence (``ESC ] 0 ; … BEL`` sets the window title, ``ESC [ 2 J`` clears
the screen, a C1 ``CSI`` does the same in one character), a carriage
return or backspace overwrites what was printed, a bidi override
(U+202E) shows text in another order than it is stored, a zero-width
character hides a difference between two ids, and a newline forges an
output line that looks like the program's own. :func:`printable` shows
every such character as its Python escape instead, so the operator sees
what is stored and the terminal receives only ordinary printable text.

Every human-readable writer of the ``jobledger`` command and the demo
passes the text it did not write itself through :func:`printable`, on
standard output and standard error alike, and hands it to rich as a
``Text`` (or to a console with markup off), so rich markup such as
``[bold]`` or ``[link=…]`` and emoji codes such as ``:skull:`` in that
text are shown as written, never interpreted. Machine-readable output
(``export``, ``marks --jsonld``, ``content`` into a pipe or file) is
exact: JSON escapes every control character itself, and ``content``
writes the stored bytes.
"""

from __future__ import annotations

import unicodedata

__all__ = ["printable"]

_SHOWN_AS_ESCAPES = frozenset({"Cc", "Cf", "Cs", "Cn", "Zl", "Zp"})
"""The Unicode categories :func:`printable` escapes: control (C0, DEL, C1),
format (bidi controls, zero-width characters, BOM, soft hyphen, ...), lone
surrogates, characters this Python's Unicode database does not assign (a
later Unicode may make them format characters), and the line and paragraph
separators U+2028 and U+2029."""

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every character a terminal could act on shown as its
    Python escape; everything else unchanged.

    Escaped: the C0 controls (including tab, newline and carriage return,
    shown as ``\\t``, ``\\n`` and ``\\r``, so that a field never forges an
    output line or column), DEL, the C1 controls (U+0080-U+009F), every
    format character (Unicode category Cf: the bidi controls U+202A-U+202E
    and U+2066-U+2069, U+200B-U+200F, U+2060, U+FEFF, U+00AD, ...), the
    line and paragraph separators U+2028 and U+2029, lone surrogates and
    unassigned code points. A character up to U+00FF becomes ``\\xNN``, up
    to U+FFFF ``\\uNNNN``, beyond that ``\\UNNNNNNNN`` (lower-case hex), as
    in a Python string literal. Ordinary text of any script passes
    unchanged ("naïve café 東京" stays as it is), and so do a backslash and
    brackets: the result is for reading, not for parsing back (the exact
    value is in the log and in the JSON outputs), and it is safe to print
    but not rich markup (hand it to rich as a ``Text``).

    Callers that show text of many lines (a document's content) split it
    into lines first and pass each line.
    """
    if text.isascii() and text.isprintable():  # the common case, at C speed
        return text
    return "".join(
        _escape(char) if unicodedata.category(char) in _SHOWN_AS_ESCAPES else char for char in text
    )
