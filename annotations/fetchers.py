"""Where the annotation workers read documents: the :class:`ContentFetcher`
protocol and two fetchers, :class:`FolderFetcher` (a folder of text files)
and :class:`LedgerFetcher` (the resources a ledger stores).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from jobledger.core import (
    NotFound,
    StorageError,
    ValidationError,
)

if TYPE_CHECKING:
    from jobledger import Ledger

__all__ = ["ContentFetcher", "FolderFetcher", "LedgerFetcher"]


class ContentFetcher(Protocol):
    """Where the workers read documents: the text of a resource by its id.

    The application implements it over its own document store. ``fetch``
    raises ``NotFound`` for an unknown resource."""

    async def fetch(self, resource_id: str) -> str: ...


_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class FolderFetcher:
    """A :class:`ContentFetcher` over a folder of UTF-8 text files: resource
    ``ID`` is the file ``ID``, or ``ID.md`` or ``ID.txt``. The text is the
    file's bytes decoded, line endings as they are (``\\r\\n`` stays two
    characters), so marks' offsets count the file's own characters.

    Raises ``ValidationError`` (``field="resource_id"``) for an id that could
    leave the folder (``/``, ``..``, a leading dot) or a file that is not
    UTF-8; ``NotFound`` for a missing file; ``StorageError`` when the file
    cannot be read (permissions, I/O). Files are read in a thread."""

    suffixes: ClassVar[tuple[str, ...]] = ("", ".md", ".txt")

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    async def fetch(self, resource_id: str) -> str:
        if not _SAFE_ID.match(resource_id) or ".." in resource_id:
            raise ValidationError("not a document id of this folder", field="resource_id")
        return await asyncio.to_thread(self._read, resource_id)

    def _read(self, resource_id: str) -> str:
        for suffix in self.suffixes:
            path = self.folder / f"{resource_id}{suffix}"
            try:
                if not path.is_file():
                    continue
                data = path.read_bytes()
            except FileNotFoundError:  # removed since is_file(): try the next suffix
                continue
            except OSError as exc:
                raise StorageError(f"cannot read {path.name}: {exc}") from exc
            try:
                # Not read_text: it would turn \r\n and \r into \n and shift every offset.
                return data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValidationError(
                    f"{path.name} is not UTF-8 text: {exc}", field="resource_id"
                ) from exc
        raise NotFound("resource", resource_id)


class LedgerFetcher:
    """A :class:`ContentFetcher` that reads the resources a
    ledger stores (``Ledger.create_resource``, or a generation job's
    documents), as UTF-8 text, and asks ``fallback`` (say, a
    :class:`FolderFetcher` over the application's own
    documents) for ids the ledger has no resource for.

    Workers are given to ``jobledger.open`` before the ledger exists, so the
    fetcher is made first and bound after: ``fetcher.bind(ledger)``. A read
    waits until then. Raises ``NotFound`` for an id neither knows,
    ``ValidationError`` for content that is not UTF-8, and what
    ``Ledger.content`` raises for a resource whose content is missing or
    changed (``NotFound``, ``CorruptionError``).
    """

    def __init__(self, fallback: ContentFetcher | None = None) -> None:
        self.fallback = fallback
        self._ledger: Ledger | None = None
        self._bound = asyncio.Event()

    def bind(self, ledger: Ledger) -> None:
        """Read from ``ledger`` from now on."""
        self._ledger = ledger
        self._bound.set()

    async def fetch(self, resource_id: str) -> str:
        await self._bound.wait()
        assert self._ledger is not None  # set with _bound
        try:
            await self._ledger.resource(resource_id)
        except NotFound:
            if self.fallback is None:
                raise
            return await self.fallback.fetch(resource_id)
        data = await self._ledger.content(resource_id)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError(
                f"resource {resource_id!r} is not UTF-8 text: {exc}", field="resource_id"
            ) from exc
