"""Running the demo: :func:`run_demo` stores the samples, submits the batch,
follows the log into the live view, cancels the index job midway, links
the generated document, and verifies the log at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    MofNCompleteColumn,
    Progress,
    TextColumn,
)
from rich.text import Text

from jobledger import Ledger
from jobledger import open as open_ledger
from jobledger.annotations import (
    OfflineClient,
)
from jobledger.core import (
    InvalidTransition,
    Job,
    JobProgressed,
    Mark,
    NotFound,
    ValidationError,
    ends_job,
)
from jobledger.store import content_folder_for
from jobledger.terminal import printable

from .batch import (
    _FLAKY,
    DEFAULT_JOBS,
    DemoDocument,
    DemoReport,
    _demo_batch,
    _Spec,
    _workers,
)
from .documents import SAMPLES, DemoFetcher
from .small_workers import DEFAULT_PAUSE, JOB_TYPES
from .view import _StatusBar, _TextField, _Tracker

__all__ = ["run_demo"]


async def _follow(ledger: Ledger, after: int, tracker: _Tracker) -> None:
    """Feed ``tracker`` the log after ``after`` until it is done."""
    async with contextlib.aclosing(ledger.events(after, follow=True)) as envelopes:
        async for env in envelopes:
            tracker.handle(env)
            if tracker.done:
                return


async def _cancel_midway(ledger: Ledger, job: Job, steps: int) -> None:
    """Cancel ``job`` as its owner once it reports ``steps`` steps done; do
    nothing if it ends first."""
    async with contextlib.aclosing(
        ledger.events(job.created_seq - 1, follow=True, job_id=job.id)
    ) as envelopes:
        async for env in envelopes:
            data = env.data
            if isinstance(data, JobProgressed) and (data.processed or 0) >= steps:
                with contextlib.suppress(InvalidTransition):  # it ended meanwhile
                    await ledger.cancel(
                        job.id, user=job.user, reason=f"{job.user.id} no longer needs it"
                    )
                return
            if ends_job(env):
                return


def _prepare(path: str | Path, fresh: bool) -> str:
    """The absolute path of the log (or ``":memory:"``); with ``fresh``, delete
    the file, its ``-wal``/``-shm``/``-journal`` companions and its content
    folder (``PATH.content``) first."""
    if str(path) == ":memory:":
        return ":memory:"
    where = os.path.abspath(path)
    if fresh:
        if os.path.exists(where) and not os.path.isfile(where):
            raise ValidationError(f"{where} is not a file", field="path")
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{where}{suffix}").unlink(missing_ok=True)
        shutil.rmtree(content_folder_for(where), ignore_errors=True)
    return where


async def _settle(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Wait for ``tasks``; re-raise the first exception one of them raised."""
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, Exception):
            raise outcome


async def _store_samples(ledger: Ledger) -> None:
    """Store each bundled sample as a resource (its id, ``ID.md``), unless the
    log already has it (a run appending to an earlier run's log)."""
    for resource_id, text in SAMPLES.items():
        try:
            await ledger.resource(resource_id)
        except NotFound:
            await ledger.create_resource(
                f"{resource_id}.md", text, actor="demo", resource_id=resource_id
            )


def _names(mark: Mark, value: str) -> bool:
    """Whether ``mark``'s body has a ``TextualBody`` of ``value``."""
    body = mark.annotation.get("body")
    return isinstance(body, list) and any(
        isinstance(item, dict) and item.get("value") == value for item in body
    )


async def _submit_linked(
    ledger: Ledger, spec: _Spec, user: str, reference: Job | None, timeout: float
) -> Job:
    """Submit the generation job of ``spec`` once the ``reference`` job has
    ended: about the first mark it made of the entity type ``spec.link``,
    from its document, linking that mark. With no such job or mark, the job
    writes notes on the bundled samples, linked to nothing."""
    params: dict[str, Any] = {"title": "Notes on the sample documents"}
    if reference is not None:
        ended = await ledger.wait(reference.id, timeout=timeout)
        source = str(reference.params["resourceId"])
        params["sourceResourceId"] = source
        found = [
            m
            for m in await ledger.marks(source)
            if m.job_id == ended.id and spec.link is not None and _names(m, spec.link)
        ]
        if found and found[0].exact:
            name = found[0].exact
            params["title"] = name
            params["prompt"] = f"Who was {name}, and what part did they play in this story?"
            params["referenceMarkId"] = found[0].id
    return await ledger.submit(
        spec.job_type, params, user=user, max_retries=spec.max_retries, retry=spec.retry
    )


async def _documents(ledger: Ledger, jobs: Sequence[Job]) -> tuple[DemoDocument, ...]:
    """The bundled samples and the resources ``jobs`` wrote, with the marks
    ``jobs`` made on each."""
    ids = {job.id for job in jobs}
    written = [
        str(job.result["resourceId"])
        for job in jobs
        if job.job_type == "generation" and job.result and "resourceId" in job.result
    ]
    documents: list[DemoDocument] = []
    for resource_id in (*SAMPLES, *written):
        documents.append(
            DemoDocument(
                resource=await ledger.resource(resource_id),
                content=(await ledger.content(resource_id)).decode(),
                marks=tuple(m for m in await ledger.marks(resource_id) if m.job_id in ids),
            )
        )
    return tuple(documents)


