"""The ``jobledger`` command line: run the demo, look into a log file (its
jobs, marks and resources), follow it live, check it, and move it between files.

::

    jobledger demo [--db URL] [--jobs N] [--fresh] [--no-live] [--pause SECONDS]
    jobledger list [--db URL] [--user U] [--status S] [--type T] [--limit N]
    jobledger show JOB_ID [--db URL]
    jobledger history JOB_ID [--db URL]
    jobledger marks RESOURCE [--db URL] [--jsonld]
    jobledger resources [--db URL] [--limit N]
    jobledger content RESOURCE [--db URL]
    jobledger tail [JOB_ID] [--db URL] [--type T] [--after SEQ] [--count N]
    jobledger replay [--db URL] [--until-seq SEQ | --until TIME]
    jobledger verify [--db URL] [--digest SEQ:HASH]
    jobledger digest [--db URL]
    jobledger export [--db URL] [--out FILE] [--after SEQ]
    jobledger import FILE [--db URL]

Exit codes: 0 success; 1 a jobledger error (an unknown job, a damaged file,
a failed verification, a refused import, an unknown resource); 2 a usage
error or a missing file.
Only ``demo`` and ``import`` create a log file; every other command refuses
a path that does not exist. ``--db`` takes a path or a URL (``sqlite:///jobs.db``,
``memory://`` for the demo; see ``jobledger.store.url``), else the
``JOBLEDGER_DB`` environment variable, else ``jobledger.db``, for every command.

What a job carries is shown, never obeyed: every human-readable line, on
standard output and standard error, shows the text the CLI did not write
itself through :func:`jobledger.terminal.printable` (control, C1, bidi and
format characters, and a field's newlines and tabs, as escapes) and as rich
``Text`` on a console with markup off (``[bold]`` is printed as written).
``export`` and ``marks --jsonld`` print exact JSON; ``content`` prints the
stored bytes into a file or pipe, and on a terminal its lines escaped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NoReturn

import msgspec
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

from jobledger.core import (
    JOB_ENDINGS,
    Envelope,
    Job,
    JobCancelled,
    JobCancelRequested,
    JobCompleted,
    JobCreated,
    JobFailed,
    JobLeaseExpired,
    JobledgerError,
    JobPartiallyCompleted,
    JobProgressed,
    JobRetryScheduled,
    JobSkipped,
    JobStarted,
    JobStatus,
    JobTimedOut,
    Mark,
    MarkBodyUpdated,
    MarkCreated,
    NotFound,
    Resource,
    ResourceCreated,
    StorageError,
    ValidationError,
)
from jobledger.store import (
    BackendURL,
    ContentFolder,
    Head,
    Problem,
    VerifyReport,
    content_folder_for,
)

from .demo import (
    DEFAULT_JOBS,
    DEFAULT_PAUSE,
    STATUS_STYLE,
    DemoReport,
    body_values,
    run_demo,
)
from .ledger import _as_user
from .ledger import open as open_ledger
from .terminal import printable

__all__ = ["main"]

_DEFAULT_DB = "jobledger.db"
_DB_HELP = f"the log: a path or a URL (default: $JOBLEDGER_DB, else {_DEFAULT_DB})"

_EVENT_STYLE = {
    "job.completed": STATUS_STYLE[JobStatus.COMPLETED],
    "job.failed": STATUS_STYLE[JobStatus.FAILED],
    "job.timed_out": STATUS_STYLE[JobStatus.TIMED_OUT],
    "job.partial": STATUS_STYLE[JobStatus.PARTIAL],
    "job.skipped": STATUS_STYLE[JobStatus.SKIPPED],
    "job.cancel_requested": STATUS_STYLE[JobStatus.CANCELLED],
    "job.cancelled": STATUS_STYLE[JobStatus.CANCELLED],
    "job.retry_scheduled": "yellow",
    "job.lease_expired": "yellow",
}
"""The style of an event type in ``history`` and ``tail`` (others are plain)."""

_TALLY_ORDER = (
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
    JobStatus.PARTIAL,
    JobStatus.SKIPPED,
)
"""The statuses the demo summary always counts, in this order (others follow if any)."""


class _MissingLog(Exception):
    """The ``--db`` file of a reading command does not exist (exit code 2)."""


class _MissingFile(Exception):
    """A file or folder to import does not exist (exit code 2)."""


class _OutputClosed(Exception):
    """The reader of our output went away (a broken pipe, as in ``| head``)."""


class _Console(Console):
    """A rich Console that reports a broken pipe as :class:`_OutputClosed`.

    rich raises ``SystemExit`` there, which escapes the asyncio event loop
    from inside a task and skips the ledger's graceful close; an ordinary
    exception unwinds through ``async with jobledger.open(...)`` instead.
    """

    def on_broken_pipe(self) -> None:
        _silence(self.file)
        raise _OutputClosed


def _silence(stream: IO[Any]) -> None:
    """Point a stream whose reader went away at /dev/null, as rich does, so the
    final flush at interpreter exit does not fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())


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
        then = f"retry at {_when(data.retry_at)}" if data.retry_at else "no retries left"
        return f"attempt {data.attempt}, {then}"
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


