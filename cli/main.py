"""The ``jobledger`` command's entry point: :func:`main` parses the
arguments, runs the command and turns errors into exit codes.
"""

from __future__ import annotations

import asyncio
import os

from rich.text import Text

from jobledger.core import (
    JobledgerError,
    NotFound,
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
        if hasattr(args, "db"):  # (copy names its two logs itself)
            args.db = _database(args.db, args.command)
    except ValidationError as exc:
        err.print(_text(f"jobledger: error: {exc}", "red"), soft_wrap=True)
        return 2
    try:
        return asyncio.run(_COMMANDS[args.command](args, out))
    except ValidationError as exc:
        if not (exc.field or "").startswith("--"):
            err.print(
                _text(f"jobledger: error: {type(exc).__name__}: {exc}", "red"), soft_wrap=True
            )
            return 1
        err.print(_text(f"jobledger: error: {exc}", "red"), soft_wrap=True)  # a usage error
        return 2
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
