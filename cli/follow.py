"""The ``tail`` command: follows the log live, all of it or one job (with
a progress bar on a terminal).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncGenerator

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from jobledger import open as open_ledger
from jobledger.core import (
    Envelope,
    Job,
    JobCompleted,
    JobProgressed,
    ends_job,
)
from jobledger.terminal import printable

from .common import _existing
from .formatting import _event_line, _text

# -- following the log -------------------------------------------------------


_TAIL_POLL = 0.2
"""Seconds between ``tail``'s looks for events written by another process
(the ledger's default, 1 s, is slow to watch)."""


class _JobBar:
    """A rich progress bar of one job's percent; ``tail``'s lines scroll above it."""

    def __init__(self, job: Job, out: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TaskProgressColumn(),
            console=out,
        )
        self._task = self._progress.add_task(printable(job.id), total=100)
        if job.progress is not None:
            self._progress.update(self._task, completed=job.progress.percent)

    def __enter__(self) -> _JobBar:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def show(self, env: Envelope) -> None:
        """Move the bar for a progress event, or fill it for a completion."""
        if isinstance(env.data, JobProgressed):
            self._progress.update(self._task, completed=env.data.percent)
        elif isinstance(env.data, JobCompleted):
            self._progress.update(self._task, completed=100)


async def _follow(
    envelopes: AsyncGenerator[Envelope, None],
    out: Console,
    *,
    count: int | None,
    one_job: bool = False,
    bar: _JobBar | None = None,
) -> int:
    """Print a line per envelope (and move ``bar``) until ``count`` are
    printed, ``envelopes`` ends, or, with ``one_job``, the job's stream ends;
    returns how many were printed."""
    shown = 0
    async with contextlib.aclosing(envelopes) as stream:
        async for env in stream:
            out.print(_event_line(env), soft_wrap=True)
            shown += 1
            if bar is not None:
                bar.show(env)
            if shown == count or (one_job and ends_job(env)):
                break
    return shown


async def _tail(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db), poll_interval=_TAIL_POLL, migrate=False) as ledger:
        after = await ledger.head() if args.after is None else args.after
        if args.job_id is None:
            envelopes = ledger.events(after, follow=True, job_type=args.job_type)
            await _follow(envelopes, out, count=args.count)
            return 0
        job = await ledger.get(args.job_id)
        # An ended job gets no more events: read what there is, do not wait.
        envelopes = ledger.events(after, follow=not job.is_terminal, job_id=job.id)
        with _JobBar(job, out) if out.is_terminal else contextlib.nullcontext() as bar:
            shown = await _follow(envelopes, out, count=args.count, one_job=True, bar=bar)
    if job.is_terminal and shown == 0:
        out.print(
            _text(f"job {job.id} had already ended ({job.status}); no events after seq {after}")
        )
    return 0
