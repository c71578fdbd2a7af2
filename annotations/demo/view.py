"""The demo's live view: one progress row per job, fed by the log, each
showing its status, its progress and what it made; and how a mark's body
reads as text (:func:`body_values`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import msgspec
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
)
from rich.progress_bar import ProgressBar
from rich.text import Text

from jobledger.core import (
    BodyAdd,
    Envelope,
    JobCancelled,
    JobCancelRequested,
    JobCompleted,
    JobCreated,
    JobFailed,
    JobLeaseExpired,
    JobPartiallyCompleted,
    JobProgressed,
    JobRetryScheduled,
    JobSkipped,
    JobStarted,
    JobStatus,
    JobTimedOut,
    MarkBodyUpdated,
    MarkCreated,
    ResourceCreated,
    SpecificResource,
)
from jobledger.terminal import printable

from .small_workers import JOB_TYPES

__all__ = ["STATUS_STYLE", "body_values"]


STATUS_STYLE: Mapping[JobStatus, str] = MappingProxyType(
    {
        JobStatus.PENDING: "dim",
        JobStatus.RUNNING: "cyan",
        JobStatus.SUSPENDED: "blue",
        JobStatus.COMPLETED: "green",
        JobStatus.PARTIAL: "yellow",
        JobStatus.FAILED: "red",
        JobStatus.CANCELLED: "magenta",
        JobStatus.SKIPPED: "bright_black",
        JobStatus.TIMED_OUT: "red",
    }
)
"""The rich style of each job status, in the live bars and the CLI's tables."""

_GLYPH: Mapping[JobStatus, str] = MappingProxyType(
    {
        JobStatus.PENDING: "·",
        JobStatus.RUNNING: "▸",
        JobStatus.SUSPENDED: "‖",
        JobStatus.COMPLETED: "✓",
        JobStatus.PARTIAL: "◐",
        JobStatus.FAILED: "✗",
        JobStatus.CANCELLED: "■",
        JobStatus.SKIPPED: "↷",
        JobStatus.TIMED_OUT: "⌛",
    }
)


def body_values(annotation: Mapping[str, Any]) -> list[str]:
    """What a mark's body says, one string per body item: a ``TextualBody``'s
    value (with its purpose, if any, as ``purpose: value``), a link as ``→``
    and its target. A body that is not a W3C list is shown as its JSON."""
    body = annotation.get("body")
    if body is None:
        return []
    items = body if isinstance(body, list) else [body]
    values: list[str] = []
    for item in items:
        if isinstance(item, dict) and item.get("type") == "TextualBody":
            purpose = item.get("purpose")
            value = str(item.get("value", ""))
            values.append(f"{purpose}: {value}" if purpose else value)
        elif isinstance(item, dict) and item.get("type") == "SpecificResource":
            values.append(f"→ {item.get('source')}")
        else:
            values.append(msgspec.json.encode(item).decode())
    return values


# -- the live view ---------------------------------------------------------

_TYPE_WIDTH = max(len(t.name) for t in JOB_TYPES)


def _short(job_id: str) -> str:
    return "…" + job_id[-8:]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _quote(annotation: Mapping[str, Any], limit: int = 40) -> str:
    """The text a mark quotes, in quotes and cut to ``limit``; ``""`` if none."""
    target = annotation.get("target")
    for selector in target.get("selector", []) if isinstance(target, dict) else []:
        if isinstance(selector, dict) and selector.get("type") == "TextQuoteSelector":
            return repr(_cut(" ".join(str(selector.get("exact", "")).split()), limit))
    return ""


def _compact(value: Any, limit: int = 60) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _glyph(status: JobStatus) -> Text:
    return Text(_GLYPH[status], STATUS_STYLE[status])


def _label(status: JobStatus, text: str | None = None, sep: str = " ") -> Text:
    """A bar's detail: ``status`` in its style, then ``sep`` and ``text``
    (:func:`~jobledger.terminal.printable`), if any."""
    head = Text(str(status), STATUS_STYLE[status])
    return head.append(f"{sep}{printable(text)}") if text else head


