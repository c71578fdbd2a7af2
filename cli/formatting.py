"""How the CLI shows what a log holds: jobs, marks, resources, events and
verification problems as rich tables and lines, every text it did not write
made :func:`~jobledger.terminal.printable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from jobledger.annotations.demo import (
    STATUS_STYLE,
    body_values,
)
from jobledger.core import (
    Envelope,
    Job,
    JobCancelled,
    JobCancelRequested,
    JobCompleted,
    JobCreated,
    JobFailed,
    JobLeaseExpired,
    JobPartiallyCompleted,
    JobProgressed,
    JobReleased,
    JobRetryScheduled,
    JobSkipped,
    JobStarted,
    JobStatus,
    JobTimedOut,
    Mark,
    MarkBodyUpdated,
    MarkCreated,
    Resource,
    ResourceCreated,
)
from jobledger.store import Problem, VerifyReport
from jobledger.terminal import printable

from .common import _EVENT_STYLE

# -- formatting ----------------------------------------------------------


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _text(text: str, style: str = "") -> Text:
    """``text`` made :func:`printable`, as a rich ``Text`` (never read as markup).

    Every string of the human-readable output that the CLI did not write
    itself reaches the console through here (or through :func:`printable`
    into a ``Text.assemble`` part)."""
    return Text(printable(text), style)


def _print_json(out: Console, value: Any) -> None:
    """``value`` as one line of exact JSON on ``out``'s file (``--json``: for
    scripts, so not escaped for a terminal, as ``export`` is not)."""
    out.file.write(msgspec.json.encode(value).decode() + "\n")
    out.file.flush()


def _json(value: Any, limit: int | None = None) -> str:
    """``value`` as compact JSON made :func:`printable` (JSON leaves DEL, C1
    and format characters as they are), cut to ``limit`` characters."""
    text = printable(msgspec.json.encode(value).decode())
    return text if limit is None else _cut(text, limit)


def _status(status: JobStatus) -> Text:
    return Text(str(status), style=STATUS_STYLE.get(status, ""))


def _cut(text: str, limit: int) -> str:
    """``text`` :func:`printable`, cut to ``limit`` characters."""
    text = printable(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _outcome(job: Job, limit: int = 60) -> Text:
    """The result or error of a job, as its status makes sense of them: a
    completed job's result (an error of an earlier, retried attempt is not
    shown), a partial job's error and result, an ended job's error or reason."""
    style = STATUS_STYLE.get(job.status, "")
    if job.status == JobStatus.COMPLETED:
        return Text("-" if job.result is None else _json(job.result, limit))
    if job.status == JobStatus.PARTIAL and job.result is not None:
        return Text.assemble((_cut(job.error or "", limit), style), (" (+ result)", "dim"))
    if job.error is not None:
        return Text(_cut(job.error, limit), style if job.is_terminal else "red")
    if job.result is not None:
        return Text(_json(job.result, limit))
    return Text("-", style="dim")


def _error(job: Job) -> Text:
    """A job's error for ``show``; a completed job's is an earlier attempt's."""
    if job.error is None:
        return Text("-")
    if job.status == JobStatus.COMPLETED:
        return _text(f"{job.error} (an earlier attempt; it was retried)", "dim")
    return _text(job.error, STATUS_STYLE.get(job.status, "") if job.is_terminal else "red")


def _progress(job: Job) -> str:
    p = job.progress
    if p is None:
        return "-"
    if p.processed is not None and p.total is not None:
        return f"{p.processed}/{p.total}"
    return f"{p.percent:.0f}%"