def _console(*, stderr: bool = False) -> Console:
    # Markup and emoji codes off: no string is ever read as rich markup.
    console = _Console(stderr=stderr, highlight=False, markup=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped output: a width wide enough that job ids never wrap.
        console.width = 140
    return console


# -- commands --------------------------------------------------------------


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _check_sqlite(db: str) -> None:
    """Raise ``StorageError`` if ``db`` exists but is not an SQLite file.

    Checked before opening: a non-empty file without the SQLite header can
    never be a jobledger log (an empty file is a valid, empty database).
    """
    path = Path(db)
    if not path.exists():
        return
    if not path.is_file():
        raise StorageError(f"{db} is not a file")
    with path.open("rb") as f:
        header = f.read(len(_SQLITE_MAGIC))
    if header and header != _SQLITE_MAGIC:
        raise StorageError(f"{db} is not a jobledger log (not an SQLite database)")


def _existing(db: str) -> str:
    """``db``, if it is an existing SQLite file; else ``_MissingLog`` or ``StorageError``."""
    if not Path(db).exists():
        raise _MissingLog(db)
    _check_sqlite(db)
    return db


async def _demo(args: argparse.Namespace, out: Console) -> int:
    live = not args.no_live and out.is_terminal
    if not args.fresh:
        _check_sqlite(args.db)
    report = await run_demo(
        args.db, jobs=args.jobs, fresh=args.fresh, pause=args.pause, console=out, live=live
    )
    _print_demo_report(report, out)
    return 0 if report.verify.ok else 1


def _print_demo_report(report: DemoReport, out: Console) -> None:
    out.print()
    out.print(_jobs_table(report.jobs, title=Text("Demo jobs")))
    out.print(_tally(report))
    for note in _notes(report.jobs):
        out.print(Text(f"({note})", "dim"), soft_wrap=True)
    _print_documents(report, out)
    out.print(
        Text(f"events in the log: {report.events} ({report.new_events} appended by this run)")
    )
    v = report.verify
    if v.ok:
        out.print(
            Text.assemble(
                ("verify: ok", "bold green"),
                f" (hash chain intact over {v.events} events, read model equals a replay; "
                f"head {v.head.seq} {v.head.hash[:16]}…)",
            ),
            soft_wrap=True,
        )
    else:
        out.print(Text(f"verify: {len(v.problems)} problem(s)", "bold red"))
        for problem in v.problems:
            out.print(_text(f"  seq {problem.seq}: {problem.kind}: {problem.detail}", "red"))
    if report.path == ":memory:":
        out.print(Text("log: in memory, gone now (--db PATH keeps one to inspect)"))
        return
    out.print(_text(f"log file: {report.path}"), soft_wrap=True)
    db = shlex.quote(report.path)
    examples = [
        job.id
        for job in (
            next((j for j in report.jobs if j.attempt > 1), None),
            next((j for j in report.jobs if j.status == JobStatus.CANCELLED), None),
        )
        if job is not None
    ] or [report.jobs[0].id if report.jobs else "JOB_ID"]
    out.print(Text("inspect it with:"))
    commands = [f"jobledger list --db {db}"]
    commands += [f"jobledger history {example} --db {db}" for example in examples]
    marked = [d.resource.id for d in report.documents if d.marks]
    if marked:
        commands.append(f"jobledger marks {marked[0]} --db {db} [--jsonld]")
    commands.append(f"jobledger resources --db {db}")
    written = [d.resource.id for d in report.documents if d.resource.job_id is not None]
    if written:
        commands.append(f"jobledger content {written[0]} --db {db}")
    for command in commands:
        out.print(_text(f"  {command}", "bold"), soft_wrap=True)


def _print_documents(report: DemoReport, out: Console) -> None:
    """The marks this run made, per document; the resources it wrote; and
    which client made them (the offline one: no model ran)."""
    marks = {mark.id: (document, mark) for document in report.documents for mark in document.marks}
    for document in report.documents:
        resource = document.resource
        if document.marks:
            title = f"Marks on {resource.id} ({resource.name}): {len(document.marks)}"
            out.print()
            out.print(_marks_table(document.marks, title=_text(title), ids=False))
        if resource.job_id is None:
            continue
        out.print()
        out.print(
            _text(
                f"Written by job {resource.job_id}: {resource.id} {resource.name!r} "
                f"({resource.size} bytes, {resource.media_type})",
                "bold",
            ),
            soft_wrap=True,
        )
        for where, mark in marks.values():
            if f"→ {resource.id}" in body_values(mark.annotation):
                out.print(
                    _text(f"linked from mark {mark.id} on {where.resource.id}: {mark.exact!r}"),
                    soft_wrap=True,
                )
        lines = document.content.splitlines()
        for line in lines[:8]:
            out.print(_text(f"  │ {line}", "dim"), soft_wrap=True)
        if len(lines) > 8:
            out.print(Text(f"  │ … ({len(lines) - 8} more lines)", "dim"))
    if report.offline:
        out.print()
        out.print(
            _text(
                f"offline: these marks and documents were made by {report.generator}, "
                "the offline client: no model ran (docs/models.md says how to use one)",
                "bold",
            ),
            soft_wrap=True,
        )


def _tally(report: DemoReport) -> Text:
    """``jobs: N — a completed, b failed, c cancelled, d partial, e skipped; …``"""
    counts = {status: 0 for status in _TALLY_ORDER}
    for job in report.jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    line = Text(f"jobs: {len(report.jobs)} — ")
    for i, (status, n) in enumerate(counts.items()):
        line.append(", " if i else "")
        line.append(f"{n} {status}", style=STATUS_STYLE.get(status, "") if n else "dim")
    retried = sum(1 for job in report.jobs if job.attempt > 1)
    line.append(f"; {retried} retried; marks created: {report.marks}")
    return line


def _notes(jobs: Sequence[Job]) -> list[str]:
    """Why the demo's unhappy endings happen (they are on purpose)."""
    notes: list[str] = []

    def some(test: Callable[[Job], bool]) -> bool:
        return any(test(job) for job in jobs)

    if some(lambda j: j.status == JobStatus.FAILED and j.error_type == "NotFound"):
        notes.append(
            "the highlight job on lost-chapter fails on purpose: no such document was stored "
            "(and it has no retries)"
        )
    if some(lambda j: j.job_type == "tag-annotation" and j.attempt > 1):
        notes.append(
            "the tag job on nap-recall loses its connection to the document store on its "
            "first read: it is retried after 0.2 s and completes on attempt 2"
        )
    if some(lambda j: j.status == JobStatus.CANCELLED):
        notes.append("the index job is cancelled by its owner once it has made some progress")
    if some(lambda j: j.status == JobStatus.PARTIAL):
        notes.append(
            "the digest job cannot read lost-chapter, one of its 3 sources: it ends partial"
        )
    if some(lambda j: j.status == JobStatus.SKIPPED):
        notes.append("the readability job skips boulangerie: it is French, not English")
    if some(lambda j: j.job_type == "generation" and j.status == JobStatus.COMPLETED):
        notes.append(
            "the generation job writes a document about the first person the reference job "
            "found, and links that reference mark to it"
        )
    return notes


async def _list(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db)) as ledger:
        page = await ledger.list(
            user=args.user, status=args.status, job_type=args.job_type, limit=args.limit
        )
    if not page.jobs:
        out.print(Text("no jobs match", "dim"))
        return 0
    out.print(_jobs_table(page.jobs, detailed=True))
    more = "; more match (raise --limit)" if page.cursor is not None else ""
    out.print(Text(f"{len(page)} job(s), newest first{more}"))
    return 0