class _TextField(ProgressColumn):
    """A column that shows the task's field ``name``, a rich ``Text`` (user
    data in a bar never goes through rich markup or emoji codes)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def render(self, task: Task) -> Text:
        value = task.fields.get(self.name)
        return value.copy() if isinstance(value, Text) else Text(printable(str(value or "")))


class _StatusBar(BarColumn):
    """A bar in the colour of its task's ``bar`` field, if set (a job that
    ended otherwise than completed, or waits for a retry); rich's own colours
    (in progress, finished) otherwise."""

    def render(self, task: Task) -> ProgressBar:
        bar = super().render(task)
        style = task.fields.get("bar")
        if style:
            bar.complete_style = bar.finished_style = style
        return bar


@dataclass
class _Row:
    job_id: str
    job_type: str
    user: str
    task: TaskID | None = None
    total: float | None = None
    marks: int = 0
    cancelled_by: str | None = None


@dataclass
class _Tracker:
    """Folds the live envelopes into a progress view: rich bars, or plain lines.

    ``stop_at`` is set once every job is terminal: the ``seq`` of the last
    event the view must show.
    """

    console: Console
    progress: Progress | None
    rows: dict[str, _Row] = field(default_factory=dict)
    last_seq: int = 0
    marks: int = 0
    stop_at: int | None = None

    @property
    def done(self) -> bool:
        return self.stop_at is not None and self.last_seq >= self.stop_at

    def _line(self, row: _Row, seq: int, what: str, style: str) -> None:
        job = printable(f"{row.job_id}  {row.job_type:<{_TYPE_WIDTH}}  {row.user:<5}")
        self.console.print(
            Text.assemble(f"{seq:>5}  {job}  ", (printable(what), style)), soft_wrap=True
        )

    def _show(self, row: _Row, seq: int, line: str, style: str = "", **bar: Any) -> None:
        """Show ``line`` (made printable, in ``style``) as a plain line, or
        update the job's bar with ``bar``."""
        if self.progress is None:
            self._line(row, seq, line, style)
        elif row.task is not None:
            self.progress.update(row.task, **bar)

    def handle(self, env: Envelope) -> None:
        """Show one envelope; events of jobs created before the run are skipped;
        the resources the demo stores itself get a line of their own."""
        self.last_seq = env.seq
        data = env.data
        if isinstance(data, JobCreated):
            row = _Row(job_id=data.job_id, job_type=data.job_type, user=data.user.id)
            self.rows[row.job_id] = row
            if self.progress is not None:
                row.task = self.progress.add_task(
                    printable(f"{_short(row.job_id)} {row.job_type:<{_TYPE_WIDTH}} {row.user:<5}"),
                    total=None,
                    bar=None,
                    glyph=_glyph(JobStatus.PENDING),
                    detail=_label(JobStatus.PENDING),
                )
            retries = f" (up to {data.max_retries} retries)" if data.max_retries else ""
            self._show(row, env.seq, f"created{retries}")
            return
        if isinstance(data, ResourceCreated) and data.job_id is None:
            self.console.print(
                Text(
                    printable(
                        f"{env.seq:>5}  {data.resource_id}  stored {data.name} ({data.size} bytes)"
                    )
                ),
                soft_wrap=True,
            )
            return
        found = self.rows.get(getattr(data, "job_id", None) or "")
        if found is None:
            return
        self._handle_job(found, env)

    def _handle_job(self, row: _Row, env: Envelope) -> None:
        data = env.data
        seq = env.seq
        # A finished job's bar stops pulsing: it gets a total if it never had one.
        last = row.total or 1
        if isinstance(data, JobStarted):
            self._show(
                row,
                seq,
                f"started (attempt {data.attempt}, worker {data.worker})",
                completed=0,
                bar=None,
                glyph=_glyph(JobStatus.RUNNING),
                detail=_label(JobStatus.RUNNING, f"(attempt {data.attempt})"),
            )
        elif isinstance(data, JobProgressed):
            note = " ".join(x for x in (data.stage, data.message) if x)
            done: float = data.percent
            total: float = 100
            amount = f"{data.percent:.0f}%"
            if data.processed is not None and data.total is not None:
                done, total = data.processed, data.total
                amount = f"{done}/{total}"
            row.total = total
            self._show(
                row,
                seq,
                f"progress {amount} {note}".rstrip(),
                completed=done,
                total=total,
                detail=Text(printable(note)),
            )
        elif isinstance(data, MarkCreated):
            row.marks += 1
            self.marks += 1
            motivation = data.annotation.get("motivation", "?")
            said = "; ".join(body_values(data.annotation))
            line = f"mark on {data.resource_id}: {motivation} {_quote(data.annotation)}"
            moved: dict[str, Any] = {"completed": row.marks} if row.total else {}
            self._show(row, seq, f"{line} {_cut(said, 50)}".rstrip(), **moved)
        elif isinstance(data, MarkBodyUpdated):
            links = [
                op.item.source
                for op in data.operations
                if isinstance(op, BodyAdd) and isinstance(op.item, SpecificResource)
            ]
            what = f"linked to {', '.join(links)}" if links else "body changed"
            self._show(row, seq, f"mark {data.mark_id} {what}")
        elif isinstance(data, ResourceCreated):
            self._show(row, seq, f"resource {data.resource_id} {data.name!r} ({data.size} bytes)")
        elif isinstance(data, JobRetryScheduled):
            delay = max(0.0, (data.run_at - env.time).total_seconds())
            self._show(
                row,
                seq,
                f"retry scheduled in {delay:.1f} s: attempt {data.attempt} failed: "
                f"{data.error_type + ': ' if data.error_type else ''}{data.error}",
                "yellow",
                bar="yellow",
                glyph=Text("↻", "yellow"),
                detail=Text.assemble(
                    (f"retry in {delay:.1f} s", "yellow"),
                    printable(f" (attempt {data.attempt}: {data.error})"),
                ),
            )
        elif isinstance(data, JobLeaseExpired):
            then = (
                f"recovery {data.recovery}, pending again"
                if data.recovery is not None
                else "retry scheduled"
                if data.retry_at is not None
                else "no retries left"
            )
            self._show(
                row,
                seq,
                f"lease expired (attempt {data.attempt}); {then}",
                "yellow",
                bar="yellow",
                glyph=Text("↻", "yellow"),
                detail=Text.assemble(("lease expired", "yellow"), f" ({then})"),
            )
        elif isinstance(data, JobCancelRequested):
            why = f": {data.reason}" if data.reason else ""
            row.cancelled_by = env.actor
            self._show(
                row,
                seq,
                f"cancel requested by {env.actor}{why}",
                "magenta",
                detail=Text.assemble(
                    ("cancelling…", "magenta"), printable(f" (asked by {env.actor})")
                ),
            )
        elif isinstance(data, JobCancelled):
            at = f" (attempt {data.attempt})" if data.attempt is not None else ""
            why = f": {data.reason}" if data.reason else ""
            by = f"by {row.cancelled_by}" if row.cancelled_by else None
            self._end(row, seq, last, JobStatus.CANCELLED, f"cancelled{at}{why}", by, " ")
        elif isinstance(data, JobCompleted):
            again = f"(attempt {data.attempt})" if data.attempt > 1 else None
            line = f"completed {_compact(data.result)}"
            self._end(row, seq, last, JobStatus.COMPLETED, line, again, " ")
        elif isinstance(data, JobPartiallyCompleted):
            line = f"partial: {data.error}; result {_compact(data.result)}"
            self._end(row, seq, last, JobStatus.PARTIAL, line, data.error)
        elif isinstance(data, JobSkipped):
            line = f"skipped: {data.reason}"
            self._end(row, seq, last, JobStatus.SKIPPED, line, data.reason)
        elif isinstance(data, JobFailed):
            kind = f"{data.error_type}: " if data.error_type else ""
            line = f"failed: {kind}{data.error}"
            self._end(row, seq, last, JobStatus.FAILED, line, data.error)
        elif isinstance(data, JobTimedOut):
            line = f"timed out: {data.error}"
            self._end(row, seq, last, JobStatus.TIMED_OUT, line, data.error)

    def _end(
        self,
        row: _Row,
        seq: int,
        last: float,
        status: JobStatus,
        line: str,
        detail: str | None,
        joiner: str = ": ",
    ) -> None:
        """Show a job's ending: a plain line, or its bar in the status's colour
        (a completed bar is full)."""
        bar: dict[str, Any] = {"total": last, "glyph": _glyph(status)}
        if status is JobStatus.COMPLETED:
            bar["completed"] = last
        else:
            bar["bar"] = STATUS_STYLE[status]
        bar["detail"] = _label(status, detail, joiner)
        self._show(row, seq, line, STATUS_STYLE[status], **bar)
