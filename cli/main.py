"""The ``jobledger`` command's entry point: :func:`main` parses the
arguments, runs the command and turns errors into exit codes.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from rich.text import Text

from jobledger.core import (
    InvalidTransition,
    JobledgerError,
    NotALog,
    NotFound,
    StorageError,
    ValidationError,
)
from jobledger.store import BackendURL

from .audit import _copy, _digest, _export, _import, _migrate, _replay, _verify
from .common import _DEFAULT_DB, _console, _MissingFile, _MissingLog, _OutputClosed
from .demo_command import _demo
from .follow import _tail
from .formatting import _text
from .jobs import _history, _list, _show
from .marks import _content, _marks, _resources
from .operate import _change, _cleanup, _delete, _submit
from .parser import _parser
from .worker_command import _worker

__all__ = ["main"]


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
    "copy": _copy,
    "migrate": _migrate,
    "worker": _worker,
    "submit": _submit,
    "cancel": _change,
    "suspend": _change,
    "resume": _change,
    "retry": _change,
    "delete": _delete,
    "cleanup": _cleanup,
}


def _database(given: str | None, command: str) -> str:
    """The log ``command`` works on, from ``--db`` (``given``), else the
    ``JOBLEDGER_DB`` environment variable (when set and not empty), else
    ``jobledger.db``: the SQLite file's path, a PostgreSQL URL as given, or
    ``":memory:"`` for the demo.

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
    if url.dsn is not None:
        return text  # a PostgreSQL log: opened by its URL
    if command != "demo":
        raise ValidationError(
            f"{text!r} is a log in memory, empty at start and gone at exit: "
            f"{command} needs a log file (a path or sqlite:///PATH)",
            field=source,
        )
    return ":memory:"


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_ILLEGAL = 4
EXIT_STORAGE = 5


def exit_code(exc: BaseException) -> int:
    """The exit code of a command that raised ``exc`` (the same for every
    command): 2 bad usage or input (a ``ValidationError``, a missing log
    file, a path that is not a jobledger log), 3 not found, 4 an illegal
    transition, 5 a storage error, 1 any other jobledger error."""
    if isinstance(exc, ValidationError | NotALog | _MissingLog | _MissingFile):
        return EXIT_USAGE
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, InvalidTransition):
        return EXIT_ILLEGAL
    if isinstance(exc, StorageError):
        return EXIT_STORAGE
    return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """Run the ``jobledger`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit code, the same for every command: 0 success; 1 the
    command ran and reports a failure (``verify`` found problems), or
    another jobledger error; 2 bad usage or input (an unknown option, a bad
    URL, a missing log file, a file that is not a jobledger log, a bad
    value); 3 not found (a job, a resource); 4 an illegal transition; 5 a
    storage error. Errors are one line on stderr. Never raises
    ``SystemExit``.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    out = _console()
    err = _console(stderr=True)
    try:
        if hasattr(args, "db"):  # (copy names its two logs itself)
            args.db = _database(args.db, args.command)
    except ValidationError as exc:
        err.print(_text(f"jobledger: error: {exc}", "red"), soft_wrap=True)
        return EXIT_USAGE
    try:
        return asyncio.run(_COMMANDS[args.command](args, out))
    except (JobledgerError, _MissingLog, _MissingFile) as exc:
        err.print(_text(f"jobledger: error: {_said(exc, args)}", "red"), soft_wrap=True)
        return exit_code(exc)
    except _OutputClosed:
        return EXIT_FAILED
    except KeyboardInterrupt:
        err.print(Text("jobledger: interrupted", "red"))
        return 130


def _said(exc: BaseException, args: argparse.Namespace) -> str:
    """The one line an error is told in."""
    if isinstance(exc, _MissingLog):
        return f"no log file at {exc} (pass --db URL)"
    if isinstance(exc, _MissingFile):
        return f"no file at {exc}"
    if isinstance(exc, NotFound):
        return f"{exc} in {args.db}"
    if isinstance(exc, ValidationError) and (exc.field or "").startswith("--"):
        return str(exc)  # an option's value: said as argparse says it
    return f"{type(exc).__name__}: {exc}"