async def _show(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db)) as ledger:
        job = await ledger.get(args.job_id)
    p = job.progress
    progress = "-"
    if p is not None:
        parts = [_progress(job), f"{p.percent:.0f}%", p.stage or "", p.message or ""]
        progress = " ".join(x for x in dict.fromkeys(parts) if x)
    lease = "-"
    if job.lease is not None:
        lease = (
            f"{job.lease.worker}, attempt {job.lease.attempt}, until {_when(job.lease.expires_at)}"
        )
    user = job.user
    rows: list[tuple[str, Text | str]] = [
        ("id", job.id),
        ("type", job.job_type),
        ("status", _status(job.status)),
        ("user", _json(msgspec.to_builtins(user)) if user.name or user.tenant else user.id),
        ("params", _json(job.params)),
        ("priority", str(job.priority)),
        ("attempt", f"{job.attempt} (max retries {job.max_retries})"),
        ("progress", progress),
        ("result", "-" if job.result is None else _json(job.result)),
        ("error", _error(job)),
        ("lease", lease),
        ("timeout", "-" if job.timeout is None else f"{job.timeout:g} s"),
        ("run at", _when(job.run_at)),
        ("created", _when(job.created_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
        ("updated", _when(job.updated_at)),
        ("version", str(job.version)),
        ("created seq", str(job.created_seq)),
    ]
    if job.idempotency_key is not None:
        rows.insert(5, ("idempotency key", job.idempotency_key))
    table = Table(box=None, show_header=False, padding=(0, 2, 0, 0))
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name, value in rows:
        table.add_row(name, value if isinstance(value, Text) else _text(value))
    out.print(table)
    return 0


async def _history(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db)) as ledger:
        events = await ledger.history(args.job_id)
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        title=_text(f"History of {args.job_id}"),
        title_justify="left",
    )
    # No version column: in one stream it is the row's number, 1, 2, 3, ...
    table.add_column("seq", justify="right")
    table.add_column("type", no_wrap=True)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("actor", no_wrap=True)
    table.add_column("attempt", justify="right", no_wrap=True)
    table.add_column("what changed", overflow="fold")
    for env in events:
        style = _EVENT_STYLE.get(env.type, "")
        table.add_row(
            str(env.seq),
            _text(env.type, style),
            _when(env.time),
            _text(env.actor),
            _attempt(env),
            _text(_summarize_event(env)),
        )
    out.print(table)
    out.print(Text(f"{len(events)} event(s)"))
    return 0