async def run_demo(
    path: str | Path = "jobledger.db",
    *,
    jobs: int = DEFAULT_JOBS,
    fresh: bool = False,
    pause: float = DEFAULT_PAUSE,
    console: Console | None = None,
    live: bool = False,
) -> DemoReport:
    """Run ``jobs`` demo jobs on the SQLite file ``path`` and return what happened.

    Appends to an existing file unless ``fresh``, which first deletes it (and
    its ``-wal``/``-shm`` files and its content folder). Registers
    :data:`JOB_TYPES`; stores the bundled samples as resources (if the log
    does not have them yet); submits the batch: the annotation jobs with the
    offline client, one job whose first read fails and is retried, one on a
    missing document, one the demo cancels midway as its owner, and a
    generation job once the reference job before it has ended. Progress goes
    to ``console`` (default: a new stdout console) as live bars when
    ``live`` is true, else as one plain line per event. Returns once every
    job is terminal, the view has shown every event up to then, and the log
    has been verified. Raises ``ValidationError`` for ``jobs < 1`` or a
    negative ``pause``, and any ``JobledgerError`` the ledger raises (for
    example ``StorageError`` for a file that is not a jobledger log).
    """
    if not isinstance(jobs, int) or jobs < 1:
        raise ValidationError("must be at least 1", field="jobs")
    if pause < 0:
        raise ValidationError("must not be negative", field="pause")
    console = console or Console()
    where = _prepare(path, fresh)
    batch = _demo_batch(jobs)
    client = OfflineClient()
    fetcher = DemoFetcher(latency=3 * pause, flaky=_FLAKY)
    # A short poll: a retry comes due 0.2 s after its failure, and the workers
    # find due retries by polling.
    async with open_ledger(
        where, workers=_workers(fetcher, pause), job_types=JOB_TYPES, poll_interval=0.05
    ) as ledger:
        fetcher.bind(ledger)
        start = await ledger.head()
        console.print(
            Text(
                printable(
                    f"jobledger demo: {jobs} jobs for alice and bob on {where} (log head {start})"
                )
            ),
            soft_wrap=True,
        )
        console.print(
            Text(
                printable(
                    f"offline: the annotation workers use the offline client ({client.name}); "
                )
                + "no model runs, passages are picked by plain extractive rules",
                "bold",
            ),
            soft_wrap=True,
        )
        progress = (
            Progress(
                _TextField("glyph"),
                TextColumn("{task.description}", markup=False),
                _StatusBar(),
                MofNCompleteColumn(),
                _TextField("detail"),
                console=console,
            )
            if live
            else None
        )
        tracker = _Tracker(console=console, progress=progress)
        helpers: list[asyncio.Task[Any]] = []
        # Generous: as if every job ran alone, a few dozen steps each.
        budget = 30.0 + len(batch) * 30 * (pause + 0.01)
        with progress if progress is not None else contextlib.nullcontext():
            follower = asyncio.create_task(_follow(ledger, start, tracker))
            try:
                await _store_samples(ledger)
                pending: list[Job | asyncio.Task[Job]] = []
                reference: Job | None = None
                for spec, user in batch:
                    if spec.link is not None:
                        linked = asyncio.create_task(
                            _submit_linked(ledger, spec, user, reference, budget)
                        )
                        helpers.append(linked)
                        pending.append(linked)
                        continue
                    job = await ledger.submit(
                        spec.job_type,
                        spec.params,
                        user=user,
                        max_retries=spec.max_retries,
                        retry=spec.retry,
                    )
                    pending.append(job)
                    if spec.job_type == "reference-annotation":
                        reference = job
                    if spec.cancel_after is not None:
                        helpers.append(
                            asyncio.create_task(_cancel_midway(ledger, job, spec.cancel_after))
                        )
                submitted = [p if isinstance(p, Job) else await p for p in pending]
                final = await asyncio.gather(
                    *(ledger.wait(job.id, timeout=budget) for job in submitted)
                )
                await _settle(helpers)
                tracker.stop_at = await ledger.head()
                if tracker.done:
                    follower.cancel()
                # The follower stops by itself once it has shown the head.
                await _settle([follower])
            finally:
                for task in (*helpers, follower):
                    if not task.done():
                        task.cancel()
                await asyncio.gather(*helpers, follower, return_exceptions=True)
        documents = await _documents(ledger, final)
        head = await ledger.head()
        report = await ledger.verify()
    return DemoReport(
        path=where,
        jobs=tuple(final),
        events=head,
        new_events=head - start,
        marks=tracker.marks,
        documents=documents,
        generator=client.name,
        offline=client.offline,
        verify=report,
    )
