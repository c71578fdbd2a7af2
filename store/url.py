"""Backends named by URL: which backend a ledger opens, read from a path or a URL.

The grammar is SQLAlchemy's, which users know::

    jobs.db, Path("jobs.db")        an SQLite file (a plain path, as before)
    sqlite:///relative/jobs.db      an SQLite file, relative to the working directory
    sqlite:////absolute/jobs.db     an SQLite file, absolute (four slashes)
    sqlite://, sqlite:///:memory:   in memory (also sqlite://:memory:)
    memory://                       in memory
    postgresql://user@host:5432/db  PostgreSQL (the jobledger[postgres] extra); also postgres://

What counts as a URL, exactly: text that starts with a scheme (a letter, then
letters, digits, ``+``, ``-`` or ``.``; at least two characters) followed by
``://``. Text that starts with one of the schemes above followed by a single
``:`` (``sqlite:x``, ``sqlite:/x``, ``memory:``) is a malformed URL too, never a
file name. Everything else is a path: ``./a:b.db``, ``C:\\x\\jobs.db`` (a
single letter before the colon is a Windows drive), and any ``pathlib.Path``.
``":memory:"`` as a path is in memory, as it always was.

``memory://`` (and the path ``":memory:"``) is :class:`MemoryLog`, the
reference backend; ``sqlite://`` is :class:`SqliteLog` in memory (its
database lives on a RAM file system and is removed on close: see
docs/architecture.md, "SQLite in memory"). Both keep nothing after close.

A URL's query holds the backend's options: ``?synchronous=FULL`` or
``?synchronous=NORMAL`` for an SQLite file, nothing else. The path in a URL is
taken as written (no percent-decoding): a file whose name holds ``?`` is given
as a plain path. A PostgreSQL URL is libpq's, passed to the driver as it is
(its query may hold the driver's options, ``sslmode=require`` say), but for
jobledger's own ``?schema=NAME``: the schema the tables live in (default
``jobledger``; lower-case letters, digits and ``_``), taken out first.

An unknown scheme, a malformed URL, an option the backend does not know, an
empty text or a NUL character is a ``ValidationError`` that names the
accepted forms; nothing is created.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import msgspec

from jobledger.core import ContentStore, ValidationError
from jobledger.core.faults import Faults

from .content import ContentFolder, MemoryContent, content_folder_for
from .memory import MemoryLog
from .postgres import DEFAULT_SCHEMA, PostgresLog
from .postgres_audit import PostgresContent
from .postgres_schema import check_schema_name, shown_dsn
from .protocol import Backend
from .sqlite import MEMORY, SqliteLog

__all__ = ["FORMS", "BackendURL", "backend_for", "content_for"]

FORMS = (
    "a path (jobs.db), sqlite:///relative/jobs.db, sqlite:////absolute/jobs.db, "
    "sqlite:// or sqlite:///:memory: (in memory), memory://, "
    "postgresql://user@host:5432/db[?schema=NAME]"
)
"""The accepted forms, as every error about a backend URL names them."""

_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]+)://(.*)", re.DOTALL)
_SCHEME_COLON = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]+):")
_OURS = frozenset({"sqlite", "memory", "postgresql", "postgres"})
_POSTGRES = frozenset({"postgresql", "postgres"})
_SYNCHRONOUS = ("FULL", "NORMAL")


def _refuse(message: str) -> ValidationError:
    return ValidationError(f"{message}; the accepted forms: {FORMS}", field="url")


class BackendURL(msgspec.Struct, frozen=True, kw_only=True):
    """Which backend a ledger opens: ``scheme`` (``"sqlite"``, ``"memory"`` or
    ``"postgresql"``), the SQLite file ``path`` (``None``: in memory, for the
    first two), the options the URL set (``synchronous``; ``None``: not
    set), and for PostgreSQL the driver's ``dsn`` and the ``schema``. Made
    by :meth:`parse`."""

    scheme: Literal["sqlite", "memory", "postgresql"]
    path: str | None = None
    synchronous: Literal["FULL", "NORMAL"] | None = None
    dsn: str | None = None
    schema: str | None = None

    @property
    def in_memory(self) -> bool:
        """Whether the log lives in memory (and is gone when it closes)."""
        return self.path is None and self.dsn is None

    def __str__(self) -> str:
        """The URL that names this backend (``sqlite:///jobs.db``, ``memory://``;
        a PostgreSQL URL without its password)."""
        if self.dsn is not None:
            shown = shown_dsn(self.dsn)
            if self.schema is not None:
                shown += ("&" if "?" in shown else "?") + f"schema={self.schema}"
            return shown
        if self.path is None:
            return f"{self.scheme}://"
        query = "" if self.synchronous is None else f"?synchronous={self.synchronous}"
        return f"sqlite:///{self.path}{query}"

    @classmethod
    def parse(cls, text: str | os.PathLike[str]) -> BackendURL:
        """The backend ``text`` names: a path or a URL (the module docstring
        says which is which).

        Raises ``ValidationError`` (field ``url``, naming the accepted forms)
        for an empty text, a NUL character, an unknown scheme, a malformed URL
        or an option the backend does not take. Reads and creates nothing
        (a PostgreSQL URL is checked for form only: the server is asked when
        the log opens).
        """
        if isinstance(text, os.PathLike):
            path = os.fspath(text)
            if not isinstance(path, str):
                raise _refuse("a path must be text, not bytes")
            _check_text(path)
            return cls(scheme="sqlite", path=path)
        if not isinstance(text, str):
            raise _refuse(f"a path or a URL is text, not {type(text).__name__}")
        _check_text(text)
        if text == ":memory:":
            return cls(scheme="memory")
        url = _URL.fullmatch(text)
        if url is None:
            scheme = _SCHEME_COLON.match(text)
            if scheme is not None and scheme.group(1).lower() in _OURS:
                raise _refuse(f"{text!r} is not a URL ({scheme.group(1)}: needs '://')")
            return cls(scheme="sqlite", path=text)
        scheme_name, rest = url.group(1).lower(), url.group(2)
        if scheme_name in _POSTGRES:
            return _postgresql(text)
        if scheme_name.startswith("postgresql+"):
            raise _refuse(f"{text!r}: jobledger picks its own driver (postgresql://…)")
        rest, _, query = rest.partition("?")
        if scheme_name == "memory":
            if rest or query:
                raise _refuse(f"{text!r}: memory:// takes no path and no options")
            return cls(scheme="memory")
        if scheme_name != "sqlite":
            raise _refuse(f"unknown scheme {scheme_name!r} in {text!r}")
        return _sqlite(text, rest, query)


def _check_text(text: str) -> None:
    if not text:
        raise _refuse("empty")
    if "\x00" in text:
        raise _refuse(f"{text!r} holds a NUL character")


def _sqlite(text: str, rest: str, query: str) -> BackendURL:
    """``sqlite://REST?QUERY``: REST is empty or ``:memory:`` (in memory), or
    ``/`` then the file's path."""
    if rest in ("", ":memory:", "/:memory:"):
        if query:
            raise _refuse(f"{text!r}: an SQLite log in memory takes no options")
        return BackendURL(scheme="sqlite")
    if not rest.startswith("/"):
        raise _refuse(f"{text!r}: SQLite takes no host (sqlite:///FILE)")
    path = rest[1:]
    if not path:
        raise _refuse(f"{text!r} names no file")
    return BackendURL(scheme="sqlite", path=path, synchronous=_synchronous(text, query))