# -- marks and resources -----------------------------------------------------


def _write_out(data: bytes) -> None:
    """Write ``data`` to standard output as is; ``_OutputClosed`` if its reader went away."""
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        _silence(sys.stdout)
        raise _OutputClosed from None


def _json_document(value: Any) -> bytes:
    """``value`` as indented JSON, with a newline, that is safe on a terminal.

    JSON escapes the C0 controls; the other characters :func:`printable`
    escapes (DEL, C1, format characters, U+2028/U+2029, ...) are written as
    ``\\uXXXX`` escapes too, so the bytes hold none of them raw while the
    document parses to exactly the same value."""
    text = msgspec.json.format(msgspec.json.encode(value), indent=2).decode()
    return ("".join(_json_char(c) for c in text) + "\n").encode()


def _json_char(char: str) -> str:
    """``char``, or its JSON ``\\uXXXX`` escape (a surrogate pair beyond
    U+FFFF) if :func:`printable` would escape it; JSON's own newlines stay."""
    if char == "\n" or printable(char) == char:
        return char
    code = ord(char)
    if code > 0xFFFF:
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


async def _marks(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db)) as ledger:
        if args.jsonld:
            documents = await ledger.annotations(args.resource, base_iri=args.base_iri)
        else:
            marks = await ledger.marks(args.resource)
    if args.jsonld:
        _write_out(_json_document(documents))
        return 0
    if not marks:
        out.print(_text(f"no marks on {args.resource!r} in {args.db}", "dim"), soft_wrap=True)
        return 0
    out.print(_marks_table(marks, title=_text(f"Marks on {args.resource}")))
    out.print(Text(f"{len(marks)} mark(s), in order of creation"))
    return 0


