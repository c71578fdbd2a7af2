"""Watching an SQLite file for commits made by other processes, without polling.

Every open SQLite log keeps a small file of its own in a folder beside the
log (``PATH-notify/``, :class:`Notifier`) and writes one byte to it after
each commit, once the commit is visible (on the writer's thread, right after
``COMMIT``). On Linux a :class:`CommitWatcher` asks the kernel (inotify,
through ``inotify_simple``) to say when any other log's file there is
written, and waits for it on the event loop (``add_reader``): no thread and
no timer, so an idle ledger spends nothing on it, and its own commits do not
wake it (it does not watch its own file). When told, it reads the head's
``seq`` on a connection of its own and hands it to ``changed``; the log
then tells its ``on_commit`` listeners of a ``seq`` past the last one it
told of.

Measured and refused: polling (on this kind of machine every timer or
thread wake costs 50 to 80 µs of CPU, so looking every 2 ms costs 3 to 5 %
of a core on an idle ledger, where the bench's P8 allows 1 %); watching the
WAL file (it is written before the commit is visible, which happens through
the shared memory the kernel does not report, so a look made at once
misses the commit); ``PRAGMA data_version`` (it moves only when the
connection next reads, one commit late); one notify file for every process
(each process is then woken by its own commits: about 60 µs of the event
loop per commit).

A notification is a hint, never the only way an event is found: a reader
that is told reads the log, and the runners and the tail keep their poll
(``poll_interval``) for systems without inotify and for a process that does
not notify.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import uuid
from collections.abc import Callable
from typing import Any

from jobledger.core import get_logger

__all__ = ["CommitWatcher", "Notifier", "notify_folder"]

log = get_logger("store")

_RETRY = 0.01
"""Seconds after which a look that failed (the file busy) is made again."""


def notify_folder(path: str) -> str:
    """The folder beside the log at ``path`` where each open log keeps the
    file it writes to after each commit."""
    return path + "-notify"


class Notifier:
    """This log's own file in the notify folder: ``notify()`` after each
    commit. Opening never raises: where the folder cannot be made (a folder
    this process may not write), ``fd`` is ``None`` and other processes find
    this one's commits by their polls."""

    def __init__(self, path: str) -> None:
        self.name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._folder = notify_folder(os.path.abspath(path))
        self._file = os.path.join(self._folder, self.name)
        self.fd: int | None = None
        error: OSError | None = None
        for _ in range(3):  # (the last log to close may remove the folder meanwhile)
            try:
                os.makedirs(self._folder, exist_ok=True)
                _prune(self._folder)
                self.fd = os.open(self._file, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
                return
            except FileNotFoundError as exc:
                error = exc
            except OSError as exc:
                error = exc
                break
        log.info("commits here will not be notified", path=path, error=str(error))

    def close(self) -> None:
        """Close and remove the file, and the folder if it is empty now (the
        last log of the file to close). Idempotent."""
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self._file)
            with contextlib.suppress(OSError):  # (not empty: another log is open)
                os.rmdir(self._folder)


def _prune(folder: str) -> None:
    """Remove the notify files of processes that are gone (killed before they
    could remove their own), so watches do not pile up. A file is taken for
    gone only when no process has its pid; one whose pid was reused stays,
    which costs a watch and nothing else."""
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            pid, _, _ = name.partition("-")
            if pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # (another user's process: alive)
        return True
    return True


def notify(fd: int | None) -> None:
    """Say that a commit is visible: write one byte to this log's notify file.
    Never raises: a lost notice only delays."""
    if fd is not None:
        with contextlib.suppress(OSError):
            os.pwrite(fd, b"\x01", 0)


class CommitWatcher:
    """Calls ``changed(seq)`` on the event loop when another log (of another
    process, or another object here) has committed to the SQLite file at
    ``path``. ``own`` is the name of this log's own notify file, which it does
    not watch. ``start`` returns ``False``, and nothing is watched, where the
    system cannot tell (no inotify); the caller's polls then find those
    commits."""

    def __init__(self, path: str, own: str, changed: Callable[[int], None]) -> None:
        self._path = os.path.abspath(path)
        self._folder = notify_folder(self._path)
        self._own = own
        self._changed = changed
        self._inotify: Any = None
        self._flags: Any = None
        self._watched: dict[int, str] = {}  # watch descriptor -> file name
        self._conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retry: asyncio.TimerHandle | None = None

    def start(self) -> bool:
        try:
            from inotify_simple import INotify, flags
        except ImportError:  # not Linux
            return False
        try:
            inotify = INotify(nonblocking=True)
        except OSError as exc:  # (out of inotify instances, say)
            log.info("cannot watch the log for other processes' commits", error=str(exc))
            return False
        self._inotify, self._flags = inotify, flags
        try:
            inotify.add_watch(self._folder, flags.CREATE | flags.MOVED_TO | flags.ONLYDIR)
            for name in os.listdir(self._folder):
                self._watch(name)
            # No busy wait: it runs on the event loop; a busy file is looked at
            # again ``_RETRY`` seconds later instead.
            self._conn = sqlite3.connect(
                self._path, timeout=0, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA query_only = 1")
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(inotify.fileno(), self._written)
        except (OSError, sqlite3.Error) as exc:
            self.stop()
            log.info("cannot watch the log for other processes' commits", error=str(exc))
            return False
        return True

    def stop(self) -> None:
        """Stop watching. Idempotent."""
        inotify, self._inotify = self._inotify, None
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if inotify is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(inotify.fileno())
            inotify.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _watch(self, name: str) -> None:
        """Watch another log's notify file (never this log's own)."""
        if name == self._own or self._inotify is None:
            return
        with contextlib.suppress(OSError):  # (it went again already)
            wd = self._inotify.add_watch(os.path.join(self._folder, name), self._flags.MODIFY)
            self._watched[wd] = name

    def _written(self) -> None:
        """Another log wrote its notify file, or one was made: look."""
        inotify = self._inotify
        if inotify is None:
            return
        try:
            events = inotify.read(timeout=0)
        except OSError:
            return
        flags = self._flags
        for event in events:
            if event.mask & (flags.CREATE | flags.MOVED_TO) and event.name:
                self._watch(event.name)  # a log opened: it may have committed already
            elif event.mask & flags.IGNORED:
                self._watched.pop(event.wd, None)  # its file went: the log closed
        if events:
            self._look()

    def _look(self) -> None:
        self._retry = None
        conn = self._conn
        if conn is None:
            return
        try:
            (seq,) = conn.execute("SELECT max(seq) FROM events").fetchone()
        except sqlite3.Error:  # busy for a moment (a checkpoint): look again soon
            if self._retry is None and self._loop is not None:
                self._retry = self._loop.call_later(_RETRY, self._look)
            return
        if isinstance(seq, int):
            self._changed(seq)
