"""Terminal output: user data never reaches the operator's terminal as
commands (escape sequences, C1 controls, bidi and zero-width characters,
forged lines) or as rich markup.

The unit table checks :func:`jobledger.terminal.printable` itself; the rest
puts hostile text into every string field a user can set, through the real
public API on a real SQLite file, runs every human-readable command of the
CLI in-process (as tests/test_cli.py does) and checks the raw bytes it wrote
to standard output and standard error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jobledger
from jobledger import Job, JobContext, JobWorker
from jobledger.cli import main
from jobledger.store import content_folder_for
from jobledger.terminal import printable
from jobledger.workers import NonRetryableError, PartialResult, SkipJob

# -- the function --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # C0 controls, with tab, newline and carriage return by their names
        ("\x00", "\\x00"),
        ("\x07", "\\x07"),
        ("\x08", "\\x08"),
        ("a\tb", "a\\tb"),
        ("a\nb", "a\\nb"),
        ("a\rb", "a\\rb"),
        ("\x1b[2J", "\\x1b[2J"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("\x1f", "\\x1f"),
        # DEL and the C1 controls (CSI, NEL, ...)
        ("\x7f", "\\x7f"),
        ("\x80", "\\x80"),
        ("\x9b31m", "\\x9b31m"),
        ("\x85", "\\x85"),
        ("\x9f", "\\x9f"),
        # bidi controls and other format characters (category Cf)
        ("abc\u202edef", "abc\\u202edef"),
        ("\u202a\u202b\u202c\u202d", "\\u202a\\u202b\\u202c\\u202d"),
        ("\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"),
        ("\u200b\u200c\u200d\u200e\u200f", "\\u200b\\u200c\\u200d\\u200e\\u200f"),
        ("\u2060", "\\u2060"),
        ("\ufeffid", "\\ufeffid"),
        ("soft\xadhyphen", "soft\\xadhyphen"),
        ("\U000e0001", "\\U000e0001"),  # LANGUAGE TAG
        # the line and paragraph separators
        ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
        # a lone surrogate, an unassigned code point
        ("\udc80", "\\udc80"),
        ("\U0010fffe", "\\U0010fffe"),
        # rich markup and backslashes are text, left as they are
        ("[bold red]x[/]", "[bold red]x[/]"),
        ("[link=http://evil]y[/link]", "[link=http://evil]y[/link]"),
        ("C:\\path\\x1b", "C:\\path\\x1b"),
        # ordinary text of any script passes unchanged
        ("naïve café 東京", "naïve café 東京"),
        (
            "Ünïcödé — “quotes” «guillemets» 1\xa0000 €",
            "Ünïcödé — “quotes” «guillemets» 1\xa0000 €",
        ),
        (
            "עברית العربية Ελληνικά русский हिन्दी 한국어",
            "עברית العربية Ελληνικά русский हिन्दी 한국어",
        ),
        ("emoji 💀🎉 and e\u0301", "emoji 💀🎉 and e\u0301"),
        ("", ""),
    ],
)
def test_printable_escapes_what_a_terminal_acts_on(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_printable_output_is_safe_and_stable() -> None:
    every = "".join(chr(c) for c in range(0x2100)) + "\U0001f480\U000e007f"
    once = printable(every)
    # Nothing a terminal acts on is left, and escaping again changes nothing.
    assert not re.search(
        r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069]", once
    )
    assert printable(once) == once
    once.encode("utf-8")  # no lone surrogate is left either


# -- hostile data in every field, through the public API -----------------------


EVIL = (
    "\x1b]0;owned\x07\x1b[2J\x9b31m\x7f\x08\r\u202e\u2066\u200b\u2028\ufeff"
    "[bold red]x[/][link=http://evil]y[/link]:skull:\nforged"
)
"""Hostile text: an OSC title set with BEL, a clear screen, a C1 CSI, DEL,
backspace, carriage return, bidi override and isolate, zero-width space, line
separator, BOM, rich markup, an emoji code and a newline that would forge a
line starting with ``forged``."""

SHOWN = printable(EVIL)
QUOTE = "\x1b[31mred\u202e[bold]q[/]"
USER = "alice\x1b[2J\u202e[bold]"
RESOURCE = "res\x1b]0;t\x07\u2066[i]"
MARK = "mark\x9b2J\u200b[link=x]"
NAMED = type(EVIL, (Exception,), {})
"""An exception whose class name (a job's ``error_type``) is hostile too."""
FATAL = type(EVIL, (NonRetryableError,), {})

RAW = [b"\x1b", b"\x07", b"\x08", b"\r", b"\x7f"] + [
    c.encode() for c in "\x9b\u202e\u2066\u200b\u2028\ufeff"
]
"""Bytes that must never reach the terminal raw."""


def assert_safe(raw: bytes) -> str:
    """Assert ``raw`` holds no byte a terminal acts on, and no forged line;
    return it decoded."""
    for bad in RAW:
        assert bad not in raw, f"{bad!r} in {raw[:2000]!r}"
    text = raw.decode("utf-8")
    assert not re.search(r"^\s*forged", text, re.MULTILINE), text
    assert "💀" not in text  # an emoji code is not replaced
    return text


def assert_shown(text: str) -> None:
    """The hostile field is shown whole: escaped, with its markup as written."""
    assert SHOWN in text, text


class Hostile(JobWorker):
    """Reports, marks, stores and ends with hostile text, as the job's params say."""

    job_types = ("hostile",)
    progress_interval = 0.0

    async def execute(self, job: Job, ctx: JobContext) -> Any:
        await ctx.progress(50, stage=EVIL, message=EVIL)
        mode = job.params["mode"]
        if mode == "complete":
            if ctx.attempt == 1:
                raise NAMED(EVIL)  # retried
            await ctx.create_mark(RESOURCE, _annotation())
            await ctx.create_resource(EVIL, f"written\n{EVIL}\n")
            return {EVIL: EVIL, "list": [EVIL]}
        if mode == "fail":
            raise FATAL(EVIL)
        if mode == "skip":
            raise SkipJob(EVIL)
        return PartialResult(error=EVIL, result={EVIL: EVIL})


def _annotation() -> jobledger.Annotation:
    return jobledger.Annotation(
        motivation="commenting",
        target=jobledger.Target(
            source=RESOURCE, selector=[jobledger.TextQuoteSelector(exact=QUOTE)]
        ),
        body=[jobledger.TextualBody(value=EVIL)],
    )


Jobs = dict[str, Job]
"""The hostile log's jobs, by how they ended."""


async def _build(db: Path) -> Jobs:
    owner = jobledger.User(id=USER, name=EVIL, email=EVIL, domain=EVIL)
    fast = jobledger.RetryPolicy(base_delay=0.01, max_delay=0.01, jitter=False)
    async with jobledger.open(db, workers=[Hostile(name=EVIL)]) as ledger:
        # The job type is the one field the type pattern keeps plain.
        with pytest.raises(jobledger.ValidationError):
            await ledger.submit(EVIL, {}, user=owner)
        await ledger.create_resource(
            EVIL, f"intro {QUOTE} end\n{EVIL}\n", actor=EVIL, resource_id=RESOURCE
        )
        await ledger.create_mark(RESOURCE, _annotation(), actor=EVIL, mark_id=MARK)
        jobs: dict[str, Job] = {}
        for mode in ("complete", "fail", "skip", "partial"):
            jobs[mode] = await ledger.submit(
                "hostile",
                {"mode": mode, EVIL: EVIL, "nested": {EVIL: [EVIL]}},
                user=owner,
                idempotency_key=f"{mode}{EVIL}"[:128],
                max_retries=1,
                retry=fast,
            )
        jobs["cancelled"] = await ledger.submit("idle", {EVIL: EVIL}, user=owner)
        await ledger.cancel(jobs["cancelled"].id, user=owner, reason=EVIL)
        for mode, job in jobs.items():
            jobs[mode] = await ledger.wait(job.id, timeout=30)
    return jobs


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Jobs]:
    db = tmp_path_factory.mktemp("hostile") / "hostile.db"
    jobs = asyncio.run(_build(db))
    assert [jobs[m].status for m in ("complete", "fail", "skip", "partial", "cancelled")] == [
        "completed",
        "failed",
        "skipped",
        "partial",
        "cancelled",
    ]
    assert jobs["complete"].attempt == 2
    return db, jobs


