"""The commands that look into jobs: ``list``, ``show`` and ``history``."""

from __future__ import annotations

import argparse

import msgspec
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from jobledger import open as open_ledger
from jobledger.views import job_view

from .common import _EVENT_STYLE, _existing
from .formatting import (
    _attempt,
    _error,
    _jobs_table,
    _json,
    _print_json,
    _progress,
    _status,
    _summarize_event,
    _text,
    _when,
)


async def _list(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db), migrate=False) as ledger:
        page = await ledger.list(
            user=args.user, status=args.status, job_type=args.job_type, limit=args.limit
        )
        now = ledger.clock.now()
    if args.json:  # (the document GET /v1/jobs answers)
        items = [job_view(job, now) for job in page.jobs]
        cursor = None if page.cursor is None else str(page.cursor)
        _print_json(out, {"items": items, "nextCursor": cursor})
        return 0
    if not page.jobs:
        out.print(Text("no jobs match", "dim"))
        return 0
    out.print(_jobs_table(page.jobs, detailed=True))
    more = "; more match (raise --limit)" if page.cursor is not None else ""
    out.print(Text(f"{len(page)} job(s), newest first{more}"))
    return 0


async def _show(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db), migrate=False) as ledger:
        job = await ledger.get(args.job_id)
        now = ledger.clock.now()
    if args.json:
        _print_json(out, job_view(job, now))
        return 0
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
    async with open_ledger(_existing(args.db), migrate=False) as ledger:
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
