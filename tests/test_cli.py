"""The ``jobledger`` command line, run in-process with ``main([...])`` on real
SQLite files, and once as a real process.

``main`` calls ``asyncio.run``, so these are plain (sync) tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

import jobledger
import jobledger.core
import jobledger.store
from jobledger.annotations import ANNOTATION_JOB_TYPES
from jobledger.annotations.demo import (
    DEFAULT_JOBS,
    JOB_TYPES,
    SAMPLES,
    DemoFetcher,
    DigestWorker,
    IndexWorker,
    ReadabilityWorker,
    run_demo,
)
from jobledger.cli import main
from jobledger.store import content_folder_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def plain_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """No colour codes and the CLI's own width for piped output, and the default log,
    whatever the CI sets."""
    for name in ("FORCE_COLOR", "COLUMNS", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JOBLEDGER_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


async def _jobs(db: Path) -> list[jobledger.Job]:
    async with jobledger.open(db) as ledger:
        return list(await ledger.list(limit=1000))


async def _verify(db: Path) -> jobledger.store.VerifyReport:
    async with jobledger.open(db) as ledger:
        return await ledger.verify()


async def _history(db: Path, job_id: str) -> list[str]:
    async with jobledger.open(db) as ledger:
        return [env.type for env in await ledger.history(job_id)]


def history_of(db: Path, job_id: str) -> list[str]:
    """The event types of a job's stream, in order."""
    return asyncio.run(_history(db, job_id))


def jobs_in(db: Path) -> list[jobledger.Job]:
    """The jobs of ``db``, newest first."""
    return asyncio.run(_jobs(db))


async def _envelopes(db: Path, job_id: str | None) -> list[jobledger.Envelope]:
    async with jobledger.open(db) as ledger:
        return [env async for env in ledger.events(job_id=job_id)]


def envelopes_in(db: Path, job_id: str | None = None) -> list[jobledger.Envelope]:
    """The envelopes of ``db`` (of one job's stream, with ``job_id``), in order."""
    return asyncio.run(_envelopes(db, job_id))


async def _digest(db: Path) -> jobledger.store.Head:
    async with jobledger.open(db) as ledger:
        return await ledger.digest()


def digest_of(db: Path) -> jobledger.store.Head:
    return asyncio.run(_digest(db))


async def _replay(db: Path, until_seq: int) -> jobledger.core.Projection:
    async with jobledger.open(db) as ledger:
        return await ledger.replay(until_seq=until_seq)


def copy_of(db: Path, to: Path) -> Path:
    """A copy of the log ``db`` at ``to`` (SQLite's backup: the WAL is
    included), with its content folder."""
    with (
        contextlib.closing(sqlite3.connect(db)) as source,
        contextlib.closing(sqlite3.connect(to)) as target,
    ):
        source.backup(target)
    shutil.copytree(content_folder_for(db), content_folder_for(to))
    return to


async def _marks(db: Path, resource_id: str) -> list[jobledger.Mark]:
    async with jobledger.open(db) as ledger:
        return await ledger.marks(resource_id)


def marks_in(db: Path, resource_id: str) -> list[jobledger.Mark]:
    """The live marks of ``resource_id`` in ``db``, in creation order."""
    return asyncio.run(_marks(db, resource_id))


async def _annotations(db: Path, resource_id: str) -> list[dict[str, object]]:
    async with jobledger.open(db) as ledger:
        return await ledger.annotations(resource_id)


async def _resources(db: Path) -> list[jobledger.Resource]:
    async with jobledger.open(db) as ledger:
        return await ledger.resources()


def resources_in(db: Path) -> list[jobledger.Resource]:
    return asyncio.run(_resources(db))


