"""Where resources' content lives: a content-addressed store.

Content is named by its digest (``sha256:`` and 64 hex digits of its SHA-256),
so the same bytes are stored once, a name never changes meaning, and what is
read back can be checked against its name. The log records a resource's
digest (``resource.created``); the bytes live in a :class:`ContentStore`
(``jobledger.store.ContentFolder``: a folder beside the database).
"""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath
from typing import Protocol

from .errors import ValidationError

__all__ = ["ContentStore", "check_storage_path", "content_bytes", "digest_of"]


def content_bytes(content: object) -> bytes:
    """A resource's content as bytes: ``bytes`` as they are, text as UTF-8.
    Anything else, or text that has no UTF-8 form (a lone surrogate), is a
    ``ValidationError`` naming ``content``."""
    if isinstance(content, bytes | bytearray | memoryview):
        return bytes(content)
    if isinstance(content, str):
        try:
            return content.encode()
        except UnicodeEncodeError as exc:
            raise ValidationError(f"text with no UTF-8 form: {exc}", field="content") from exc
    raise ValidationError(f"must be bytes or text, not {type(content).__name__}", field="content")


def digest_of(data: bytes) -> str:
    """The content digest of ``data``: ``sha256:`` and its hex SHA-256."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class ContentStore(Protocol):
    """Content by digest.

    ``put`` stores ``data`` durably before it returns its digest (so a
    ``resource:create`` sent after it never names missing content) and is
    idempotent. ``get`` returns exactly the bytes stored under ``digest``:
    ``NotFound`` if there are none, ``CorruptionError`` if what is stored no
    longer matches its digest.
    """

    async def put(self, data: bytes) -> str: ...

    async def get(self, digest: str) -> bytes: ...


def check_storage_path(path: str) -> None:
    """Refuse an asset path that could leave the asset root.

    A storage path is relative, uses ``/``, has no ``..`` or empty parts and
    no NUL byte. Raises ``ValidationError`` naming ``storage_path``.
    """
    problem = None
    if "\x00" in path:
        problem = "contains a NUL byte"
    elif "\\" in path:
        problem = "uses a backslash; use '/'"
    elif path.startswith("/") or PurePosixPath(path).is_absolute() or path[1:3] == ":/":
        problem = "is absolute; it must be relative to the asset root"
    elif any(part in ("", "..", ".") for part in path.split("/")):
        problem = "has an empty, '.' or '..' part"
    if problem:
        raise ValidationError(f"{path!r} {problem}", field="storage_path")
