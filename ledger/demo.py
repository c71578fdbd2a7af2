"""The demo behind ``jobledger demo``: a few workers doing small, real work on
bundled sample texts, a mixed batch of jobs for two users, and a live view of
the log while they run.

The workers:

- :class:`WordCountWorker` (``word-count``) counts the words of a document
  sentence by sentence, reporting ``processed``/``total`` sentences;
- :class:`HighlightWorker` (``highlight``) scans a document for sentences with
  given keywords and creates one mark per hit on the document;
- :class:`ChecksumWorker` (``checksum``) hashes a document chunk by chunk
  (SHA-256), reporting ``processed``/``total`` chunks;
- :class:`SummarizeWorker` (``summarize``) picks a document's lead sentence,
  and raises on a document with no sentences (``doc-blank``), so every demo
  batch of four or more jobs shows a failed job.

Each step pauses ``pause`` seconds (the work itself takes microseconds), so a
person can watch the progress bars move.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
)
from rich.text import Text

from jobledger.core import (
    Envelope,
    Job,
    JobCompleted,
    JobCreated,
    JobFailed,
    JobProgressed,
    JobStarted,
    MarkCreated,
    ValidationError,
)
from jobledger.store import VerifyReport
from jobledger.workers import JobContext, JobWorker

from .ledger import Ledger
from .ledger import open as open_ledger

__all__ = [
    "DEFAULT_PAUSE",
    "SAMPLES",
    "ChecksumWorker",
    "DemoReport",
    "HighlightWorker",
    "SummarizeWorker",
    "WordCountWorker",
    "run_demo",
]

DEFAULT_PAUSE = 0.08
"""Seconds each demo worker waits between two steps of its work."""

SAMPLES: Mapping[str, str] = {
    "doc-rivers": (
        "A river is a long argument between water and stone. "
        "Over centuries the water wins, cutting valleys that later travellers mistake "
        "for permanent features of the land. "
        "Every bend in a river records a flood that nobody wrote down. "
        "Engineers straighten rivers to move ships faster, and the water slowly tries "
        "to bend them back. "
        "Where a river meets the sea it drops the silt it carried, building deltas "
        "grain by grain. "
        "Farmers have followed rivers since the first fields were sown, trusting the "
        "water to return each spring."
    ),
    "doc-bees": (
        "A honey bee colony is a single household of tens of thousands. "
        "The queen lays the eggs, sometimes two thousand in a summer day, while workers "
        "build comb, nurse larvae and guard the entrance of the hive. "
        "Foragers report where flowers grow by dancing on the comb, and the angle of "
        "the dance points toward the sun. "
        "When the hive grows crowded, the old queen leaves with half the workers to "
        "found a new home. "
        "Beekeepers read a hive by its sound as much as by its look. "
        "A calm hive hums, and a queenless one roars."
    ),
    "doc-ledgers": (
        "The oldest ledgers were clay tablets listing sheep, grain and beer. "
        "Double-entry bookkeeping, described in print in Venice in 1494, made every "
        "record appear twice, once as a debit and once as a credit. "
        "A ledger is trusted because nothing in it is erased: a mistake is corrected "
        "by a new entry that reverses the old one. "
        "Auditors replay the record from the first page to check that the balances "
        "still hold. "
        "Modern event logs borrow the same idea, and a hash chain makes a quiet edit "
        "to an old record impossible to hide. "
        "The record of what happened is worth more than a snapshot of what is."
    ),
    "doc-lighthouse": (
        "Lighthouse keepers kept a logbook of every night on the rock. "
        "They wrote down the weather, the ships that passed and the hours the lamp "
        "was lit. "
        "The lamp had to turn without stopping from dusk to dawn, so keepers wound "
        "the clockwork every few hours. "
        "Fog brought the horn, and a keeper might sound it all night. "
        "Most lights are automatic now, and the logbooks sit in archives. "
        "Historians read them to learn how storms and shipping changed over a century."
    ),
    "doc-blank": "   ",
}
"""The bundled sample documents, by resource id. ``doc-blank`` is blank on purpose."""

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _sentences(text: str) -> list[str]:
    """Split ``text`` into sentences (at ``.``, ``!`` or ``?`` followed by space)."""
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def _document(params: Mapping[str, Any]) -> tuple[str, str]:
    doc = params.get("doc")
    if not isinstance(doc, str) or doc not in SAMPLES:
        raise ValueError(f"unknown document {doc!r}; known: {', '.join(sorted(SAMPLES))}")
    return doc, SAMPLES[doc]


class _DemoWorker(JobWorker):
    """A worker that pauses ``pause`` seconds between steps; two jobs at once;
    every step's progress is reported (no throttling: the demo shows each one)."""

    concurrency = 2
    progress_interval = 0.0

    def __init__(self, *, pause: float = DEFAULT_PAUSE, name: str | None = None) -> None:
        super().__init__(name=name)
        if pause < 0:
            raise ValueError("pause must not be negative")
        self.pause = pause

    async def step(self) -> None:
        """Wait between two steps of the work, so progress is visible."""
        await asyncio.sleep(self.pause)


