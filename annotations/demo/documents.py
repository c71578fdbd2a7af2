"""The demo's documents: the bundled samples (package data,
``jobledger/annotations/samples/*.md``, :data:`SAMPLES`) and the fetcher the
demo reads them through (:class:`DemoFetcher`, slow and once flaky, like a
store across a network).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from importlib import resources as package_files
from types import MappingProxyType

from jobledger.annotations import (
    LedgerFetcher,
)

__all__ = ["SAMPLES", "DemoFetcher"]


def _load_samples() -> Mapping[str, str]:
    folder = package_files.files("jobledger.annotations").joinpath("samples")
    found = {
        entry.name.removesuffix(".md"): entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".md")
    }
    return MappingProxyType(dict(sorted(found.items())))


SAMPLES: Mapping[str, str] = _load_samples()
"""The bundled sample documents (``jobledger/annotations/samples/ID.md``), by resource id,
in order of id. ``boulangerie`` is in French, on purpose."""

# -- reading the documents ---------------------------------------------------


class DemoFetcher(LedgerFetcher):
    """The demo's fetcher: a :class:`~jobledger.annotations.LedgerFetcher` (the samples
    are stored as the ledger's resources) that behaves like a document store
    across a network, waiting ``latency`` seconds per read.

    The first read of each resource in ``flaky`` raises ``ConnectionError``
    (a dropped connection: the job's attempt fails and is retried); later
    reads succeed. ``reads`` counts the reads.
    """

    def __init__(self, *, latency: float = 0.0, flaky: Collection[str] = ()) -> None:
        if latency < 0:
            raise ValueError("latency must not be negative")
        super().__init__()
        self.latency = latency
        self.flaky = set(flaky)
        self.reads = 0

    async def fetch(self, resource_id: str) -> str:
        self.reads += 1
        await asyncio.sleep(self.latency)
        if resource_id in self.flaky:
            self.flaky.discard(resource_id)
            raise ConnectionError(f"connection reset while reading {resource_id} (a flaky store)")
        return await super().fetch(resource_id)
