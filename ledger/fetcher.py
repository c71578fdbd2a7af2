"""A document fetcher over the resources a ledger stores."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from jobledger.core import NotFound, ValidationError
from jobledger.workers import ContentFetcher

if TYPE_CHECKING:
    from .ledger import Ledger

__all__ = ["LedgerFetcher"]


class LedgerFetcher:
    """A :class:`~jobledger.workers.ContentFetcher` that reads the resources a
    ledger stores (``Ledger.create_resource``, or a generation job's
    documents), as UTF-8 text, and asks ``fallback`` (say, a
    :class:`~jobledger.workers.FolderFetcher` over the application's own
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