async def _resources(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db)) as ledger:
        found = await ledger.resources(limit=min(args.limit + 1, 10_000))
    if not found:
        out.print(_text(f"no resources in {args.db}", "dim"), soft_wrap=True)
        return 0
    shown = found[: args.limit]
    out.print(_resources_table(shown))
    more = "; more exist (raise --limit)" if len(found) > len(shown) else ""
    out.print(Text(f"{len(shown)} resource(s), oldest first{more}"))
    return 0


async def _content(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db)) as ledger:
        data = await ledger.content(args.resource)
    if not out.is_terminal:  # into a file or a pipe: the stored bytes, exactly
        _write_out(data)
        return 0
    # On a terminal, a person reads it: each line printable, bytes that are
    # not UTF-8 as \xNN.
    text = data.decode("utf-8", "backslashreplace")
    for line in text.removesuffix("\n").split("\n") if text else ():
        out.print(_text(line.removesuffix("\r")), soft_wrap=True)
    return 0


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
            if shown == count or (one_job and env.type in JOB_ENDINGS):
                break
    return shown


async def _tail(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db), poll_interval=_TAIL_POLL) as ledger:
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


# -- auditing the log ----------------------------------------------------------


async def _replay(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db)) as ledger:
        state = await ledger.replay(until_seq=args.until_seq, until=args.until)
        head = await ledger.head()
    jobs = sorted(state.jobs.values(), key=lambda job: job.created_seq)
    if jobs:
        title = Text(f"Jobs at seq {state.seq}, in order of creation")
        out.print(_jobs_table(jobs, title=title, detailed=True))
    else:
        out.print(Text(f"no jobs at seq {state.seq}", "dim"))
    out.print(
        Text(
            f"{len(jobs)} job(s), {len(state.marks)} mark(s), {len(state.assets)} asset(s) "
            f"at seq {state.seq} (the log's head is {head})"
        )
    )
    return 0


async def _verify(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db)) as ledger:
        report = await ledger.verify(digest=args.digest)
    if not report.ok:
        out.print(_problems_table(report.problems))
        out.print(_verdict(report))
        return 1
    checked = f"; it still holds the digest of seq {args.digest.seq}" if args.digest else ""
    out.print(
        Text.assemble(
            _verdict(report),
            f" (hash chain intact over {report.events} events, read model equals a replay"
            f"{checked}; head {report.head.text})",
        ),
        soft_wrap=True,
    )
    return 0


async def _digest(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db)) as ledger:
        head = await ledger.digest()
    out.print(_text(head.text), soft_wrap=True)
    return 0


# -- moving the log ------------------------------------------------------------


async def _write_lines(lines: AsyncIterator[bytes], to: IO[bytes]) -> int:
    """Write ``lines`` to ``to``; returns how many. A reader that went away
    raises ``_OutputClosed``."""
    count = 0
    try:
        async for line in lines:
            to.write(line)
            count += 1
        to.flush()
    except BrokenPipeError:
        _silence(to)
        raise _OutputClosed from None
    finally:
        if isinstance(lines, AsyncGenerator):  # done with it while the ledger is open
            await lines.aclose()
    return count


@contextlib.contextmanager
def _writing(name: str | None) -> Iterator[IO[bytes]]:
    """The file ``name`` (``None``: standard output), open for writing bytes."""
    if name is None:
        yield sys.stdout.buffer
        return
    with Path(name).open("wb") as file:
        yield file


