"""The command line's grammar: the argparse parser of every command, and
the argument types that refuse bad values with a usage error.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

from jobledger.annotations.demo import (
    DEFAULT_JOBS,
    DEFAULT_PAUSE,
)
from jobledger.core import (
    TERMINAL,
    JobStatus,
    ValidationError,
)
from jobledger.ledger import _as_user
from jobledger.store import Head
from jobledger.terminal import printable

from .common import _DB_HELP

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


def _version() -> str:
    """The installed distribution's version."""
    try:
        return metadata.version("jobledger")
    except metadata.PackageNotFoundError:  # (run from a source tree, not installed)
        return "unknown"


_AGE = re.compile(r"(\d{1,9})([smhdw])")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}


def _age(text: str) -> timedelta:
    """An age such as ``90s``, ``30m``, ``12h``, ``7d`` or ``2w``."""
    found = _AGE.fullmatch(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(
            f"not an age: {text!r} (a whole number and s, m, h, d or w: 7d, 12h)"
        )
    seconds = int(found.group(1)) * _AGE_UNITS[found.group(2)]
    if seconds > 100 * 365 * 86_400:
        raise argparse.ArgumentTypeError(f"more than a hundred years: {text!r}")
    return timedelta(seconds=seconds)


def _grace(text: str) -> float:
    """Seconds of grace: a finite number from 0 to one day."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 86_400:  # (NaN fails too)
        raise argparse.ArgumentTypeError(f"must be between 0 and 86400 seconds: {text}")
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
    parser.add_argument(
        "--version", action="version", version=f"jobledger {_version()}", help="print the version"
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
    listing.add_argument(
        "--json", action="store_true", help="print {items, nextCursor} as JSON, for scripts"
    )

    show = commands.add_parser("show", help="show one job's fields")
    show.add_argument("job_id", metavar="JOB_ID")
    show.add_argument("--db", metavar="URL", help=db_help)
    show.add_argument("--json", action="store_true", help="print the job as JSON, for scripts")

    history = commands.add_parser("history", help="show one job's events, in order")
    history.add_argument("job_id", metavar="JOB_ID")
    history.add_argument("--db", metavar="URL", help=db_help)

    _add_mark_commands(commands, db_help)
    _add_live_commands(commands, db_help)
    _add_audit_commands(commands, db_help)
    _add_worker_command(commands)
    _add_operate_commands(commands, db_help)
    return parser


def _add_operate_commands(commands: Any, db_help: str) -> None:
    submit = commands.add_parser(
        "submit",
        help="submit a job; print its id (with --wait, how it ended)",
        description="Submit a job of TYPE to the log. Prints the job id; with --wait, waits "
        "for the job to end (a worker must run somewhere) and exits 0 only if it completed.",
        epilog='example: jobledger submit thumbnail --params \'{"image": "cat.png"}\' --wait',
    )
    submit.add_argument("job_type", metavar="TYPE")
    submit.add_argument("--db", metavar="URL", help=db_help)
    submit.add_argument("--params", metavar="JSON", help="the params: a JSON object")
    submit.add_argument("--params-file", metavar="FILE", help="read the params from FILE")
    submit.add_argument("--user", type=_user, help="the job's owner (default: system)")
    submit.add_argument("--idempotency-key", metavar="K", help="submit at most once per key")
    submit.add_argument(
        "--priority", type=_integer(-1_000_000, "must be between -1000000 and 1000000",
                                    1_000_000), default=0, help="higher runs first (default: 0)"
    )  # fmt: skip
    submit.add_argument("--run-at", type=_moment, metavar="ISO", help="not before this time")
    submit.add_argument("--wait", action="store_true", help="wait for the job to end")
    submit.add_argument(
        "--timeout", type=_grace, metavar="SECONDS", help="with --wait: give up after this long"
    )
    submit.add_argument("--json", action="store_true", help="print the job as JSON")
    cleanup = commands.add_parser(
        "cleanup",
        help="delete the jobs that ended before an age (their history stays in the log)",
        description="Delete every job that ended more than --older-than ago (only those of "
        "--status when given): a job.deleted event each, by system:cleanup, so an auditor "
        "tells cleanup from tampering. Prints how many.",
        epilog="example: jobledger cleanup --older-than 30d --status completed --status skipped",
    )
    cleanup.add_argument("--db", metavar="URL", help=db_help)
    cleanup.add_argument(
        "--older-than", type=_age, required=True, metavar="AGE", help="7d, 12h, 30m, 90s or 2w"
    )
    cleanup.add_argument(
        "--status",
        dest="statuses",
        action="append",
        choices=sorted(s.value for s in TERMINAL),
        help="only jobs that ended so (repeat it for several)",
    )
    cleanup.add_argument("--json", action="store_true", help='print {"deleted": N}')
    for name, purpose, example in (
        (
            "cancel",
            "cancel a job (a running one is asked to stop)",
            "cancel job_01J... --reason dup",
        ),
        ("suspend", "suspend a job of a suspendable type", "suspend job_01J..."),
        ("resume", "resume a suspended job", "resume job_01J..."),
        ("retry", "run a failed, timed-out or cancelled job again", "retry job_01J..."),
        ("delete", "delete a job that is not running (its history stays)", "delete job_01J..."),
    ):
        parser = commands.add_parser(
            name, help=purpose, description=purpose[0].upper() + purpose[1:] + ".",
            epilog=f"example: jobledger {example}",
        )  # fmt: skip
        parser.add_argument("job_id", metavar="JOB_ID")
        parser.add_argument("--db", metavar="URL", help=db_help)
        parser.add_argument("--user", type=_user, help="act as this user (only their jobs)")
        parser.add_argument("--json", action="store_true", help="print the job as JSON")
        if name in ("cancel", "retry"):
            parser.add_argument("--reason", help="why (kept in the log)")


def _add_worker_command(commands: Any) -> None:
    worker = commands.add_parser(
        "worker",
        help="run an application's workers on a log until SIGTERM or SIGINT",
        description="Run the workers MODULE:ATTR names (a JobWorker, a list of them, or a "
        "callable returning either) until stopped. The first SIGTERM or SIGINT stops "
        "claiming and gives running jobs --grace seconds to finish; then they are cancelled "
        "and their leases released, so another worker resumes them at once. A second "
        "signal ends the grace now. Exit 0 when stopped; 1 when the ledger failed. Logs: "
        "JSON lines on stderr.",
        epilog="example: jobledger worker --db jobs.db --app myapp.workers:WORKERS --grace 30",
    )
    worker.add_argument("--db", metavar="URL", help=_DB_HELP)
    worker.add_argument("--app", required=True, metavar="MODULE:ATTR", help="the workers to run")
    worker.add_argument(
        "--app-dir",
        default=".",
        metavar="DIR",
        help="put DIR first on the import path (default: the working directory)",
    )
    worker.add_argument(
        "--types", metavar="A,B", help="run only the workers of these job types (default: all)"
    )
    worker.add_argument(
        "--concurrency",
        type=_integer(1, "must be from 1 to 10000", 10_000),
        metavar="N",
        help="jobs at once per worker (1 to 10000)",
    )
    worker.add_argument(
        "--grace",
        type=_grace,
        default=10.0,
        metavar="SECONDS",
        help="how long running jobs may take to finish once stopped (default: 10)",
    )


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

    migrate = commands.add_parser(
        "migrate",
        help="bring the log's schema up to this jobledger's (opening to write does it too; "
        "the reading commands refuse an older schema)",
    )
    migrate.add_argument("--db", metavar="URL", help=_DB_HELP)

    copy = commands.add_parser(
        "copy",
        help="copy a whole log to another backend (SQLite to PostgreSQL and back): "
        "events with their hashes, content, read model; then verify the copy",
    )
    copy.add_argument("--from", dest="source", required=True, metavar="URL", help="the log to copy")
    copy.add_argument(
        "--to",
        dest="target",
        required=True,
        metavar="URL",
        help="where to: a new SQLite file, or an empty PostgreSQL schema",
    )