def _postgresql(text: str) -> BackendURL:
    """``postgresql://…[?…]``: the driver's URL, with ``schema=`` taken out
    of the query and checked."""
    base, _, query = text.partition("?")
    if not base.partition("://")[2].strip("/"):
        raise _refuse(f"{text!r} names no server")
    kept: list[str] = []
    schema: str | None = None
    for pair in query.split("&") if query else ():
        key, _, value = pair.partition("=")
        if key != "schema":
            kept.append(pair)
            continue
        if schema is not None:
            raise _refuse(f"{text!r}: schema is given twice")
        try:
            schema = check_schema_name(value)
        except ValueError as exc:
            raise ValidationError(str(exc), field="schema") from None
    dsn = base + ("?" + "&".join(kept) if kept else "")
    return BackendURL(scheme="postgresql", dsn=dsn, schema=schema)


def _synchronous(text: str, query: str) -> Literal["FULL", "NORMAL"] | None:
    """The ``synchronous`` option of an SQLite file's query (the only one it takes)."""
    synchronous: Literal["FULL", "NORMAL"] | None = None
    for pair in query.split("&") if query else ():
        key, equals, value = pair.partition("=")
        if key != "synchronous" or not equals:
            raise _refuse(f"{text!r}: unknown option {pair!r} (an SQLite file takes synchronous)")
        if synchronous is not None:
            raise _refuse(f"{text!r}: synchronous is given twice")
        if value.upper() == "FULL":
            synchronous = "FULL"
        elif value.upper() == "NORMAL":
            synchronous = "NORMAL"
        else:
            raise _refuse(f"{text!r}: synchronous must be FULL or NORMAL, not {value!r}")
    return synchronous