async def _export(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db)) as ledger:
        with _writing(args.out) as to:
            count = await _write_lines(ledger.export_log(after=args.after), to)
    if args.out is not None:
        out.print(_text(f"exported {count} events to {args.out}"), soft_wrap=True)
    return 0


@contextlib.contextmanager
def _reading(name: str) -> Iterator[IO[bytes]]:
    """The file ``name`` (``-``: standard input), open for reading bytes."""
    if name == "-":
        yield sys.stdin.buffer
        return
    if not Path(name).is_file():
        raise _MissingFile(name)
    with Path(name).open("rb") as file:
        yield file


def _new_log(db: str) -> bool:
    """Whether ``db`` does not exist yet; ``StorageError`` if it is not a log."""
    _check_sqlite(db)
    return not Path(db).exists()


def _discard(db: str) -> None:
    """Delete the log file ``db`` and its ``-wal``/``-shm``/``-journal`` companions."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


async def _import(args: argparse.Namespace, out: Console) -> int:
    if args.content is not None and not args.content.is_dir():
        raise _MissingFile(args.content)
    with _reading(args.file) as lines:
        created = _new_log(args.db)
        try:
            async with open_ledger(args.db) as ledger:
                count = await ledger.import_log(lines)
                if args.content is not None:
                    await ContentFolder(args.content).copy_to(
                        ContentFolder(content_folder_for(args.db))
                    )
                report = await ledger.verify()
        except BaseException:
            if created:  # the import is all or nothing: so is the file it made
                _discard(args.db)
            raise
    out.print(Text.assemble(f"imported {count} events; ", _verdict(report)))
    if not report.ok:
        out.print(_problems_table(report.problems))
        return 1
    return 0


# -- the parser --------------------------------------------------------------


def _integer(least: int, why: str, most: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from ``least`` to ``most`` (``why`` says what else)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < least or (most is not None and value > most):
            raise argparse.ArgumentTypeError(f"{why}: {value}")
        return value

    return parse


_positive = _integer(1, "must be at least 1")
_seq = _integer(0, "a seq is never negative")


def _moment(text: str) -> datetime:
    """An ISO 8601 time with its offset (``Z`` or ``+02:00``)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if moment.utcoffset() is None:
        raise argparse.ArgumentTypeError(
            f"a time needs its offset (Z, +02:00, ...) to be unambiguous: {text!r}"
        )
    return moment