class WordCountWorker(_DemoWorker):
    """``word-count``: counts the words of ``params["doc"]``, one sentence per step.

    Result: ``{"doc", "sentences", "words"}``. Raises ``ValueError`` for an
    unknown document.
    """

    job_types: ClassVar[tuple[str, ...]] = ("word-count",)

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        doc, text = _document(job.params)
        parts = _sentences(text)
        words = 0
        for done, sentence in enumerate(parts, start=1):
            await self.step()
            words += len(sentence.split())
            await ctx.progress(
                processed=done, total=len(parts), stage="counting", message=f"{words} words"
            )
        return {"doc": doc, "sentences": len(parts), "words": words}


class HighlightWorker(_DemoWorker):
    """``highlight``: marks every sentence of ``params["doc"]`` that contains one
    of ``params["keywords"]`` (case-insensitive, as a word prefix).

    Creates one mark per (sentence, keyword) hit on the document, with a
    W3C-style annotation (motivation, keyword, text position and quote).
    Result: ``{"doc", "highlightsFound"}``. Raises ``ValueError`` for an
    unknown document or no keywords.
    """

    job_types: ClassVar[tuple[str, ...]] = ("highlight",)

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        doc, text = _document(job.params)
        keywords = job.params.get("keywords")
        if not isinstance(keywords, list) or not keywords:
            raise ValueError("params.keywords must be a non-empty list of words")
        patterns = [
            (str(k), re.compile(rf"\b{re.escape(str(k))}", re.IGNORECASE)) for k in keywords
        ]
        parts = _sentences(text)
        found = 0
        cursor = 0
        for done, sentence in enumerate(parts, start=1):
            await self.step()
            start = text.find(sentence, cursor)
            cursor = start + len(sentence)
            for keyword, pattern in patterns:
                if pattern.search(sentence):
                    found += 1
                    await ctx.create_mark(
                        doc,
                        {
                            "motivation": "highlighting",
                            "keyword": keyword,
                            "creator": job.user.id,
                            "target": {
                                "source": doc,
                                "selector": [
                                    {"type": "TextPositionSelector", "start": start, "end": cursor},
                                    {"type": "TextQuoteSelector", "exact": sentence},
                                ],
                            },
                        },
                    )
            await ctx.progress(
                processed=done, total=len(parts), stage="scanning", message=f"{found} highlights"
            )
        return {"doc": doc, "highlightsFound": found}


