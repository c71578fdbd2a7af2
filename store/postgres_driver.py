"""The PostgreSQL driver (asyncpg, the ``jobledger[postgres]`` extra) as the
backend uses it: loaded when first needed, its errors told apart (a lost
connection, or a statement that failed) and made ours."""

from __future__ import annotations

import functools
import importlib.metadata
import itertools
import re
from typing import Any

from jobledger.core import StorageError

__all__: list[str] = []

_MARK = re.compile(r"\?")


@functools.lru_cache(maxsize=256)
def _numbered(sql: str) -> str:
    """``sql`` with each ``?`` as PostgreSQL's ``$1``, ``$2``, …"""
    count = itertools.count(1)
    return _MARK.sub(lambda _: f"${next(count)}", sql)


def _driver() -> Any:
    try:
        import asyncpg
    except ImportError as exc:
        raise StorageError(
            "the PostgreSQL backend needs the jobledger[postgres] extra: "
            "pip install 'jobledger[postgres]'"
        ) from exc
    return asyncpg


def _is_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection is gone (not that a statement failed)."""
    asyncpg = _driver()
    return isinstance(
        exc,
        asyncpg.ConnectionDoesNotExistError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError  # (a message of a session the server ended, read late)
        | asyncpg.exceptions.AdminShutdownError
        | asyncpg.exceptions.CannotConnectNowError
        | ConnectionError,
    )


def _code_version() -> str:
    """This jobledger's version, as installed (what ``schema_version`` records)."""
    try:
        return importlib.metadata.version("jobledger")
    except importlib.metadata.PackageNotFoundError:  # (run from a source tree)
        return "unknown"


def _failure(exc: BaseException, message: str) -> StorageError:
    return StorageError(f"{message}: {type(exc).__name__}: {exc}")
