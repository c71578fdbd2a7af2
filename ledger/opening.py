"""``jobledger.open``: a ledger on the backend a path or URL names, started
for the ``async with`` block and closed after it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

from jobledger.core import Clock, ContentStore, JobType
from jobledger.core.faults import Faults
from jobledger.store import Backend, BackendURL, backend_for
from jobledger.workers import JobWorker

from .ledger import Ledger

__all__ = ["open"]


@asynccontextmanager
async def open(
    path: str | Path | None = None,
    *,
    workers: Sequence[JobWorker] = (),
    clock: Clock | None = None,
    synchronous: Literal["FULL", "NORMAL"] | None = None,
    poll_interval: float = 1.0,
    stop_timeout: float = 10.0,
    mailbox_size: int = 10_000,
    max_batch: int = 1_000,
    job_types: Sequence[JobType] = (),
    queues: Mapping[str, int] | None = None,
    sweep_interval: float = 1.0,
    faults: Faults | None = None,
    migrate: bool = True,
) -> AsyncIterator[Ledger]:
    """Open a ledger on the backend ``path`` names: a path or a URL.

    A plain path (text or ``Path``) or ``sqlite:///relative/jobs.db`` /
    ``sqlite:////absolute/jobs.db`` is an SQLite file; ``None``,
    ``":memory:"``, ``memory://``, ``sqlite://`` and ``sqlite:///:memory:``
    are in memory (:mod:`jobledger.store.url` says exactly what counts as a
    URL). An unknown scheme, a malformed URL or an option the backend does
    not take is a ``ValidationError`` naming the accepted forms, and nothing
    is created. ``postgresql://…`` opens a log on PostgreSQL
    (docs/postgres.md). ``synchronous`` (default: the URL's
    ``?synchronous=``, else ``"FULL"``) applies to a file; given both, they
    must agree.

    The file is created if missing and migrated if old (with
    ``migrate=False``, a log of an older schema is refused with a
    ``StorageError`` naming ``jobledger migrate``); jobs whose worker was
    lost are recovered. Workers start at once and stop (gracefully, up to
    ``stop_timeout`` seconds) when the block exits. ``job_types`` fills the
    registry; ``queues`` caps how many jobs of each named queue run at once,
    recorded in the log (``register_queue``) so that the cap holds across
    every process and host on it; ``sweep_interval`` is how often lost leases and
    timeouts are looked for. Resources' content lives in a folder beside
    the file (``PATH.content``), or in memory with the log. ``faults`` is
    for reliability tests only: the crash points of
    :mod:`jobledger.core.faults` are reached on it (default: none).
    """
    store: Backend
    content: ContentStore
    store, content = backend_for(
        BackendURL.parse(":memory:" if path is None else path),
        synchronous=synchronous,
        faults=faults,
        migrate=migrate,
    )
    ledger = Ledger(
        store,
        workers=workers,
        clock=clock,
        poll_interval=poll_interval,
        stop_timeout=stop_timeout,
        mailbox_size=mailbox_size,
        max_batch=max_batch,
        job_types=job_types,
        queues=queues,
        sweep_interval=sweep_interval,
        content=content,
        faults=faults,
    )
    await ledger.start()
    try:
        yield ledger
    finally:
        await ledger.aclose()