def _jobs_table(jobs: Sequence[Job], *, title: Text | None = None, detailed: bool = False) -> Table:
    """A table of jobs; ``detailed`` adds the progress of unfinished jobs and
    the creation time."""
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, title_justify="left")
    table.add_column("job", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("user", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("attempts", justify="right", no_wrap=True)
    if detailed:
        table.add_column("created (UTC)", no_wrap=True)
    table.add_column("result / error", overflow="fold")
    for job in jobs:
        status = _status(job.status)
        if detailed and not job.is_terminal and job.progress is not None:
            status.append(f" {_progress(job)}")
        table.add_row(
            _text(job.id),
            _text(job.job_type),
            _text(job.user.id),
            status,
            str(job.attempt),
            *([_when(job.created_at)[:19]] if detailed else []),
            _outcome(job),
        )
    return table


def _span(mark: Mark) -> str:
    """``start–end`` of a mark's ``TextPositionSelector``; ``-`` if it has none
    (a mark on a whole resource)."""
    span = mark.span
    return "-" if span is None else f"{span[0]}–{span[1]}"


def _marks_table(marks: Sequence[Mark], *, title: Text | None = None, ids: bool = True) -> Table:
    """A table of marks: motivation, span, quoted text and body values; with
    ``ids``, first the mark's id with the job that made it under it."""
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, title_justify="left")
    if ids:
        table.add_column("mark / job", no_wrap=True)
    table.add_column("motivation", no_wrap=True)
    table.add_column("span", justify="right", no_wrap=True)
    table.add_column("quoted text", overflow="fold", ratio=3)
    table.add_column("body", overflow="fold", ratio=2, min_width=36)
    for mark in marks:
        quote = " ".join((mark.exact or "").split())
        # The demo's tables (no ids) keep to a line a mark.
        joiner, limit = ("\n", 90) if ids else ("; ", 60)
        row: list[Text | str] = [
            _text(mark.motivation or "-"),
            _text(_span(mark)),
            Text(_cut(quote, limit) if quote else "-"),
            Text(joiner.join(printable(value) for value in body_values(mark.annotation)) or "-"),
        ]
        if ids:
            made_by = printable(mark.job_id or mark.created_by)
            row = [Text(f"{printable(mark.id)}\n{made_by}"), *row]
        table.add_row(*row)
    return table


def _resources_table(resources: Sequence[Resource]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("resource", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("media type", no_wrap=True)
    table.add_column("bytes", justify="right", no_wrap=True)
    table.add_column("made by", no_wrap=True)
    table.add_column("created (UTC)", no_wrap=True)
    for resource in resources:
        table.add_row(
            _text(resource.id),
            _text(resource.name),
            _text(resource.media_type),
            str(resource.size),
            _text(resource.job_id or resource.created_by),
            _when(resource.created_at)[:19],
        )
    return table


def _summarize_event(env: Envelope) -> str:
    """A one-line, human summary of an envelope's data (for ``history`` and ``tail``)."""
    data = env.data
    if isinstance(data, JobCreated):
        return f"{data.job_type} for {data.user.id}, params {_json(data.params, 60)}"
    if isinstance(data, JobStarted):
        return (
            f"attempt {data.attempt} claimed by {data.worker}, "
            f"lease until {_when(data.lease_expires_at)}"
        )
    if isinstance(data, JobProgressed):
        amount = (
            f"{data.processed}/{data.total} ({data.percent:.0f}%)"
            if data.processed is not None and data.total is not None
            else f"{data.percent:.0f}%"
        )
        note = " ".join(x for x in (data.stage, data.message) if x)
        return f"{amount} {note}".rstrip()
    if isinstance(data, JobCompleted):
        return f"attempt {data.attempt}, result {_json(data.result, 70)}"
    if isinstance(data, JobFailed):
        kind = f"{data.error_type}: " if data.error_type else ""
        return f"attempt {data.attempt}, {kind}{data.error}"
    if isinstance(data, JobRetryScheduled):
        kind = f"{data.error_type}: " if data.error_type else ""
        delay = (data.run_at - env.time).total_seconds()
        return (
            f"attempt {data.attempt} failed ({kind}{data.error}); "
            f"retry at {_when(data.run_at)} (in {delay:.2f} s)"
        )
    if isinstance(data, JobPartiallyCompleted):
        return f"attempt {data.attempt}, {data.error}; result {_json(data.result, 60)}"
    if isinstance(data, JobSkipped):
        return f"attempt {data.attempt}, {data.reason}"
    if isinstance(data, JobTimedOut):
        return f"attempt {data.attempt}, {data.error}"
    if isinstance(data, JobCancelRequested):
        return f"by {env.actor}" + (f": {data.reason}" if data.reason else "")
    if isinstance(data, JobCancelled):
        at = f"attempt {data.attempt}, " if data.attempt is not None else ""
        return f"{at}{data.reason or 'cancelled'}"
    if isinstance(data, JobLeaseExpired):
        if data.recovery is not None:  # a lost worker: a recovery, not a retry
            how = "its process died" if data.reason == "holder" else "its lease expired"
            return f"attempt {data.attempt}: worker lost ({how}); recovery {data.recovery}, pending"
        then = f"retry at {_when(data.retry_at)}" if data.retry_at else "no retries left"
        return f"attempt {data.attempt}, {then}"
    if isinstance(data, JobReleased):
        return f"attempt {data.attempt} given back by its worker" + (
            f": {data.reason}" if data.reason else ""
        )
    if isinstance(data, MarkCreated):
        motivation = data.annotation.get("motivation", "?")
        return f"mark {data.mark_id} on {data.resource_id} ({motivation})"
    if isinstance(data, MarkBodyUpdated):
        ops = ", ".join(_json(msgspec.to_builtins(op)) for op in data.operations)
        return _cut(f"mark {data.mark_id}: {ops}", 100)
    if isinstance(data, ResourceCreated):
        return f"{data.name!r}, {data.media_type}, {data.size} bytes, {data.digest[:19]}…"
    # An event type this CLI does not know yet: show its fields.
    fields = {k: v for k, v in msgspec.to_builtins(data).items() if k not in {"type", "job_id"}}
    return _json(fields, 80)


def _attempt(env: Envelope) -> str:
    """The attempt an event belongs to, if its data names one; else ``-``."""
    attempt = getattr(env.data, "attempt", None)
    return "-" if attempt is None else str(attempt)


_TYPE_WIDTH = len("job.suspend_requested")
"""The longest event type, so that ``tail`` lines align."""


def _event_line(env: Envelope) -> Text:
    """One line of ``tail``: seq, time, type, stream, actor, then the summary."""
    return Text.assemble(
        f"{env.seq:>6}  {_when(env.time)}  ",
        (f"{env.type:<{_TYPE_WIDTH}}", _EVENT_STYLE.get(env.type, "")),
        printable(f"  {env.stream}  {env.actor}  {_summarize_event(env)}"),
    )


def _problems_table(problems: Sequence[Problem]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for problem in problems:
        table.add_row(str(problem.seq), _text(problem.kind, "red"), _text(problem.detail))
    return table


def _verdict(report: VerifyReport) -> Text:
    """``verify: ok`` or ``verify: N problem(s)``, in green or red."""
    if report.ok:
        return Text("verify: ok", "bold green")
    return Text(f"verify: {len(report.problems)} problem(s)", "bold red")