class ChecksumWorker(_DemoWorker):
    """``checksum``: the SHA-256 of ``params["doc"]`` (UTF-8), fed
    ``params["chunk"]`` bytes (default 96) per step.

    Result: ``{"doc", "bytes", "chunks", "sha256"}``. Raises ``ValueError``
    for an unknown document or a chunk size below 1.
    """

    job_types: ClassVar[tuple[str, ...]] = ("checksum",)

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        doc, text = _document(job.params)
        chunk = job.params.get("chunk", 96)
        if not isinstance(chunk, int) or chunk < 1:
            raise ValueError("params.chunk must be a positive integer")
        data = text.encode()
        total = max(1, -(-len(data) // chunk))
        digest = hashlib.sha256()
        for done in range(1, total + 1):
            await self.step()
            digest.update(data[(done - 1) * chunk : done * chunk])
            await ctx.progress(processed=done, total=total, stage="hashing")
        return {"doc": doc, "bytes": len(data), "chunks": total, "sha256": digest.hexdigest()}


class SummarizeWorker(_DemoWorker):
    """``summarize``: the lead (first) sentence of ``params["doc"]``, after
    reading every sentence.

    Result: ``{"doc", "sentences", "summary"}``. Raises ``ValueError`` for a
    document with no sentences (the bundled ``doc-blank``) or an unknown one.
    """

    job_types: ClassVar[tuple[str, ...]] = ("summarize",)

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        doc, text = _document(job.params)
        await self.step()
        parts = _sentences(text)
        if not parts:
            raise ValueError(f"document {doc!r} has no sentences to summarize")
        for done in range(1, len(parts) + 1):
            await self.step()
            await ctx.progress(processed=done, total=len(parts), stage="reading")
        return {"doc": doc, "sentences": len(parts), "summary": parts[0]}


_BATCH: Sequence[tuple[str, dict[str, Any]]] = (
    ("word-count", {"doc": "doc-rivers"}),
    ("highlight", {"doc": "doc-bees", "keywords": ["hive", "queen"]}),
    ("checksum", {"doc": "doc-ledgers"}),
    ("summarize", {"doc": "doc-blank"}),
    ("highlight", {"doc": "doc-ledgers", "keywords": ["ledger", "record"]}),
    ("word-count", {"doc": "doc-lighthouse"}),
    ("checksum", {"doc": "doc-rivers", "chunk": 64}),
    ("summarize", {"doc": "doc-lighthouse"}),
)
_USERS = ("alice", "bob")


def _demo_batch(count: int) -> list[tuple[str, dict[str, Any], str]]:
    """The first ``count`` demo jobs as ``(job_type, params, user)``: the eight
    bundled specs in turn (the fourth fails on purpose), users alternating
    ``alice`` and ``bob``."""
    return [(*_BATCH[i % len(_BATCH)], _USERS[i % len(_USERS)]) for i in range(count)]


class DemoReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one demo run did.

    ``jobs`` are this run's jobs in their final (terminal) state, in
    submission order; ``events`` is the number of events in the whole log
    and ``new_events`` how many this run appended; ``marks`` counts the marks
    this run's jobs created; ``verify`` is the log's verification afterwards.
    """

    path: str
    jobs: tuple[Job, ...]
    events: int
    new_events: int
    marks: int
    verify: VerifyReport


def _short(job_id: str) -> str:
    return "…" + job_id[-8:]


def _compact(value: Any, limit: int = 60) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class _Row:
    job_id: str
    job_type: str
    user: str
    task: TaskID | None = None
    total: float | None = None
    marks: int = 0


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

    def _line(self, row: _Row, seq: int, what: Text | str) -> None:
        self.console.print(
            Text.assemble(f"{seq:>5}  {row.job_id}  {row.job_type:<10}  {row.user:<5}  ", what),
            soft_wrap=True,
        )

    def _show(self, row: _Row, seq: int, line: Text | str, **bar: Any) -> None:
        if self.progress is None:
            self._line(row, seq, line)
        elif row.task is not None:
            self.progress.update(row.task, **bar)

    def handle(self, env: Envelope) -> None:
        """Show one envelope; events of jobs created before the run are skipped."""
        self.last_seq = env.seq
        data = env.data
        if isinstance(data, JobCreated):
            row = _Row(job_id=data.job_id, job_type=data.job_type, user=data.user.id)
            self.rows[row.job_id] = row
            if self.progress is not None:
                row.task = self.progress.add_task(
                    escape(f"{_short(row.job_id)} {row.job_type:<10} {row.user:<5}"),
                    total=None,
                    glyph="[dim]·[/]",
                    detail="[dim]pending[/]",
                )
            self._show(row, env.seq, "created")
            return
        found = self.rows.get(getattr(data, "job_id", None) or "")
        if found is None:
            return
        row = found
        if isinstance(data, JobStarted):
            self._show(
                row,
                env.seq,
                f"started (attempt {data.attempt}, worker {data.worker})",
                glyph="[cyan]▸[/]",
                detail=f"[cyan]running[/] (attempt {data.attempt})",
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
                env.seq,
                f"progress {amount} {note}".rstrip(),
                completed=done,
                total=total,
                detail=escape(note),
            )
        elif isinstance(data, MarkCreated):
            row.marks += 1
            self.marks += 1
            keyword = data.annotation.get("keyword", "")
            self._show(row, env.seq, f"mark on {data.resource_id} (keyword {keyword!r})")
        elif isinstance(data, JobCompleted):
            total = row.total or 1
            self._show(
                row,
                env.seq,
                Text(f"completed {_compact(data.result)}", style="green"),
                completed=total,
                total=total,
                glyph="[green]✓[/]",
                detail="[green]completed[/]",
            )
        elif isinstance(data, JobFailed):
            self._show(
                row,
                env.seq,
                Text(f"failed: {data.error}", style="red"),
                total=row.total or 1,
                glyph="[red]✗[/]",
                detail=f"[red]failed:[/] {escape(data.error)}",
            )


async def _follow(ledger: Ledger, after: int, tracker: _Tracker) -> None:
    """Feed ``tracker`` the log after ``after`` until it is done."""
    async with contextlib.aclosing(ledger.events(after, follow=True)) as envelopes:
        async for env in envelopes:
            tracker.handle(env)
            if tracker.done:
                return


def _prepare(path: str | Path, fresh: bool) -> str:
    """The absolute path of the log (or ``":memory:"``); with ``fresh``, delete
    the file and its ``-wal``/``-shm``/``-journal`` companions first."""
    if str(path) == ":memory:":
        return ":memory:"
    where = os.path.abspath(path)
    if fresh:
        if os.path.exists(where) and not os.path.isfile(where):
            raise ValidationError(f"{where} is not a file", field="path")
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{where}{suffix}").unlink(missing_ok=True)
    return where


async def run_demo(
    path: str | Path = "jobledger-demo.db",
    *,
    jobs: int = 6,
    fresh: bool = False,
    pause: float = DEFAULT_PAUSE,
    console: Console | None = None,
    live: bool = False,
) -> DemoReport:
    """Run ``jobs`` demo jobs on the SQLite file ``path`` and return what happened.

    Appends to an existing file unless ``fresh``, which first deletes it (and
    its ``-wal``/``-shm`` files). Progress goes to ``console`` (default: a new
    stdout console) as live bars when ``live`` is true, else as one plain
    line per event. Returns once every job is terminal, the view has shown
    every event up to then, and the log has been verified. Raises
    ``ValidationError`` for ``jobs < 1`` or a negative ``pause``, and any
    ``JobledgerError`` the ledger raises (for example ``StorageError`` for a
    file that is not a jobledger log).
    """
    if not isinstance(jobs, int) or jobs < 1:
        raise ValidationError("must be at least 1", field="jobs")
    if pause < 0:
        raise ValidationError("must not be negative", field="pause")
    console = console or Console()
    where = _prepare(path, fresh)
    workers = [
        WordCountWorker(pause=pause),
        HighlightWorker(pause=pause),
        ChecksumWorker(pause=pause),
        SummarizeWorker(pause=pause),
    ]
    batch = _demo_batch(jobs)
    async with open_ledger(where, workers=workers) as ledger:
        start = await ledger.head()
        console.print(
            Text(f"jobledger demo: {jobs} jobs for alice and bob on {where} (log head {start})"),
            soft_wrap=True,
        )
        progress = (
            Progress(
                TextColumn("{task.fields[glyph]}"),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                console=console,
            )
            if live
            else None
        )
        tracker = _Tracker(console=console, progress=progress)
        with progress if progress is not None else contextlib.nullcontext():
            follower = asyncio.create_task(_follow(ledger, start, tracker))
            try:
                submitted = [
                    await ledger.submit(job_type, params, user=user)
                    for job_type, params, user in batch
                ]
                # Generous: as if every job ran alone, a dozen steps each.
                budget = 30.0 + len(submitted) * 15 * (pause + 0.01)
                final = await asyncio.gather(
                    *(ledger.wait(job.id, timeout=budget) for job in submitted)
                )
                tracker.stop_at = await ledger.head()
                if tracker.done:
                    follower.cancel()
                # The follower stops by itself once it has shown the head.
                (outcome,) = await asyncio.gather(follower, return_exceptions=True)
                if isinstance(outcome, Exception):
                    raise outcome
            finally:
                if not follower.done():
                    follower.cancel()
                    await asyncio.gather(follower, return_exceptions=True)
        head = await ledger.head()
        report = await ledger.verify()
    return DemoReport(
        path=where,
        jobs=tuple(final),
        events=head,
        new_events=head - start,
        marks=tracker.marks,
        verify=report,
    )