@pytest.fixture(autouse=True)
def plain_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Piped output without colour, wide enough that no field is folded."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "4000")


def run(capsysbinary: pytest.CaptureFixture[bytes], *argv: str | Path) -> tuple[int, str, str]:
    """Run the CLI; its exit code and its output, checked safe byte by byte."""
    code = main([str(a) for a in argv])
    captured = capsysbinary.readouterr()
    return code, assert_safe(captured.out), assert_safe(captured.err)


def test_list_shows_hostile_jobs_escaped(
    hostile: tuple[Path, Jobs], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    db, jobs = hostile
    code, out, err = run(capsysbinary, "list", "--db", db)
    assert (code, err) == (0, "")
    assert printable(USER) in out
    assert "\\x1b]0;owned\\x07" in out  # the errors, cut to the column
    assert len(out.splitlines()) == 2 + 5 + 1  # header, rule, a line a job, the count
    code, out, err = run(capsysbinary, "list", "--db", db, "--user", USER)
    assert (code, err) == (0, "")
    assert all(job.id in out for job in jobs.values())


@pytest.mark.parametrize("mode", ["complete", "fail", "skip", "partial", "cancelled"])
def test_show_and_history_show_every_field_escaped(
    hostile: tuple[Path, Jobs], capsysbinary: pytest.CaptureFixture[bytes], mode: str
) -> None:
    db, jobs = hostile
    job = jobs[mode]
    code, out, err = run(capsysbinary, "show", job.id, "--db", db)
    assert (code, err) == (0, "")
    assert '"id":"alice\\u001b[2J\\u202e[bold]"' in out  # the user, as JSON
    if mode != "cancelled":
        assert printable(f"{mode}{EVIL}"[:128]) in out  # the idempotency key
    # params and the user, as JSON: control characters in JSON's escapes, the rest in ours
    assert "\\u001b]0;owned\\u0007\\u001b[2J\\x9b31m\\x7f\\b\\r\\u202e" in out
    assert "[bold red]x[/][link=http://evil]y[/link]:skull:\\nforged" in out
    if mode != "cancelled":
        assert_shown(out)  # the progress stage and message, the error
    code, out, err = run(capsysbinary, "history", job.id, "--db", db)
    assert (code, err) == (0, "")
    assert_shown(out)  # the cancel reason, the error, the stage, the worker's name


def test_marks_resources_and_content_are_escaped(
    hostile: tuple[Path, Jobs], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    db, jobs = hostile
    code, out, err = run(capsysbinary, "marks", RESOURCE, "--db", db)
    assert (code, err) == (0, "")
    assert f"Marks on {printable(RESOURCE)}" in out
    assert printable(MARK) in out
    assert printable(QUOTE) in out  # the quoted text
    assert_shown(out)  # the body
    assert "2 mark(s)" in out

    code, out, err = run(capsysbinary, "marks", EVIL, "--db", db)
    assert (code, err) == (0, "")
    assert "no marks on" in out and "\\x1b]0;owned\\x07" in out

    code, out, err = run(capsysbinary, "resources", "--db", db)
    assert (code, err) == (0, "")
    assert printable(RESOURCE) in out
    assert_shown(out)  # the names, and the actor who stored the first
    assert jobs["complete"].id in out  # the job that made the second

    # Into a pipe, the content is the stored bytes, exactly.
    code = main(["content", RESOURCE, "--db", str(db)])
    assert code == 0
    assert capsysbinary.readouterr().out == f"intro {QUOTE} end\n{EVIL}\n".encode()


def test_content_on_a_terminal_is_escaped_line_by_line(
    hostile: tuple[Path, Jobs],
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db, _ = hostile
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    assert main(["content", RESOURCE, "--db", str(db)]) == 0
    captured = capsysbinary.readouterr()
    assert captured.err == b""
    for bad in RAW:
        assert bad not in captured.out
    # The document's own lines stay lines (a newline in it is not a field's).
    *first, last = EVIL.split("\n")
    assert captured.out.decode().splitlines() == [
        f"intro {printable(QUOTE)} end",
        printable("\n".join(first)),
        last,
    ]


def test_json_outputs_stay_exact_json(
    hostile: tuple[Path, Jobs], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    db, _ = hostile
    code, out, err = run(capsysbinary, "marks", RESOURCE, "--db", db, "--jsonld")
    assert (code, err) == (0, "")
    assert "\\u202e" in out and "\\u009b" in out
    assert json.loads(out) == asyncio.run(_annotations(db, RESOURCE))

    # The export is the log's own bytes (its hashes cover them): JSON
    # escapes every C0 control, so no ESC or BEL reaches a terminal.
    assert main(["export", "--db", str(db)]) == 0
    raw = capsysbinary.readouterr().out
    assert b"\x1b" not in raw and b"\x07" not in raw and b"\r" not in raw
    lines = [json.loads(line) for line in raw.splitlines()]
    assert any(line["data"].get("error") == EVIL for line in lines)


async def _head(db: Path) -> int:
    async with jobledger.open(db) as ledger:
        return await ledger.head()


async def _annotations(db: Path, resource_id: str) -> list[dict[str, Any]]:
    async with jobledger.open(db) as ledger:
        return await ledger.annotations(resource_id)


def test_tail_and_replay_are_escaped(
    hostile: tuple[Path, Jobs], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    db, jobs = hostile
    events = str(asyncio.run(_head(db)))
    code, out, err = run(capsysbinary, "tail", "--db", db, "--after", "0", "--count", events)
    assert (code, err) == (0, "")
    assert len(out.splitlines()) == int(events)
    assert_shown(out)
    code, out, err = run(capsysbinary, "tail", jobs["fail"].id, "--db", db, "--after", "0")
    assert (code, err) == (0, "")
    assert_shown(out)
    assert out.splitlines()[-1].split()[3] == "job.failed"
    code, out, err = run(capsysbinary, "replay", "--db", db)
    assert (code, err) == (0, "")
    assert printable(USER) in out and "\\x1b]0;owned\\x07" in out


def test_tail_on_a_terminal_keeps_to_its_own_escape_codes(
    hostile: tuple[Path, Jobs],
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With colour and a progress bar, the only escape sequences are rich's
    own: styles, cursor hiding, line erasing; the markup is shown as written."""
    db, jobs = hostile
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("FORCE_COLOR", "1")
    for argv in (
        ["tail", jobs["partial"].id, "--db", str(db), "--after", "0"],
        ["show", jobs["partial"].id, "--db", str(db)],
        ["history", jobs["partial"].id, "--db", str(db)],
        ["marks", RESOURCE, "--db", str(db)],
    ):
        assert main(argv) == 0
        raw = capsysbinary.readouterr().out
        assert b"\x1b[" in raw  # styled
        own = re.sub(rb"\x1b\[(?:[0-9;]*m|\?25[lh]|2K|[0-9]*[ABCDG])", b"", raw)
        assert b"\x1b" not in own, own
        text = assert_safe(own.replace(b"\r", b""))
        assert "[bold red]x[/]" in text and "[link=http://evil]y[/link]" in text


def _copy(db: Path, to: Path) -> Path:
    with (
        contextlib.closing(sqlite3.connect(db)) as source,
        contextlib.closing(sqlite3.connect(to)) as target,
    ):
        source.backup(target)
    shutil.copytree(content_folder_for(db), content_folder_for(to))
    return to


def _content_files(db: Path) -> Iterator[Path]:
    return (p for p in content_folder_for(db).rglob("*") if p.is_file())


def test_verify_digest_and_their_problems_are_escaped(
    hostile: tuple[Path, Jobs], capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    db, _ = hostile
    code, out, err = run(capsysbinary, "verify", "--db", db)
    assert (code, err) == (0, "")
    assert out.startswith("verify: ok")
    code, out, err = run(capsysbinary, "digest", "--db", db)
    assert (code, err) == (0, "")
    assert re.fullmatch(r"\d+:[0-9a-f]{64}\n", out)

    damaged = _copy(db, tmp_path / "damaged.db")
    for path in _content_files(damaged):
        path.write_bytes(b"changed")
    code, out, err = run(capsysbinary, "verify", "--db", damaged)
    assert code == 1
    assert printable(repr(RESOURCE)) in out  # the problem names the resource
    code, out, err = run(capsysbinary, "content", RESOURCE, "--db", damaged)
    assert (code, out) == (5, "")  # a storage error: the content is damaged
    assert err.startswith("jobledger: error: CorruptionError")


def test_error_messages_on_stderr_are_escaped(
    hostile: tuple[Path, Jobs], capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    db, _ = hostile
    # NotFound quotes the id the operator gave.
    for argv in (["show", EVIL], ["history", EVIL], ["tail", EVIL], ["content", EVIL]):
        code, out, err = run(capsysbinary, *argv, "--db", db)
        assert (code, out) == (3, "")  # not found
        assert err.startswith("jobledger: error:") and "\\x1b]0;owned\\x07" in err
        assert len(err.splitlines()) == 1
    # Files that do not exist, named with hostile text.
    missing = tmp_path / f"no{EVIL.replace('/', '')}.db"
    code, out, err = run(capsysbinary, "list", "--db", missing)
    assert (code, out) == (2, "")
    assert err.startswith("jobledger: error: no log file at") and len(err.splitlines()) == 1
    code, out, err = run(capsysbinary, "import", missing, "--db", tmp_path / "new.db")
    assert (code, out) == (2, "")
    assert err.startswith("jobledger: error: no file at") and len(err.splitlines()) == 1
    # argparse's own errors quote the arguments.
    code, out, err = run(capsysbinary, "list", "--db", db, EVIL)
    assert (code, out) == (2, "")
    assert f"unrecognized arguments: {SHOWN}" in err
    code, out, err = run(capsysbinary, "tail", "--db", db, "--after", EVIL)
    assert (code, out) == (2, "")
    assert "not an integer" in err


def test_import_errors_are_escaped(
    hostile: tuple[Path, Jobs], capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    db, _ = hostile
    assert main(["export", "--db", str(db)]) == 0
    export = capsysbinary.readouterr().out
    lines = export.splitlines(keepends=True)
    # A line that is not JSON, holding hostile bytes raw.
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(lines[0] + EVIL.encode() + b"\n")
    code, out, err = run(capsysbinary, "import", bad, "--db", tmp_path / "a.db")
    assert (code, out) == (2, "")
    assert err.startswith("jobledger: error: ValidationError") and "line 2" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "a.db").exists()
    # A line whose hash does not chain: the error names it.
    edited = tmp_path / "edited.ndjson"
    edited.write_bytes(b"".join(lines).replace(b"forged", b"FORGED", 1))
    code, out, err = run(capsysbinary, "import", edited, "--db", tmp_path / "b.db")
    assert (code, out) == (2, "")
    assert err.startswith("jobledger: error: ValidationError") and len(err.splitlines()) == 1
    # Into a log that is not empty.
    code, out, err = run(capsysbinary, "import", bad, "--db", db)
    assert (code, out) == (2, "")
    assert "not empty" in err
    # The export to a file with a hostile name says where it went.
    to = tmp_path / f"out{EVIL.replace('/', '')}.ndjson"
    code, out, err = run(capsysbinary, "export", "--db", db, "--out", to)
    assert (code, err) == (0, "")
    assert f"exported {len(lines)} events to " in out and "\\x1b]0;owned\\x07" in out
    assert to.read_bytes() == export


def test_the_demo_on_a_hostile_path_is_escaped(
    capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    db = tmp_path / f"demo{EVIL.replace('/', '')}.db"
    code, out, err = run(capsysbinary, "demo", "--db", db, "--jobs", "2", "--pause", "0")
    assert (code, err) == (0, "")
    assert f"log file: {printable(str(db))}" in out
    assert "verify: ok" in out


def test_the_demo_live_bars_on_a_hostile_path_keep_to_their_own_escape_codes(
    capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    db = tmp_path / f"demo{EVIL.replace('/', '')}.db"
    assert main(["demo", "--db", str(db), "--pause", "0"]) == 0
    raw = capsysbinary.readouterr().out
    own = re.sub(rb"\x1b\[(?:[0-9;]*m|\?25[lh]|2K|[0-9]*[ABCDG])", b"", raw)
    assert b"\x1b" not in own
    text = assert_safe(own.replace(b"\r", b""))
    # The bars drew each job's ending, in words and glyphs of their own.
    for shown in ("✓", "✗", "↻", "completed", "failed: ", "cancelled", "partial: ", "skipped: "):
        assert shown in text, shown
    assert f"log file: {printable(str(db))}" in text