def _user(text: str) -> str:
    """A user id the Python API takes (not ``system``, ``system:*`` or ``worker:*``)."""
    try:
        _as_user(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _head(text: str) -> Head:
    try:
        return Head.parse(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 second: {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """An argument parser whose error messages are :func:`printable`: they
    quote the arguments the operator gave (an unknown one, a bad value)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {printable(message)}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jobledger",
        description="jobledger: an embeddable, event-sourced job system. "
        "Run the demo, or look into a log file.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="run demo jobs with live progress, then summarize and verify the log",
        description="Run the six annotation workers (highlight, comment, assessment, tag, "
        "reference and generation) with the offline client (no model runs) on bundled "
        "sample documents, for users alice and bob, on an SQLite log file; then list the "
        "marks per document and the document the generation job wrote. On purpose, one job "
        "fails, one is retried after a failed first attempt, one is cancelled midway, one "
        "ends partial and one is skipped.",
    )
    demo.add_argument("--db", metavar="URL", help=_DB_HELP)
    demo.add_argument(
        "--jobs",
        type=_positive,
        default=DEFAULT_JOBS,
        help=f"how many jobs (default: {DEFAULT_JOBS}, enough to show every ending)",
    )
    demo.add_argument(
        "--fresh", action="store_true", help="delete the log file first (default: append)"
    )
    demo.add_argument(
        "--no-live",
        action="store_true",
        help="print plain lines instead of live bars (automatic when not on a terminal)",
    )
    demo.add_argument(
        "--pause",
        type=_seconds,
        default=DEFAULT_PAUSE,
        help=f"seconds between work steps (default: {DEFAULT_PAUSE})",
    )

    db_help = f"{_DB_HELP}; it must exist"
    listing = commands.add_parser("list", help="list jobs, newest first")
    listing.add_argument("--db", metavar="URL", help=db_help)
    listing.add_argument("--user", type=_user, help="only this user's jobs")
    listing.add_argument("--status", choices=[s.value for s in JobStatus], help="only this status")
    listing.add_argument("--type", dest="job_type", help="only this job type")
    listing.add_argument(
        "--limit", type=_positive, default=50, help="at most this many jobs (default: 50)"
    )

    show = commands.add_parser("show", help="show one job's fields")
    show.add_argument("job_id", metavar="JOB_ID")
    show.add_argument("--db", metavar="URL", help=db_help)

    history = commands.add_parser("history", help="show one job's events, in order")
    history.add_argument("job_id", metavar="JOB_ID")
    history.add_argument("--db", metavar="URL", help=db_help)

    _add_mark_commands(commands, db_help)
    _add_live_commands(commands, db_help)
    _add_audit_commands(commands, db_help)
    return parser


def _add_mark_commands(commands: Any, db_help: str) -> None:
    marks = commands.add_parser(
        "marks",
        help="list a resource's marks (W3C annotations), or print them as JSON-LD",
        description="List the live marks of RESOURCE in order of creation: motivation, "
        "span, quoted text, body and the job that made each. With --jsonld, print them "
        "as one JSON array of W3C Web Annotation documents instead.",
    )
    marks.add_argument("resource", metavar="RESOURCE", help="the resource (document) id")
    marks.add_argument("--db", metavar="URL", help=db_help)
    marks.add_argument(
        "--jsonld",
        action="store_true",
        help="print a JSON array of W3C annotation documents (JSON-LD)",
    )
    marks.add_argument(
        "--base-iri",
        metavar="IRI",
        help="with --jsonld: name marks and resources BASE/marks/ID and BASE/resources/ID "
        "(an absolute IRI ending in '/'; default urn:jobledger:mark:ID …)",
    )

    listing = commands.add_parser("resources", help="list the resources (documents), oldest first")
    listing.add_argument("--db", metavar="URL", help=db_help)
    listing.add_argument(
        "--limit",
        type=_integer(1, "must be 1-10000", 10_000),
        default=100,
        help="at most this many (default: 100)",
    )

    content = commands.add_parser(
        "content",
        help="print a resource's content, checked against its digest",
        description="Print the content of RESOURCE, checked against its digest: into a "
        "file or a pipe, the stored bytes exactly; on a terminal, its lines, with control "
        "and format characters shown as escapes (\\x1b, \\u202e).",
    )
    content.add_argument("resource", metavar="RESOURCE", help="the resource id")
    content.add_argument("--db", metavar="URL", help=db_help)


def _add_live_commands(commands: Any, db_help: str) -> None:
    tail = commands.add_parser(
        "tail",
        help="follow the log: print events as they are written",
        description="Print one line per event as it is written (Ctrl-C stops). With "
        "JOB_ID, only that job's events, with a progress bar on a terminal; it stops "
        "at the job's end.",
    )
    tail.add_argument("job_id", metavar="JOB_ID", nargs="?", help="follow only this job")
    tail.add_argument("--db", metavar="URL", help=db_help)
    tail.add_argument(
        "--type", dest="job_type", help="only the jobs of this type (with their marks and assets)"
    )
    tail.add_argument(
        "--after",
        type=_seq,
        metavar="SEQ",
        help="start after this seq (0: the whole log; default: the head, new events only)",
    )
    tail.add_argument("--count", type=_positive, metavar="N", help="stop after N events")


def _add_audit_commands(commands: Any, db_help: str) -> None:
    replay = commands.add_parser(
        "replay", help="show the state at a past point, recomputed from the log alone"
    )
    replay.add_argument("--db", metavar="URL", help=db_help)
    point = replay.add_mutually_exclusive_group()
    point.add_argument("--until-seq", type=_seq, metavar="SEQ", help="up to this seq")
    point.add_argument(
        "--until",
        type=_moment,
        metavar="TIME",
        help="up to this ISO 8601 time, with its offset (2025-01-31T12:00:00Z)",
    )

    verify = commands.add_parser(
        "verify", help="check the hash chain and the read model; exit 1 on any problem"
    )
    verify.add_argument("--db", metavar="URL", help=db_help)
    verify.add_argument(
        "--digest",
        type=_head,
        metavar="SEQ:HASH",
        help="also check that the log still holds this digest (printed by jobledger digest)",
    )

    digest = commands.add_parser(
        "digest", help="print the head of the log (SEQ:HASH), to keep elsewhere for verify"
    )
    digest.add_argument("--db", metavar="URL", help=db_help)

    export = commands.add_parser("export", help="write the log as NDJSON, one event a line")
    export.add_argument("--db", metavar="URL", help=db_help)
    export.add_argument("--out", metavar="FILE", help="write to FILE (default: standard output)")
    export.add_argument(
        "--after", type=_seq, default=0, metavar="SEQ", help="only events after this seq"
    )

    load = commands.add_parser(
        "import", help="load an export into a new log, with the same hashes, and verify it"
    )
    load.add_argument("file", metavar="FILE", help="an export (-: standard input)")
    load.add_argument(
        "--db",
        metavar="URL",
        help=f"{_DB_HELP}; created if missing, it must be empty",
    )
    load.add_argument(
        "--content",
        type=Path,
        metavar="DIR",
        help="the content folder of the exported log (OLD.db.content): its resources' "
        "content is copied in, checked against the digests",
    )


_COMMANDS = {
    "demo": _demo,
    "list": _list,
    "show": _show,
    "history": _history,
    "marks": _marks,
    "resources": _resources,
    "content": _content,
    "tail": _tail,
    "replay": _replay,
    "verify": _verify,
    "digest": _digest,
    "export": _export,
    "import": _import,
}


def _database(given: str | None, command: str) -> str:
    """The log ``command`` works on, from ``--db`` (``given``), else the
    ``JOBLEDGER_DB`` environment variable (when set and not empty), else
    ``jobledger.db``: the SQLite file's path, or ``":memory:"`` for the demo.

    ``ValidationError`` for a malformed or unknown URL (naming the accepted
    forms) and for a log in memory given to any command but ``demo`` (it
    would be empty, and gone at exit). The commands write with
    ``synchronous=FULL``, whatever a URL's query says.
    """
    source, text = "--db", given
    if text is None:
        source, text = "JOBLEDGER_DB", os.environ.get("JOBLEDGER_DB") or _DEFAULT_DB
    try:
        url = BackendURL.parse(text)
    except ValidationError as exc:
        raise ValidationError(str(exc), field=source) from None
    if url.path is not None:
        return url.path
    if command != "demo":
        raise ValidationError(
            f"{text!r} is a log in memory, empty at start and gone at exit: "
            f"{command} needs a log file (a path or sqlite:///PATH)",
            field=source,
        )
    return ":memory:"


def main(argv: list[str] | None = None) -> int:
    """Run the ``jobledger`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit code: 0 on success, 1 for a jobledger error (printed to
    stderr, for example an unknown job), 2 for a usage error or a missing
    log file. Never raises ``SystemExit``.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    out = _console()
    err = _console(stderr=True)
    try:
        args.db = _database(args.db, args.command)
    except ValidationError as exc:
        err.print(_text(f"jobledger: error: {exc}", "red"), soft_wrap=True)
        return 2
    try:
        return asyncio.run(_COMMANDS[args.command](args, out))
    except _MissingLog as exc:
        err.print(
            _text(f"jobledger: error: no log file at {exc} (pass --db URL)", "red"),
            soft_wrap=True,
        )
        return 2
    except _MissingFile as exc:
        err.print(_text(f"jobledger: error: no file at {exc}", "red"), soft_wrap=True)
        return 2
    except NotFound as exc:
        err.print(_text(f"jobledger: error: {exc} in {args.db}", "red"), soft_wrap=True)
        return 1
    except JobledgerError as exc:
        err.print(_text(f"jobledger: error: {type(exc).__name__}: {exc}", "red"), soft_wrap=True)
        return 1
    except _OutputClosed:
        return 1
    except KeyboardInterrupt:
        err.print(Text("jobledger: interrupted", "red"))
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
