"""The commands that check and move a log: ``replay``, ``verify``,
``digest``, ``export``, ``import``, ``copy`` and ``migrate``.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.text import Text

from jobledger import open as open_ledger
from jobledger.core import StorageError, ValidationError
from jobledger.store import BackendURL, ContentFolder, backend_for, content_folder_for, verify
from jobledger.store.audit import copy_log
from jobledger.store.sqlite import COMPANIONS

from .common import (
    _check_sqlite,
    _existing,
    _MissingFile,
    _OutputClosed,
    _silence,
    is_server_url,
)
from .formatting import _jobs_table, _problems_table, _text, _verdict

# -- auditing the log ----------------------------------------------------------


async def _replay(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db), migrate=False) as ledger:
        state = await ledger.replay(until_seq=args.until_seq, until=args.until)
        head = await ledger.head()
    jobs = sorted(state.jobs.values(), key=lambda job: job.created_seq)
    if jobs:
        title = Text(f"Jobs at seq {state.seq}, in order of creation")
        out.print(_jobs_table(jobs, title=title, detailed=True))
    else:
        out.print(Text(f"no jobs at seq {state.seq}", "dim"))
    out.print(
        Text(
            f"{len(jobs)} job(s), {len(state.marks)} mark(s), {len(state.assets)} asset(s) "
            f"at seq {state.seq} (the log's head is {head})"
        )
    )
    return 0


async def _verify(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db), migrate=False) as ledger:
        report = await ledger.verify(digest=args.digest)
    if not report.ok:
        out.print(_problems_table(report.problems))
        out.print(_verdict(report))
        return 1
    checked = f"; it still holds the digest of seq {args.digest.seq}" if args.digest else ""
    out.print(
        Text.assemble(
            _verdict(report),
            f" (hash chain intact over {report.events} events, read model equals a replay"
            f"{checked}; head {report.head.text})",
        ),
        soft_wrap=True,
    )
    return 0


async def _digest(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db), migrate=False) as ledger:
        head = await ledger.digest()
    out.print(_text(head.text), soft_wrap=True)
    return 0


# -- moving the log ------------------------------------------------------------


async def _write_lines(lines: AsyncIterator[bytes], to: IO[bytes]) -> int:
    """Write ``lines`` to ``to``; returns how many. A reader that went away
    raises ``_OutputClosed``."""
    count = 0
    try:
        async for line in lines:
            to.write(line)
            count += 1
        to.flush()
    except BrokenPipeError:
        _silence(to)
        raise _OutputClosed from None
    finally:
        if isinstance(lines, AsyncGenerator):  # done with it while the ledger is open
            await lines.aclose()
    return count


@contextlib.contextmanager
def _writing(name: str | None) -> Iterator[IO[bytes]]:
    """The file ``name`` (``None``: standard output), open for writing bytes."""
    if name is None:
        yield sys.stdout.buffer
        return
    with Path(name).open("wb") as file:
        yield file


async def _export(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db), migrate=False) as ledger:
        with _writing(args.out) as to:
            count = await _write_lines(ledger.export_log(after=args.after), to)
    if args.out is not None:
        out.print(_text(f"exported {count} events to {args.out}"), soft_wrap=True)
    return 0


@contextlib.contextmanager
def _reading(name: str) -> Iterator[IO[bytes]]:
    """The file ``name`` (``-``: standard input), open for reading bytes."""
    if name == "-":
        yield sys.stdin.buffer
        return
    if not Path(name).is_file():
        raise _MissingFile(name)
    with Path(name).open("rb") as file:
        yield file


def _new_log(db: str) -> bool:
    """Whether ``db`` does not exist yet; ``StorageError`` if it is not a log."""
    if is_server_url(db):
        return False  # (an import there is one transaction: nothing to remove)
    _check_sqlite(db)
    return not Path(db).exists()


def _discard(db: str) -> None:
    """Delete the log file ``db`` and the files it keeps beside it."""
    for suffix in ("", *COMPANIONS):
        companion = Path(f"{db}{suffix}")
        if companion.is_dir():  # (the notify folder)
            shutil.rmtree(companion, ignore_errors=True)
        else:
            companion.unlink(missing_ok=True)


async def _import(args: argparse.Namespace, out: Console) -> int:
    if args.content is not None and not args.content.is_dir():
        raise _MissingFile(args.content)
    with _reading(args.file) as lines:
        created = _new_log(args.db)
        try:
            async with open_ledger(args.db) as ledger:
                count = await ledger.import_log(lines)
                if args.content is not None:
                    await ContentFolder(args.content).copy_to(
                        ContentFolder(content_folder_for(args.db))
                    )
                report = await ledger.verify()
        except BaseException:
            if created:  # the import is all or nothing: so is the file it made
                _discard(args.db)
            raise
    out.print(Text.assemble(f"imported {count} events; ", _verdict(report)))
    if not report.ok:
        out.print(_problems_table(report.problems))
        return 1
    return 0


def _copy_end(text: str, field: str) -> BackendURL:
    """One end of a copy: a log that outlives the command (not in memory)."""
    try:
        url = BackendURL.parse(text)
    except ValidationError as exc:
        raise ValidationError(str(exc), field=field) from None
    if url.in_memory:
        raise ValidationError(
            f"{text!r} is a log in memory: copy needs one that stays", field=field
        )
    return url


async def _copy(args: argparse.Namespace, out: Console) -> int:
    source_url = _copy_end(args.source, "--from")
    target_url = _copy_end(args.target, "--to")
    if source_url.path is not None:
        _existing(source_url.path)
    created = target_url.path is not None and _new_log(target_url.path)
    # The source is only read: never made, never migrated (a mistyped schema
    # or file is an error, not an empty log copied).
    source, source_content = backend_for(source_url, migrate=False)
    target, target_content = backend_for(target_url)
    try:
        try:
            await source.open()
            await target.open()
            head = await copy_log(source, target, source_content, target_content)
            report = await verify(target, digest=head, content=target_content)
        finally:
            await target.close()
            await source.close()
    except BaseException:
        if created and target_url.path is not None:  # all or nothing: so is the file it made
            _discard(target_url.path)
        raise
    out.print(
        Text.assemble(
            f"copied {head.seq} events to {target_url}; digest {head.text}; ", _verdict(report)
        )
    )
    if not report.ok:
        out.print(_problems_table(report.problems))
        return 1
    return 0


async def _migrate(args: argparse.Namespace, out: Console) -> int:
    """Bring a log's schema up to this jobledger's (the reading commands
    refuse an older one); says whether there was anything to do."""
    url = BackendURL.parse(_existing(args.db))
    store, _ = backend_for(url, migrate=False)
    try:
        await store.open()
    except StorageError as exc:
        if "jobledger migrate" not in str(exc):
            raise
    else:
        await store.close()
        out.print(_text(f"{url}: the schema is up to date; nothing to migrate"), soft_wrap=True)
        return 0
    store, _ = backend_for(url)
    await store.open()
    await store.close()
    out.print(_text(f"{url}: migrated to the current schema"), soft_wrap=True)
    return 0
