"""The ``demo`` command: runs :func:`~jobledger.annotations.demo.run_demo`
and prints its report (the jobs by ending, the documents and their marks,
notes on what each ending shows).
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.text import Text

from jobledger.annotations.demo import (
    STATUS_STYLE,
    DemoReport,
    body_values,
    run_demo,
)
from jobledger.core import (
    Job,
    JobStatus,
)

from .common import _TALLY_ORDER, _check_sqlite
from .formatting import _jobs_table, _marks_table, _text


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
