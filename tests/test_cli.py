"""The ``jobledger`` command line, run in-process with ``main([...])`` on real
SQLite files, and once as a real process.

``main`` calls ``asyncio.run``, so these are plain (sync) tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

import jobledger
from jobledger.cli import main
from jobledger.demo import (
    DEFAULT_JOBS,
    JOB_TYPES,
    ChecksumWorker,
    DigestWorker,
    FetchWorker,
    HighlightWorker,
    IndexWorker,
    ReadabilityWorker,
    SummarizeWorker,
    WordCountWorker,
    run_demo,
)


@pytest.fixture(autouse=True)
def plain_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """No colour codes and the CLI's own width for piped output, whatever the CI sets."""
    for name in ("FORCE_COLOR", "COLUMNS", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


async def _jobs(db: Path) -> list[jobledger.Job]:
    async with jobledger.open(db) as ledger:
        return list(await ledger.list(limit=1000))


async def _verify(db: Path) -> jobledger.VerifyReport:
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
    assert "completed" in out
    assert "failed" in out
    assert "verify: ok" in out
    assert str(db) in out
    assert f"jobledger list --db {db}" in out
    jobs = jobs_in(db)
    assert len(jobs) == 4
    assert all(job.is_terminal for job in jobs)
    for job in jobs:
        assert job.id in out
    by_type = {job.job_type: job for job in jobs}
    assert set(by_type) == {"word-count", "highlight", "fetch", "summarize"}
    assert by_type["fetch"].status == "completed"
    assert by_type["fetch"].attempt == 2
    assert by_type["summarize"].status == "failed"
    assert "no sentences" in (by_type["summarize"].error or "")
    assert by_type["word-count"].status == "completed"
    assert by_type["word-count"].result == {"doc": "doc-rivers", "sentences": 6, "words": 89}
    assert {job.user.id for job in jobs} == {"alice", "bob"}
    assert asyncio.run(_verify(db)).ok


def test_demo_plain_lines_follow_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "demo.db"
    assert main(["demo", "--db", str(db), "--no-live", "--jobs", "2", "--pause", "0"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "  job_" in line]
    word_count = next(j for j in jobs_in(db) if j.job_type == "word-count")
    mine = [line for line in lines if word_count.id in line]
    assert [line.split()[4] for line in mine] == [
        "created",
        "started",
        *["progress"] * 6,
        "completed",
    ]
    # Every event of the run is shown once, in seq order.
    assert [int(line.split()[0]) for line in lines] == list(range(1, len(lines) + 1))


def test_demo_appends_unless_fresh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "demo.db"
    args = ["demo", "--db", str(db), "--no-live", "--jobs", "2", "--pause", "0"]
    assert main(args) == 0
    assert main(args) == 0
    assert len(jobs_in(db)) == 4
    out = capsys.readouterr().out
    assert "(log head 0)" in out
    assert "appended by this run" in out
    assert main([*args, "--fresh"]) == 0
    assert len(jobs_in(db)) == 2
    assert "(log head 0)" in capsys.readouterr().out
    assert asyncio.run(_verify(db)).ok


def test_demo_defaults_to_a_file_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--no-live", "--jobs", "1", "--pause", "0"]) == 0
    assert (tmp_path / "jobledger-demo.db").is_file()
    assert str(tmp_path / "jobledger-demo.db") in capsys.readouterr().out


def test_demo_shows_every_ending(demo_run: tuple[Path, str]) -> None:
    """The default batch retries one job, cancels one midway, and ends one
    partial and one skipped, besides the completed ones and the failed one."""
    db, out = demo_run
    jobs = jobs_in(db)
    assert len(jobs) == DEFAULT_JOBS
    statuses = [job.status for job in jobs]
    for status in ("completed", "failed", "cancelled", "partial", "skipped"):
        assert status in statuses, status

    retried = [j for j in jobs if j.status == "completed" and j.attempt == 2]
    assert [j.job_type for j in retried] == ["fetch"]
    assert retried[0].max_retries == 2
    assert retried[0].retry == jobledger.RetryPolicy(base_delay=0.2, max_delay=0.5, jitter=False)
    assert retried[0].result == {"doc": "doc-ledgers", "bytes": 588, "attempt": 2}
    history = history_of(db, retried[0].id)
    first_try = history[: history.index("job.retry_scheduled") + 1]
    assert first_try[:2] == ["job.created", "job.started"]
    assert "job.failed" not in history
    second_try = history[len(first_try) :]
    assert second_try[0] == "job.started"
    assert second_try[-1] == "job.completed"

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
    assert partial.error == "2 of 5 sources unreadable: doc-blank, doc-atlantis"
    assert partial.result is not None
    assert partial.result["unreadable"] == ["doc-blank", "doc-atlantis"]

    (skipped,) = [j for j in jobs if j.status == "skipped"]
    assert skipped.job_type == "readability"
    assert skipped.error == "doc-boulangerie is French, not English"

    # The plain lines show the lifecycle as it happens.
    def lines_of(job: jobledger.Job) -> list[str]:
        return [line for line in out.splitlines() if f"  {job.id}  " in line]

    assert any("retry scheduled in 0.2 s" in line for line in lines_of(retried[0]))
    assert [line.split()[4] for line in lines_of(retried[0])].count("started") == 2
    assert any("cancel requested by alice" in line for line in lines_of(cancelled))
    assert lines_of(cancelled)[-1].split()[4] == "cancelled"
    assert lines_of(partial)[-1].split()[4] == "partial:"
    assert lines_of(skipped)[-1].split()[4] == "skipped:"
    # The summary counts every ending and says why each unhappy one happens.
    assert "jobs: 10 — 6 completed, 1 failed, 1 cancelled, 1 partial, 1 skipped; 1 retried" in out
    assert "retried after 0.2 s and completes on attempt 2" in out
    assert f"jobledger history {retried[0].id}" in out
    assert f"jobledger history {cancelled.id}" in out


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

    assert main(["list", "--db", str(demo_db), "--type", "checksum"]) == 0
    out = capsys.readouterr().out
    assert {j.job_type for j in jobs if j.id in out} == {"checksum"}

    assert main(["list", "--db", str(demo_db), "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert [j.id for j in jobs if j.id in out] == [jobs[0].id]
    assert "more match" in out

    assert main(["list", "--db", str(demo_db), "--user", "nobody"]) == 0
    assert "no jobs match" in capsys.readouterr().out


def test_show_prints_the_job(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = next(j for j in jobs_in(demo_db) if j.params.get("doc") == "doc-bees")
    assert job.job_type == "highlight"
    assert main(["show", job.id, "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    assert job.id in out
    assert "highlight" in out
    assert "completed" in out
    assert '"keywords":["hive","queen"]' in out
    assert '"highlightsFound":7' in out
    assert "6/6" in out


def test_show_prints_the_error_of_a_failed_job(
    demo_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = next(j for j in jobs_in(demo_db) if j.status == "failed")
    assert main(["show", job.id, "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    assert "failed" in out
    assert "document 'doc-blank' has no sentences to summarize" in out


def test_history_lists_the_events_in_order(
    demo_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = next(j for j in jobs_in(demo_db) if j.job_type == "checksum")
    assert main(["history", job.id, "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    types = [word for word in out.split() if word.startswith("job.")]
    assert types == ["job.created", "job.started", *["job.progressed"] * 7, "job.completed"]
    assert "worker:ChecksumWorker" in out
    assert "10 event(s)" in out


def test_history_of_a_retried_job(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = next(j for j in jobs_in(demo_db) if j.attempt == 2)
    assert main(["history", job.id, "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    assert "job.retry_scheduled" in out
    assert "attempt 1 failed (ConnectionError: connection reset" in out
    assert "(in 0.20 s)" in out
    assert "attempt 2 claimed by FetchWorker" in out
    assert main(["show", job.id, "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    assert "2 (max retries 2)" in out


def test_show_prints_a_partial_job(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = next(j for j in jobs_in(demo_db) if j.status == "partial")
    assert main(["show", job.id, "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    assert "partial" in out
    assert "2 of 5 sources unreadable" in out
    assert '"unreadable":["doc-blank","doc-atlantis"]' in out


def test_history_of_a_failed_job(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = next(j for j in jobs_in(demo_db) if j.status == "failed")
    assert main(["history", job.id, "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    types = [word for word in out.split() if word.startswith("job.")]
    assert types == ["job.created", "job.started", "job.failed"]
    assert "ValueError" in out


@pytest.mark.parametrize("command", [["list"], ["show", "job_x"], ["history", "job_x"]])
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


@pytest.mark.parametrize("command", ["show", "history"])
def test_an_unknown_job_is_exit_1(
    demo_db: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    assert main([command, "job_NOPE", "--db", str(demo_db)]) == 1
    captured = capsys.readouterr()
    assert "job 'job_NOPE' not found" in captured.err
    assert captured.out == ""


def test_a_file_that_is_not_a_log_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    assert main(["list", "--db", str(text)]) == 1
    assert main(["demo", "--db", str(text), "--no-live"]) == 1
    err = capsys.readouterr().err
    assert err.count("StorageError") == 2
    assert "Traceback" not in err
    assert text.read_text() == "not a database\n"


def test_usage_errors_return_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["list", "--status", "bogus"]) == 2
    assert main(["demo", "--jobs", "0"]) == 2
    assert main(["frobnicate"]) == 2
    assert "usage: jobledger" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out


async def test_run_demo_returns_a_report(tmp_path: Path) -> None:
    output = io.StringIO()
    report = await run_demo(tmp_path / "r.db", jobs=12, pause=0, console=Console(file=output))
    assert "jobledger demo: 12 jobs" in output.getvalue()
    assert [(job.job_type, job.status) for job in report.jobs] == [
        ("word-count", "completed"),
        ("highlight", "completed"),
        ("fetch", "completed"),
        ("summarize", "failed"),
        ("index", "cancelled"),
        ("digest", "partial"),
        ("readability", "skipped"),
        ("checksum", "completed"),
        ("highlight", "completed"),
        ("readability", "completed"),
        ("word-count", "completed"),
        ("checksum", "completed"),
    ]
    assert [job.attempt for job in report.jobs] == [1, 1, 2, *[1] * 9]
    assert report.verify.ok
    assert report.events == report.new_events == report.verify.events
    assert report.marks == 13  # 7 hits in doc-bees, 6 in doc-ledgers
    assert report.path == str(tmp_path / "r.db")


def test_the_demo_workers_declare_their_types() -> None:
    assert WordCountWorker().job_types == ("word-count",)
    assert HighlightWorker().job_types == ("highlight",)
    assert ChecksumWorker().job_types == ("checksum",)
    assert SummarizeWorker(pause=0).job_types == ("summarize",)
    assert FetchWorker().job_types == ("fetch",)
    assert IndexWorker().job_types == ("index",)
    assert DigestWorker().job_types == ("digest",)
    assert ReadabilityWorker().job_types == ("readability",)
    with pytest.raises(ValueError, match="pause"):
        WordCountWorker(pause=-1)
    workers = (
        WordCountWorker,
        HighlightWorker,
        ChecksumWorker,
        SummarizeWorker,
        FetchWorker,
        IndexWorker,
        DigestWorker,
        ReadabilityWorker,
    )
    assert sorted(t.name for t in JOB_TYPES) == sorted(w.job_types[0] for w in workers)


async def test_the_demo_job_types_check_params_at_submit() -> None:
    async with jobledger.open(job_types=JOB_TYPES) as ledger:
        with pytest.raises(jobledger.ValidationError, match="keywords"):
            await ledger.submit("highlight", {"doc": "doc-bees", "keywords": []})
        with pytest.raises(jobledger.ValidationError, match="chunk"):
            await ledger.submit("checksum", {"doc": "doc-bees", "chunk": 0})
        job = await ledger.submit("checksum", {"doc": "doc-bees"})
        assert job.params == {"doc": "doc-bees", "chunk": 96}


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