def backend_for(
    url: BackendURL,
    *,
    synchronous: Literal["FULL", "NORMAL"] | None = None,
    faults: Faults | None = None,
    migrate: bool = True,
) -> tuple[Backend, ContentStore]:
    """A new, unopened log and the content store beside it, for ``url``.

    An SQLite file gets :class:`SqliteLog` and a :class:`ContentFolder` at
    ``PATH.content``; ``memory://`` gets :class:`MemoryLog`, and SQLite in
    memory a :class:`SqliteLog` in memory, each with a :class:`MemoryContent`;
    PostgreSQL a :class:`PostgresLog` with its content in the database
    (:class:`PostgresContent`), and only ``synchronous="FULL"`` or none.
    ``synchronous`` (default: the URL's, else ``"FULL"``) applies to a file;
    one that is not ``"FULL"``/``"NORMAL"``, or that differs from the URL's,
    is a ``ValidationError`` naming ``synchronous``. Nothing is created until
    the log is opened. ``migrate=False`` makes a log of an older schema
    refuse to open instead of migrating (a read-only use). ``faults``
    reaches the log's crash point (:mod:`jobledger.core.faults`; tests only).
    """
    if synchronous is not None and synchronous not in _SYNCHRONOUS:
        raise ValidationError(f"must be FULL or NORMAL, not {synchronous!r}", field="synchronous")
    if url.scheme == "memory":
        return MemoryLog(), MemoryContent()
    if url.dsn is not None:
        if synchronous not in (None, "FULL"):
            raise ValidationError(
                "PostgreSQL commits durably (synchronous_commit on the server): only FULL",
                field="synchronous",
            )
        store = PostgresLog(
            url.dsn, schema=url.schema or DEFAULT_SCHEMA, faults=faults, migrate=migrate
        )
        return store, PostgresContent(store)
    if url.path is None:
        return SqliteLog(MEMORY, synchronous=synchronous or "FULL", faults=faults), MemoryContent()
    if synchronous is not None and url.synchronous not in (None, synchronous):
        raise ValidationError(
            f"{synchronous!r} differs from the URL's {url.synchronous!r}", field="synchronous"
        )
    chosen = synchronous or url.synchronous or "FULL"
    return SqliteLog(url.path, synchronous=chosen, faults=faults, migrate=migrate), ContentFolder(
        content_folder_for(Path(url.path))
    )


def content_for(backend: Backend) -> ContentStore:
    """The content store that goes with ``backend`` when none is given: in
    memory for a log in memory, the database's own table for PostgreSQL,
    else a folder beside the file (``PATH.content``)."""
    if isinstance(backend, PostgresLog):
        return PostgresContent(backend)
    if backend.path == MEMORY or isinstance(backend, MemoryLog):
        return MemoryContent()
    return ContentFolder(content_folder_for(Path(backend.path)))