def lines_with(out: str, needle: str) -> list[str]:
    return [line for line in out.splitlines() if needle in line]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A log written by one fast demo run of the default batch, and the run's
    plain output; shared by the read-only tests."""
    db = tmp_path_factory.mktemp("cli") / "shared.db"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["demo", "--db", str(db), "--no-live", "--pause", "0"]) == 0
    return db, out.getvalue()


@pytest.fixture(scope="module")
def demo_db(demo_run: tuple[Path, str]) -> Path:
    return demo_run[0]


def test_demo_runs_the_jobs_and_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "demo.db"
    assert main(["demo", "--db", str(db), "--no-live", "--jobs", "4"]) == 0
    out = capsys.readouterr().out
    assert "offline: the annotation workers use the offline client (jobledger-offline)" in out
    assert "no model runs" in out
    assert "no model ran" in out
    assert "verify: ok" in out
    assert str(db) in out
    assert f"jobledger list --db {db}" in out
    assert f"jobledger marks analytical-engine --db {db} [--jsonld]" in out
    assert f"jobledger resources --db {db}" in out
    jobs = jobs_in(db)[::-1]  # in submission order
    assert len(jobs) == 4
    assert all(job.is_terminal for job in jobs)
    for job in jobs:
        assert job.id in out
    assert [(j.job_type, j.status, j.attempt) for j in jobs] == [
        ("highlight-annotation", "completed", 1),
        ("reference-annotation", "completed", 1),
        ("tag-annotation", "completed", 2),
        ("highlight-annotation", "failed", 1),
    ]
    highlight, reference, tag, missing = jobs
    assert highlight.result is not None
    assert highlight.result["offline"] is True
    assert highlight.result["generator"] == "jobledger-offline"
    assert highlight.result["created"] == 2
    assert missing.error_type == "NotFound"
    assert missing.error == "resource 'lost-chapter' not found"
    assert {job.user.id for job in jobs} == {"alice", "bob"}
    # The bundled documents are stored as resources; the marks are on them.
    assert [r.id for r in resources_in(db)] == list(SAMPLES)
    assert [m.job_id for m in marks_in(db, "nap-recall")] == [tag.id] * 14
    people = [m.exact for m in marks_in(db, "analytical-engine") if m.job_id == reference.id]
    assert {"Ada Byron", "Charles Babbage", "London", "IBM"} <= set(people)
    assert "Marks on analytical-engine (analytical-engine.md): 13" in out
    assert "Marks on nap-recall (nap-recall.md): 14" in out
    assert asyncio.run(_verify(db)).ok


def test_demo_plain_lines_follow_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "demo.db"
    assert main(["demo", "--db", str(db), "--no-live", "--jobs", "2", "--pause", "0"]) == 0
    out = capsys.readouterr().out
    highlight = next(j for j in jobs_in(db) if j.job_type == "highlight-annotation")
    mine = [line for line in out.splitlines() if f"  {highlight.id}  " in line]
    assert [line.split()[4] for line in mine] == [
        "created",
        "started",
        *["progress"] * 3,
        "mark",
        "mark",
        "completed",
    ]
    assert "mark on analytical-engine: highlighting 'Babbage showed his guests" in mine[5]
    # Every event of the run is shown once, in seq order: first the four
    # bundled documents as they are stored, then the jobs'.
    numbered = [line for line in out.splitlines() if line[:5].strip().isdigit()]
    assert [int(line.split()[0]) for line in numbered] == list(range(1, len(numbered) + 1))
    assert [line.split()[1:3] for line in numbered[:4]] == [[rid, "stored"] for rid in SAMPLES]


def test_demo_appends_unless_fresh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "demo.db"
    args = ["demo", "--db", str(db), "--no-live", "--jobs", "2", "--pause", "0"]
    assert main(args) == 0
    assert main(args) == 0
    assert len(jobs_in(db)) == 4
    assert len(resources_in(db)) == len(SAMPLES)  # stored once
    out = capsys.readouterr().out
    assert "(log head 0)" in out
    assert "appended by this run" in out
    # The second run lists only its own marks.
    assert out.count("Marks on analytical-engine (analytical-engine.md): 13") == 2
    assert len(marks_in(db, "analytical-engine")) == 26
    assert main([*args, "--fresh"]) == 0
    assert len(jobs_in(db)) == 2
    assert len(marks_in(db, "analytical-engine")) == 13
    assert "(log head 0)" in capsys.readouterr().out
    assert asyncio.run(_verify(db)).ok


def test_demo_fresh_removes_the_old_content_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "demo.db"
    args = ["demo", "--db", str(db), "--no-live", "--jobs", "1", "--pause", "0"]
    assert main(args) == 0
    stray = tmp_path / "demo.db.content" / "stray"
    stray.write_text("left by an older run")
    assert main([*args, "--fresh"]) == 0
    assert not stray.exists()
    assert (tmp_path / "demo.db.content").is_dir()
    assert main(["content", "analytical-engine", "--db", str(db)]) == 0
    assert capsys.readouterr().out.endswith(SAMPLES["analytical-engine"])


def test_demo_defaults_to_a_file_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--no-live", "--jobs", "1", "--pause", "0"]) == 0
    assert (tmp_path / "jobledger.db").is_file()
    assert str(tmp_path / "jobledger.db") in capsys.readouterr().out


def test_demo_shows_every_ending(demo_run: tuple[Path, str]) -> None:
    """The default batch runs the six annotation job types, retries one job,
    cancels one midway, and ends one partial and one skipped, besides the
    completed ones and the failed one."""
    db, out = demo_run
    jobs = jobs_in(db)
    assert len(jobs) == DEFAULT_JOBS
    assert {t.name for t in ANNOTATION_JOB_TYPES} <= {j.job_type for j in jobs}
    statuses = [job.status for job in jobs]
    for status in ("completed", "failed", "cancelled", "partial", "skipped"):
        assert status in statuses, status

    retried = [j for j in jobs if j.status == "completed" and j.attempt == 2]
    assert [j.job_type for j in retried] == ["tag-annotation"]
    assert retried[0].params["resourceId"] == "nap-recall"
    assert retried[0].max_retries == 2
    assert retried[0].retry == jobledger.RetryPolicy(base_delay=0.2, max_delay=0.5, jitter=False)
    assert retried[0].result is not None
    assert retried[0].result["byLabel"] == {
        "Introduction": 2,
        "Methods": 5,
        "Results": 3,
        "Discussion": 4,
    }
    history = history_of(db, retried[0].id)
    first_try = history[: history.index("job.retry_scheduled") + 1]
    assert first_try[:2] == ["job.created", "job.started"]
    assert "job.failed" not in history
    second_try = history[len(first_try) :]
    assert second_try[0] == "job.started"
    assert second_try[-1] == "job.completed"

    (failed,) = [j for j in jobs if j.status == "failed"]
    assert (failed.job_type, failed.params["resourceId"]) == (
        "highlight-annotation",
        "lost-chapter",
    )
    assert failed.max_retries == 0

    (cancelled,) = [j for j in jobs if j.status == "cancelled"]
    assert cancelled.job_type == "index"
    assert cancelled.progress is not None
    assert cancelled.progress.processed is not None
    assert cancelled.progress.total is not None
    assert 6 <= cancelled.progress.processed < cancelled.progress.total
    history = history_of(db, cancelled.id)
    assert history[-1] == "job.cancelled"
    assert "job.cancel_requested" in history
    assert history.index("job.cancel_requested") < history.index("job.cancelled")

    (partial,) = [j for j in jobs if j.status == "partial"]
    assert partial.job_type == "digest"
    assert partial.error == "1 of 3 sources unreadable: lost-chapter"
    assert partial.result is not None
    assert partial.result["unreadable"] == ["lost-chapter"]

    (skipped,) = [j for j in jobs if j.status == "skipped"]
    assert skipped.job_type == "readability"
    assert skipped.error == "boulangerie is French, not English"

    # The generation job wrote a resource and linked the reference mark to it.
    (generation,) = [j for j in jobs if j.job_type == "generation"]
    (reference,) = [j for j in jobs if j.job_type == "reference-annotation"]
    assert generation.status == "completed"
    assert generation.params["sourceResourceId"] == "analytical-engine"
    assert generation.result is not None
    written = generation.result["resourceId"]
    assert generation.result["resourceName"] == "Ada Byron"
    assert generation.result["offline"] is True
    (linked,) = [
        m for m in marks_in(db, "analytical-engine") if m.id == generation.result["linkedMarkId"]
    ]
    assert (linked.job_id, linked.exact, linked.motivation) == (
        reference.id,
        "Ada Byron",
        "linking",
    )
    assert linked.annotation["body"] == [
        {"type": "TextualBody", "value": "Person", "purpose": "tagging"},
        {"type": "SpecificResource", "source": written, "purpose": "linking"},
    ]
    (resource,) = [r for r in resources_in(db) if r.job_id is not None]
    assert (resource.id, resource.name, resource.job_id) == (written, "Ada Byron", generation.id)

    # The plain lines show the lifecycle as it happens.
    def lines_of(job: jobledger.Job) -> list[str]:
        return [line for line in out.splitlines() if f"  {job.id}  " in line]

    assert any("retry scheduled in 0.2 s" in line for line in lines_of(retried[0]))
    assert [line.split()[4] for line in lines_of(retried[0])].count("started") == 2
    assert any("cancel requested by alice" in line for line in lines_of(cancelled))
    assert lines_of(cancelled)[-1].split()[4] == "cancelled"
    assert lines_of(partial)[-1].split()[4] == "partial:"
    assert lines_of(skipped)[-1].split()[4] == "skipped:"
    assert any(f"mark {linked.id} linked to {written}" in line for line in lines_of(generation))
    # The summary counts every ending and says why each unhappy one happens.
    assert "jobs: 11 — 7 completed, 1 failed, 1 cancelled, 1 partial, 1 skipped; 1 retried" in out
    assert "marks created: 49" in out
    assert "retried after 0.2 s and completes on attempt 2" in out
    assert f"jobledger history {retried[0].id}" in out
    assert f"jobledger history {cancelled.id}" in out
    assert f"jobledger content {written}" in out
    # Then the marks per document, the written document, and who made them.
    assert "Marks on analytical-engine (analytical-engine.md): 15" in out
    assert "Marks on four-day-week (four-day-week.md): 20" in out
    assert "Marks on nap-recall (nap-recall.md): 14" in out
    assert "Marks on boulangerie" not in out
    (row,) = lines_with(out, "tagging: Person; → ")
    assert row.split()[:3] == ["linking", "76–85", "Ada"]
    toulmin = [line for line in lines_with(out, "argument-toulmin") if line.split()[0] == "tagging"]
    assert len(toulmin) == 17
    assert f"Written by job {generation.id}: {written} 'Ada Byron'" in out
    assert f"linked from mark {linked.id} on analytical-engine: 'Ada Byron'" in out
    assert "│ # Ada Byron" in out
    assert "made by jobledger-offline, the offline client: no model ran" in out


def test_list_shows_the_jobs(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jobs = jobs_in(demo_db)
    assert main(["list", "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    for job in jobs:
        assert job.id in out
    assert f"{DEFAULT_JOBS} job(s)" in out


def test_list_filters(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jobs = jobs_in(demo_db)
    failed = [j for j in jobs if j.status == "failed"]
    assert main(["list", "--db", str(demo_db), "--status", "failed"]) == 0
    out = capsys.readouterr().out
    assert [j.id for j in jobs if j.id in out] == [j.id for j in failed]

    assert main(["list", "--db", str(demo_db), "--status", "cancelled"]) == 0
    out = capsys.readouterr().out
    assert [j.job_type for j in jobs if j.id in out] == ["index"]

    assert main(["list", "--db", str(demo_db), "--user", "alice"]) == 0
    out = capsys.readouterr().out
    assert {j.user.id for j in jobs if j.id in out} == {"alice"}

    assert main(["list", "--db", str(demo_db), "--type", "comment-annotation"]) == 0
    out = capsys.readouterr().out
    assert {j.job_type for j in jobs if j.id in out} == {"comment-annotation"}

    assert main(["list", "--db", str(demo_db), "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert [j.id for j in jobs if j.id in out] == [jobs[0].id]
    assert "more match" in out

    assert main(["list", "--db", str(demo_db), "--user", "nobody"]) == 0
    assert "no jobs match" in capsys.readouterr().out


def test_show_prints_the_job(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = next(j for j in jobs_in(demo_db) if j.job_type == "comment-annotation")
    assert main(["show", job.id, "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    assert job.id in out
    assert "comment-annotation" in out
    assert "completed" in out
    assert '"resourceId":"analytical-engine"' in out
    assert '"tone":"explanatory"' in out
    assert '"found":2,"created":2' in out
    assert "0/2 60% creating 2 marks" in out  # the last report: then the marks


def test_show_prints_the_error_of_a_failed_job(
    demo_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = next(j for j in jobs_in(demo_db) if j.status == "failed")
    assert main(["show", job.id, "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    assert "failed" in out
    assert "resource 'lost-chapter' not found" in out
    assert "1 (max retries 0)" in out


def test_history_lists_the_events_in_order(
    demo_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = next(j for j in jobs_in(demo_db) if j.job_type == "comment-annotation")
    assert main(["history", job.id, "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    types = [word for word in out.split() if word.startswith("job.")]
    assert types == ["job.created", "job.started", *["job.progressed"] * 3, "job.completed"]
    assert "worker:CommentWorker" in out
    assert "10% fetching reading analytical-engine" in out
    assert "6 event(s)" in out


def test_history_of_a_retried_job(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = next(j for j in jobs_in(demo_db) if j.attempt == 2)
    assert main(["history", job.id, "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    assert "job.retry_scheduled" in out
    assert "attempt 1 failed (ConnectionError: connection reset" in out
    assert "while reading nap-recall (a flaky store)" in out
    assert "(in 0.20 s)" in out
    assert "attempt 2 claimed by TagWorker" in out
    assert main(["show", job.id, "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    assert "2 (max retries 2)" in out


def test_show_prints_a_partial_job(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = next(j for j in jobs_in(demo_db) if j.status == "partial")
    assert main(["show", job.id, "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    assert "partial" in out
    assert "1 of 3 sources unreadable: lost-chapter" in out
    assert '"unreadable":["lost-chapter"]' in out


def test_history_of_a_failed_job(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = next(j for j in jobs_in(demo_db) if j.status == "failed")
    assert main(["history", job.id, "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    types = [word for word in out.split() if word.startswith("job.")]
    assert types == ["job.created", "job.started", "job.progressed", "job.failed"]
    assert "NotFound: resource 'lost-chapter'" in out


def test_history_shows_the_attempt_of_each_event(
    demo_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = next(j for j in jobs_in(demo_db) if j.attempt == 2)
    assert main(["history", job.id, "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    assert "attempt" in lines_with(out, "what changed")[0]
    # seq, type, date, time, actor, attempt, what changed
    (created,) = lines_with(out, "job.created")
    assert created.split()[1:8] == [
        "job.created",
        *created.split()[2:4],
        "alice",
        "-",
        "tag-annotation",
        "for",
    ]
    started = lines_with(out, "job.started")
    assert [line.split()[4:6] for line in started] == [
        ["worker:TagWorker", "1"],
        ["worker:TagWorker", "2"],
    ]
    assert lines_with(out, "job.retry_scheduled")[0].split()[5:8] == ["1", "attempt", "1"]
    (completed,) = lines_with(out, "job.completed")
    assert completed.split()[5:8] == ["2", "attempt", "2,"]


# -- marks, resources and content -------------------------------------------------


def test_marks_lists_a_resources_marks(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marks = marks_in(demo_db, "analytical-engine")
    assert main(["marks", "analytical-engine", "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    assert "Marks on analytical-engine" in out
    assert out.endswith(f"{len(marks)} mark(s), in order of creation\n")
    lines = out.splitlines()
    rows = [next(i for i, line in enumerate(lines) if m.id in line) for m in marks]
    assert [lines[i].split()[:3] for i in rows] == [[m.id, m.motivation, _span(m)] for m in marks]
    # Under each mark's id, the job that made it.
    assert [lines[i + 1].split()[0] for i in rows] == [m.job_id for m in marks]
    assert sorted({m.motivation for m in marks}) == ["commenting", "highlighting", "linking"]
    (ada,) = [m for m in marks if m.exact == "Ada Byron"]
    ada_row = out[out.index(ada.id) :]
    assert "tagging: Person" in ada_row
    written = next(r for r in resources_in(demo_db) if r.job_id is not None)
    assert f"→ {written.id}" in ada_row


def _span(mark: jobledger.Mark) -> str:
    position = mark.annotation["target"]["selector"][0]
    return f"{position['start']}–{position['end']}"


def test_marks_as_jsonld(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["marks", "four-day-week", "--db", str(demo_db), "--jsonld"]) == 0
    documents = json.loads(capsys.readouterr().out)
    assert documents == asyncio.run(_annotations(demo_db, "four-day-week"))
    assert len(documents) == 20
    text = SAMPLES["four-day-week"]
    for document in documents:
        assert document["@context"] == "http://www.w3.org/ns/anno.jsonld"
        assert document["type"] == "Annotation"
        assert document["target"]["source"] == "urn:jobledger:resource:four-day-week"
        position, quote = document["target"]["selector"]
        assert text[position["start"] : position["end"]] == quote["exact"]
        assert document["generator"]["name"].endswith("with jobledger-offline")
    assert {d["motivation"] for d in documents} == {"assessing", "tagging"}


def test_marks_of_a_resource_without_marks(
    demo_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["marks", "boulangerie", "--db", str(demo_db)]) == 0
    assert capsys.readouterr().out == f"no marks on 'boulangerie' in {demo_db}\n"
    assert main(["marks", "boulangerie", "--db", str(demo_db), "--jsonld"]) == 0
    assert capsys.readouterr().out == "[]\n"


def test_resources_lists_the_documents(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    resources = resources_in(demo_db)
    assert main(["resources", "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    rows = [next(line for line in out.splitlines() if r.id in line) for r in resources]
    assert [row.split()[:5] for row in rows] == [
        [r.id, r.name, "text/markdown", str(r.size), r.job_id or "demo"]
        for r in resources
        if " " not in r.name
    ] + [[resources[-1].id, "Ada", "Byron", "text/markdown", str(resources[-1].size)]]
    assert out.endswith("5 resource(s), oldest first\n")
    assert main(["resources", "--db", str(demo_db), "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert [r.id for r in resources if r.id in out] == [r.id for r in resources[:2]]
    assert out.endswith("2 resource(s), oldest first; more exist (raise --limit)\n")


def test_content_prints_the_bytes(
    demo_db: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert main(["content", "nap-recall", "--db", str(demo_db)]) == 0
    assert capsysbinary.readouterr().out == SAMPLES["nap-recall"].encode()
    written = next(r for r in resources_in(demo_db) if r.job_id is not None)
    assert main(["content", written.id, "--db", str(demo_db)]) == 0
    data = capsysbinary.readouterr().out
    assert len(data) == written.size
    assert data.startswith(b"# Ada Byron\n")


def test_content_of_an_unknown_resource_is_exit_3_and_of_a_damaged_one_exit_5(
    demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["content", "nope", "--db", str(demo_db)]) == 3
    captured = capsys.readouterr()
    assert captured.err == f"jobledger: error: resource 'nope' not found in {demo_db}\n"
    assert captured.out == ""
    db = copy_of(demo_db, tmp_path / "copy.db")
    [stored] = [
        p
        for p in Path(f"{db}.content").rglob("*")
        if p.is_file() and p.read_bytes() == SAMPLES["boulangerie"].encode()
    ]
    stored.write_bytes(b"edited")
    assert main(["content", "boulangerie", "--db", str(db)]) == 5
    captured = capsys.readouterr()
    assert captured.err.startswith("jobledger: error: CorruptionError: ")
    assert captured.out == ""


# -- tail ----------------------------------------------------------------------


def test_tail_catches_up_from_a_seq_and_stops_after_count(
    demo_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tail", "--db", str(demo_db), "--after", "0", "--count", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    first = envelopes_in(demo_db)[:3]
    assert len(lines) == 3
    for line, env in zip(lines, first, strict=True):
        assert line.split()[0] == str(env.seq)
        assert line.split()[3:6] == [env.type, env.stream, env.actor]
    digest = first[0].data.digest  # type: ignore[attr-defined]
    assert lines[0].split()[3:] == [
        "resource.created",
        "analytical-engine",
        "demo",
        "'analytical-engine.md',",
        "text/markdown,",
        f"{len(SAMPLES['analytical-engine'].encode())}",
        "bytes,",
        f"{digest[:19]}…",
    ]

    assert main(["tail", "--db", str(demo_db), "--after", "5", "--count", "2"]) == 0
    assert [int(line.split()[0]) for line in capsys.readouterr().out.splitlines()] == [6, 7]


def test_tail_of_one_job_type(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A job type's events are its jobs' and their marks'."""
    (job,) = [j for j in jobs_in(demo_db) if j.job_type == "comment-annotation"]
    events = [e for e in envelopes_in(demo_db) if getattr(e.data, "job_id", None) == job.id]
    marks = [e.stream for e in events if e.type == "mark.created"]
    assert len(marks) == 2
    argv = ["tail", "--db", str(demo_db), "--type", "comment-annotation", "--after", "0"]
    assert main([*argv, "--count", str(len(events))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [int(line.split()[0]) for line in lines] == [env.seq for env in events]
    assert {line.split()[4] for line in lines} == {job.id, *marks}
    assert "(commenting)" in lines_with("\n".join(lines), "mark.created")[0]


def test_tail_of_an_ended_job_stops_at_its_end(
    demo_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = next(j for j in jobs_in(demo_db) if j.attempt == 2)
    assert main(["tail", job.id, "--db", str(demo_db), "--after", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[3] for line in lines] == history_of(demo_db, job.id)
    assert {line.split()[4] for line in lines} == {job.id}
    assert lines[-1].split()[3] == "job.completed"
    assert (
        "attempt 1 failed (ConnectionError: connection reset"
        in lines_with("\n".join(lines), "job.retry_scheduled")[0]
    )

    # From the head (the default), an ended job has nothing more to show.
    assert main(["tail", job.id, "--db", str(demo_db)]) == 0
    head = digest_of(demo_db).seq
    assert capsys.readouterr().out == (
        f"job {job.id} had already ended (completed); no events after seq {head}\n"
    )

    assert main(["tail", job.id, "--db", str(demo_db), "--after", "0", "--count", "2"]) == 0
    assert [line.split()[3] for line in capsys.readouterr().out.splitlines()] == [
        "job.created",
        "job.started",
    ]


def test_tail_of_a_job_on_a_terminal_shows_its_progress_bar(
    demo_db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    job = next(j for j in jobs_in(demo_db) if j.job_type == "comment-annotation")
    assert main(["tail", job.id, "--db", str(demo_db), "--after", "0"]) == 0
    out = capsys.readouterr().out
    assert "job.completed" in out
    # The bar is redrawn in place: after a carriage return, a clear-line code.
    frames = [frame.removeprefix("\x1b[2K") for frame in out.replace("\r", "\n").split("\n")]
    bar = [frame for frame in frames if frame.startswith(job.id)][-1]
    assert "━" in bar
    assert bar.rstrip().endswith("100%")


class _Watched(io.StringIO):
    """Standard output that says when a line with ``needle`` has been written."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.seen = threading.Event()

    def write(self, text: str) -> int:
        if self.needle in text:
            self.seen.set()
        return super().write(text)


async def test_tail_follows_a_job_as_another_ledger_runs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "live.db"
    text = SAMPLES["four-day-week"]
    async with jobledger.open(db, job_types=JOB_TYPES) as ledger:
        await ledger.create_resource("essay.md", text, resource_id="essay")
        job = await ledger.submit("readability", {"doc": "essay"}, user="alice")
    out = _Watched("job.created")
    monkeypatch.setattr(sys, "stdout", out)
    tail = asyncio.ensure_future(
        asyncio.to_thread(main, ["tail", job.id, "--db", str(db), "--after", "0"])
    )
    # The tail has shown the pending job and waits for more: now run it.
    assert await asyncio.to_thread(out.seen.wait, 30)
    assert not tail.done()
    fetcher = DemoFetcher()
    async with jobledger.open(db, workers=[ReadabilityWorker(fetcher, pause=0)]) as ledger:
        fetcher.bind(ledger)
        done = await ledger.wait(job.id, timeout=30)
    assert done.status == "completed"
    assert done.result is not None
    assert fetcher.reads == 1
    assert await asyncio.wait_for(tail, 30) == 0  # it ends by itself, at the job's end
    lines = out.getvalue().splitlines()
    assert [line.split()[3] for line in lines] == await _history(db, job.id)
    assert lines[-1].split()[3] == "job.completed"
    assert f'"words":{done.result["words"]}' in lines[-1]


# -- replay --------------------------------------------------------------------


def test_replay_shows_the_state_at_a_seq(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = next(j for j in jobs_in(demo_db) if j.attempt == 2)
    retry = next(e for e in envelopes_in(demo_db, job.id) if e.type == "job.retry_scheduled")
    head = digest_of(demo_db).seq
    then = asyncio.run(_replay(demo_db, retry.seq))

    assert main(["replay", "--db", str(demo_db), "--until-seq", str(retry.seq)]) == 0
    out = capsys.readouterr().out
    assert f"Jobs at seq {retry.seq}, in order of creation" in out
    (row,) = lines_with(out, job.id)
    assert row.split()[:5] == [job.id, "tag-annotation", "alice", "pending", "10%"]
    assert out.endswith(
        f"{len(then.jobs)} job(s), {len(then.marks)} mark(s), {len(then.assets)} asset(s) "
        f"at seq {retry.seq} (the log's head is {head})\n"
    )
    ids = [j.id for j in then.jobs.values()]
    assert [j for j in ids if j in out] == ids
    assert [out.index(j) for j in ids] == sorted(out.index(j) for j in ids)

    assert main(["replay", "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    (row,) = lines_with(out, job.id)
    assert row.split()[:5] == [job.id, "tag-annotation", "alice", "completed", "2"]
    assert f"{DEFAULT_JOBS} job(s), " in out
    assert f"at seq {head} (the log's head is {head})" in out


def test_replay_until_a_time(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = digest_of(demo_db).seq
    assert main(["replay", "--db", str(demo_db), "--until", "2000-01-01T00:00:00+00:00"]) == 0
    assert capsys.readouterr().out == (
        f"no jobs at seq 0\n0 job(s), 0 mark(s), 0 asset(s) at seq 0 (the log's head is {head})\n"
    )
    assert main(["replay", "--db", str(demo_db), "--until", "2999-12-31T23:59:59Z"]) == 0
    assert f"at seq {head} (the log's head is {head})" in capsys.readouterr().out


@pytest.mark.parametrize(
    "until",
    [
        ["--until", "2025-01-31T12:00:00"],
        ["--until", "yesterday"],
        ["--until-seq", "-1"],
        ["--until-seq", "3", "--until", "2025-01-31T12:00:00Z"],
    ],
)
def test_replay_refuses_a_bad_point(
    demo_db: Path, capsys: pytest.CaptureFixture[str], until: list[str]
) -> None:
    assert main(["replay", "--db", str(demo_db), *until]) == 2
    captured = capsys.readouterr()
    assert "usage: jobledger replay" in captured.err
    assert captured.out == ""


def test_a_naive_time_is_refused_with_a_reason(
    demo_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", "--db", str(demo_db), "--until", "2025-01-31T12:00:00"]) == 2
    assert "a time needs its offset (Z, +02:00, ...)" in capsys.readouterr().err


# -- verify and digest -----------------------------------------------------------


def test_verify_a_sound_log(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = digest_of(demo_db)
    assert main(["verify", "--db", str(demo_db)]) == 0
    assert capsys.readouterr().out == (
        f"verify: ok (hash chain intact over {head.seq} events, read model equals a replay; "
        f"head {head.text})\n"
    )


def test_verify_reports_an_edited_entry(
    demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = copy_of(demo_db, tmp_path / "edited.db")
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "UPDATE events SET data = CAST(' ' || CAST(data AS TEXT) AS BLOB) WHERE seq = 3"
        )
    assert main(["verify", "--db", str(db)]) == 1
    out = capsys.readouterr().out
    assert lines_with(out, "hash does not match")[0].split()[:2] == ["3", "hash"]
    assert out.endswith("verify: 1 problem(s)\n")


def test_digest_prints_the_head(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = digest_of(demo_db)
    assert main(["digest", "--db", str(demo_db)]) == 0
    assert capsys.readouterr().out == f"{head.seq}:{head.hash}\n"
    assert jobledger.store.Head.parse(f"{head.seq}:{head.hash}") == head


def test_verify_with_a_digest(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(demo_db)
    assert main(["digest", "--db", db]) == 0
    digest = capsys.readouterr().out.strip()
    head = jobledger.store.Head.parse(digest)
    assert main(["verify", "--db", db, "--digest", digest]) == 0
    assert f"; it still holds the digest of seq {head.seq}; head {digest})" in (
        capsys.readouterr().out
    )

    # A log rewritten before the digest's seq (here: a digest that it never held).
    assert main(["verify", "--db", db, "--digest", f"5:{'0' * 64}"]) == 1
    out = capsys.readouterr().out
    assert lines_with(out, "000000")[0].split()[:2] == ["5", "digest"]
    assert out.endswith("verify: 1 problem(s)\n")

    # A log that ends before the digest's seq.
    assert main(["verify", "--db", db, "--digest", f"{head.seq + 1}:{head.hash}"]) == 1
    assert lines_with(capsys.readouterr().out, "digest")[0].split()[:2] == [
        str(head.seq + 1),
        "digest",
    ]


@pytest.mark.parametrize("text", ["garbage", "12", "12:abc", f"x:{'0' * 64}"])
def test_verify_refuses_a_malformed_digest(
    demo_db: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    assert main(["verify", "--db", str(demo_db), "--digest", text]) == 2
    err = capsys.readouterr().err
    assert "usage: jobledger verify" in err
    assert "not a digest (SEQ:HASH)" in err


# -- export and import -----------------------------------------------------------


def test_export_writes_ndjson(
    demo_db: Path, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    head = digest_of(demo_db)
    out = tmp_path / "log.ndjson"
    assert main(["export", "--db", str(demo_db), "--out", str(out)]) == 0
    assert capsysbinary.readouterr().out == f"exported {head.seq} events to {out}\n".encode()
    lines = out.read_bytes().splitlines(keepends=True)
    assert all(line.endswith(b"\n") for line in lines)
    entries = [json.loads(line) for line in lines]
    assert [e["seq"] for e in entries] == list(range(1, head.seq + 1))
    assert entries[-1]["hash"] == head.hash
    assert [e["type"] for e in entries] == [env.type for env in envelopes_in(demo_db)]

    assert main(["export", "--db", str(demo_db)]) == 0
    assert capsysbinary.readouterr().out == out.read_bytes()

    assert main(["export", "--db", str(demo_db), "--after", str(head.seq - 2)]) == 0
    assert capsysbinary.readouterr().out == b"".join(lines[-2:])


def test_import_rebuilds_the_log_in_a_new_file(
    demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "log.ndjson"
    assert main(["export", "--db", str(demo_db), "--out", str(export)]) == 0
    capsys.readouterr()
    db = tmp_path / "copy.db"
    head = digest_of(demo_db)
    bare = str(tmp_path / "bare.db")
    assert main(["import", str(export), "--db", bare]) == 1  # the content is not in the log
    assert "is missing" in capsys.readouterr().out
    content = str(content_folder_for(demo_db))
    assert main(["import", str(export), "--db", str(db), "--content", content]) == 0
    assert capsys.readouterr().out == f"imported {head.seq} events; verify: ok\n"
    assert digest_of(db) == head
    assert jobs_in(db) == jobs_in(demo_db)

    # Only into an empty log: the second import is refused and changes nothing.
    assert main(["import", str(export), "--db", str(db)]) == 2
    captured = capsys.readouterr()
    assert "jobledger: error: ValidationError: " in captured.err
    assert "not empty" in captured.err
    assert captured.out == ""
    assert digest_of(db) == head


def test_import_reads_standard_input(
    demo_db: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    export = tmp_path / "log.ndjson"
    assert main(["export", "--db", str(demo_db), "--out", str(export)]) == 0
    capsys.readouterr()
    with export.open("rb") as stdin:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stdin))
        content = str(content_folder_for(demo_db))
        assert main(["import", "-", "--db", str(tmp_path / "piped.db"), "--content", content]) == 0
    assert capsys.readouterr().out.endswith("; verify: ok\n")
    assert digest_of(tmp_path / "piped.db") == digest_of(demo_db)


def _broken_chain(export: bytes) -> bytes:
    lines = export.splitlines(keepends=True)
    entry = json.loads(lines[2])
    entry["hash"] = "f" * 64
    lines[2] = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
    return b"".join(lines)


@pytest.mark.parametrize(
    "damage",
    [
        lambda export: export + b"not json\n",
        lambda export: export.splitlines(keepends=True)[1] + export,
        _broken_chain,
    ],
    ids=["a malformed line", "a seq out of turn", "a hash that does not chain"],
)
def test_a_refused_import_leaves_no_file(
    demo_db: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[bytes], bytes],
) -> None:
    export = tmp_path / "log.ndjson"
    assert main(["export", "--db", str(demo_db), "--out", str(export)]) == 0
    export.write_bytes(damage(export.read_bytes()))
    capsys.readouterr()
    db = tmp_path / "new.db"
    assert main(["import", str(export), "--db", str(db)]) == 2
    captured = capsys.readouterr()
    assert "jobledger: error: ValidationError: " in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""
    assert sorted(os.listdir(tmp_path)) == ["log.ndjson"]


def test_import_of_a_missing_file_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "new.db"
    assert main(["import", str(tmp_path / "nothing.ndjson"), "--db", str(db)]) == 2
    assert f"jobledger: error: no file at {tmp_path / 'nothing.ndjson'}" in (
        capsys.readouterr().err
    )
    assert os.listdir(tmp_path) == []


def test_import_into_a_file_that_is_not_a_log(
    demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "log.ndjson"
    assert main(["export", "--db", str(demo_db), "--out", str(export)]) == 0
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n")
    assert main(["import", str(export), "--db", str(notes)]) == 2
    assert "NotALog" in capsys.readouterr().err
    assert notes.read_text() == "not a database\n"


@pytest.mark.parametrize(
    "command",
    [
        ["list"],
        ["show", "job_x"],
        ["history", "job_x"],
        ["marks", "doc"],
        ["resources"],
        ["content", "doc"],
        ["tail"],
        ["tail", "job_x"],
        ["replay"],
        ["verify"],
        ["digest"],
        ["export"],
    ],
)
def test_a_missing_file_is_exit_2_and_is_not_created(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    missing = tmp_path / "nothing-here.db"
    assert main([*command, "--db", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "no log file" in err
    assert str(missing) in err
    assert not missing.exists()
    monkeypatch.chdir(tmp_path)
    assert main(command) == 2  # the default, jobledger.db, is missing too
    assert "jobledger.db" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("command", ["show", "history", "tail"])
def test_an_unknown_job_is_exit_3(
    demo_db: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    assert main([command, "job_NOPE", "--db", str(demo_db)]) == 3
    captured = capsys.readouterr()
    assert "job 'job_NOPE' not found" in captured.err
    assert captured.out == ""


def test_a_file_that_is_not_a_log_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    assert main(["list", "--db", str(text)]) == 2
    assert main(["demo", "--db", str(text), "--no-live"]) == 2
    err = capsys.readouterr().err
    assert err.count("NotALog") == 2
    assert "Traceback" not in err
    assert text.read_text() == "not a database\n"


def test_usage_errors_return_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["list", "--status", "bogus"]) == 2
    assert main(["demo", "--jobs", "0"]) == 2
    assert main(["tail", "--count", "0"]) == 2
    assert main(["tail", "--after", "x"]) == 2
    assert main(["export", "--after", "-1"]) == 2
    assert main(["import"]) == 2
    assert main(["frobnicate"]) == 2
    assert "usage: jobledger" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out


async def test_run_demo_returns_a_report(tmp_path: Path) -> None:
    output = io.StringIO()
    report = await run_demo(tmp_path / "r.db", jobs=12, pause=0, console=Console(file=output))
    assert "jobledger demo: 12 jobs" in output.getvalue()
    assert [(job.job_type, job.status) for job in report.jobs] == [
        ("highlight-annotation", "completed"),
        ("reference-annotation", "completed"),
        ("tag-annotation", "completed"),
        ("highlight-annotation", "failed"),
        ("index", "cancelled"),
        ("digest", "partial"),
        ("readability", "skipped"),
        ("generation", "completed"),
        ("tag-annotation", "completed"),
        ("comment-annotation", "completed"),
        ("assessment-annotation", "completed"),
        ("readability", "completed"),
    ]
    assert [job.attempt for job in report.jobs] == [1, 1, 2, *[1] * 9]
    assert report.verify.ok
    assert report.events == report.new_events == report.verify.events
    assert report.marks == 49
    assert (report.generator, report.offline) == ("jobledger-offline", True)
    assert report.path == str(tmp_path / "r.db")
    documents = {d.resource.id: d for d in report.documents}
    assert list(documents)[:4] == list(SAMPLES)
    assert {rid: len(d.marks) for rid, d in documents.items()} == {
        "analytical-engine": 15,
        "boulangerie": 0,
        "four-day-week": 20,
        "nap-recall": 14,
        report.jobs[7].result["resourceId"]: 0,  # type: ignore[index]
    }
    assert sum(len(d.marks) for d in report.documents) == report.marks
    for rid, text in SAMPLES.items():
        assert documents[rid].content == text
        for mark in documents[rid].marks:
            # Every quote is the text at its span.
            [position, quote] = mark.annotation["target"]["selector"]
            assert text[position["start"] : position["end"]] == quote["exact"] == mark.exact
    written = report.documents[-1]
    assert written.resource.job_id == report.jobs[7].id
    assert written.content.startswith("# Ada Byron\n")
    assert "no model wrote it" in written.content
    assert report.jobs[11].result is not None
    assert report.jobs[11].result["doc"] == "four-day-week"


def test_the_demo_workers_declare_their_types() -> None:
    fetcher = DemoFetcher()
    assert IndexWorker(fetcher).job_types == ("index",)
    assert DigestWorker(fetcher).job_types == ("digest",)
    assert ReadabilityWorker(fetcher, pause=0).job_types == ("readability",)
    with pytest.raises(ValueError, match="pause"):
        IndexWorker(fetcher, pause=-1)
    with pytest.raises(ValueError, match="latency"):
        DemoFetcher(latency=-1)
    assert [t.name for t in JOB_TYPES] == [
        *(t.name for t in ANNOTATION_JOB_TYPES),
        "index",
        "digest",
        "readability",
    ]


async def test_the_demo_job_types_check_params_at_submit() -> None:
    async with jobledger.open(job_types=JOB_TYPES) as ledger:
        with pytest.raises(jobledger.ValidationError, match="docs"):
            await ledger.submit("index", {"docs": []})
        with pytest.raises(jobledger.ValidationError, match="doc"):
            await ledger.submit("readability", {})
        with pytest.raises(jobledger.ValidationError, match="density"):
            await ledger.submit("highlight-annotation", {"resourceId": "x", "density": 0})
        job = await ledger.submit("tag-annotation", {"resourceId": "x", "schemaId": "legal-irac"})
        assert job.params == {"resourceId": "x", "schemaId": "legal-irac", "categories": None}


async def test_the_demo_fetcher_reads_the_ledger_and_drops_the_first_flaky_read() -> None:
    fetcher = DemoFetcher(flaky=["a"])
    async with jobledger.open() as ledger:
        await ledger.create_resource("a.md", "Alpha.", resource_id="a")
        reading = asyncio.ensure_future(fetcher.fetch("a"))
        await asyncio.sleep(0)  # one turn of the loop (not a wait for time): it starts
        assert not reading.done()
        fetcher.bind(ledger)
        with pytest.raises(ConnectionError, match="connection reset while reading a"):
            await reading
        assert await fetcher.fetch("a") == "Alpha."
        with pytest.raises(jobledger.NotFound):
            await fetcher.fetch("b")
    assert fetcher.reads == 3


def test_the_samples_are_package_data() -> None:
    """Every bundled document is in the wheel: pyproject's package-data
    takes ``samples/*.md`` of the ``jobledger.annotations`` package."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "samples/*.md" in config["tool"]["setuptools"]["package-data"]["jobledger.annotations"]
    files = sorted(p.stem for p in (ROOT / "annotations" / "samples").glob("*.md"))
    assert (
        files
        == list(SAMPLES)
        == ["analytical-engine", "boulangerie", "four-day-week", "nap-recall"]
    )
    for text in SAMPLES.values():
        assert text.startswith("# ") and text.endswith("\n")


def test_the_console_script_runs(tmp_path: Path) -> None:
    db = tmp_path / "sub.db"
    env = {k: v for k, v in os.environ.items() if k not in {"FORCE_COLOR", "COLUMNS"}}
    demo = subprocess.run(
        [sys.executable, "-m", "jobledger.cli", "demo", "--db", str(db), "--jobs", "2"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    assert "verify: ok" in demo.stdout
    assert "  job_" in demo.stdout  # not a terminal: plain lines, no live bars
    listing = subprocess.run(
        [sys.executable, "-m", "jobledger.cli", "list", "--db", str(db)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert listing.returncode == 0, listing.stderr
    assert all(job.id in listing.stdout for job in jobs_in(db))
    missing = subprocess.run(
        [sys.executable, "-m", "jobledger.cli", "show", "job_x"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2
    assert "no log file" in missing.stderr


def test_import_with_a_missing_content_folder_is_a_usage_error(
    demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "log.ndjson"
    assert main(["export", "--db", str(demo_db), "--out", str(export)]) == 0
    capsys.readouterr()
    db = tmp_path / "new.db"
    missing = tmp_path / "nowhere.content"
    assert main(["import", str(export), "--db", str(db), "--content", str(missing)]) == 2
    assert capsys.readouterr().err == f"jobledger: error: no file at {missing}\n"
    assert not db.exists()
    assert main(["resources", "--db", str(demo_db), "--limit", "10001"]) == 2
