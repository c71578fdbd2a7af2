"""Content stores: resources' bytes by digest (see :mod:`jobledger.core.content`).

:class:`ContentFolder` keeps each content in a file named by its digest,
``ROOT/sha256/ab/abcdef…``, written to a temporary file, fsynced, renamed into
place and the folder fsynced, so a digest ``put`` returned survives a crash
and a reader never sees half a file. :class:`MemoryContent` keeps them in a
dict, for in-memory ledgers and tests.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from pathlib import Path

from jobledger.core import (
    ContentStore,
    CorruptionError,
    NotFound,
    StorageError,
    ValidationError,
    digest_of,
)

__all__ = ["ContentFolder", "MemoryContent", "content_folder_for"]

_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")


def _hex_of(digest: str) -> str:
    match = _DIGEST.match(digest)
    if match is None:
        raise ValidationError("not a content digest (sha256: and 64 hex digits)", field="digest")
    return match.group(1)


def content_folder_for(database: str | Path) -> Path:
    """Where a ledger on ``database`` keeps resources' content: ``NAME.content``
    beside it."""
    path = Path(database)
    return path.with_name(path.name + ".content")


class ContentFolder:
    """A :class:`~jobledger.core.ContentStore` in a folder (made on first put)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_of(self, digest: str) -> Path:
        """The file that holds (or would hold) ``digest``'s content."""
        hex_digest = _hex_of(digest)
        return self.root / "sha256" / hex_digest[:2] / hex_digest

    async def put(self, data: bytes) -> str:
        digest = digest_of(data)
        await asyncio.to_thread(self._write, self.path_of(digest), data)
        return digest

    async def get(self, digest: str) -> bytes:
        path = self.path_of(digest)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFound("content", digest) from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc}") from exc
        if digest_of(data) != digest:
            raise CorruptionError(f"the content stored as {digest} no longer matches it")
        return data

    def digests(self) -> list[str]:
        """The digests stored here, sorted (files whose names are not digests,
        such as a temporary file a crash left, are not content)."""
        if not self.root.is_dir():
            return []
        found = (f"sha256:{p.name}" for p in self.root.glob("sha256/*/*") if p.is_file())
        return sorted(d for d in found if _DIGEST.match(d))

    async def copy_to(self, target: ContentStore) -> int:
        """Put every content stored here into ``target`` (checking each against
        its digest first: ``CorruptionError`` for one that no longer matches);
        returns how many."""
        digests = self.digests()
        for digest in digests:
            await target.put(await self.get(digest))
        return len(digests)

    def _write(self, path: Path, data: bytes) -> None:
        try:
            if path.exists() and path.read_bytes() == data:
                return  # content-addressed: the same bytes are there already
            # (A file there that no longer holds them was damaged: written over.)
            made = [p for p in (self.root, path.parent.parent, path.parent) if not p.exists()]
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
            # The new name, and each folder made for it, is durable in its parent.
            for folder in {path.parent, *(p.parent for p in made)}:
                _fsync_folder(folder)
        except OSError as exc:
            raise StorageError(f"cannot store content in {path.parent}: {exc}") from exc


def _fsync_folder(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


class MemoryContent:
    """A :class:`~jobledger.core.ContentStore` in memory."""

    def __init__(self) -> None:
        self._items: dict[str, bytes] = {}

    async def put(self, data: bytes) -> str:
        digest = digest_of(data)
        self._items[digest] = bytes(data)
        return digest

    async def get(self, digest: str) -> bytes:
        _hex_of(digest)
        try:
            return self._items[digest]
        except KeyError:
            raise NotFound("content", digest) from None
