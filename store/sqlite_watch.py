"""Watching an SQLite file for commits made by other processes, without polling.

Every process that commits to an SQLite log writes one byte to a small file
beside it (``PATH-notify``, :func:`notify`) once the commit is visible. On
Linux a :class:`CommitWatcher` asks the kernel (inotify, through
``inotify_simple``) to say when that file is written, and waits for it on the
event loop (``add_reader``): no thread and no timer, so an idle ledger spends
nothing on it. When told, it reads the head's ``seq`` on a connection of its
own (about 2 µs, from pages in memory) and hands it to ``changed``; the log
then tells its ``on_commit`` listeners of a ``seq`` past the last one it told
of (its own commits are told by ``write()``, so a commit of its own costs one
look and nothing more).

Measured and refused: polling (on this kind of machine every timer or
thread wake costs 50 to 80 µs of CPU, so looking every 2 ms costs 3 to 5 %
of a core on an idle ledger, where the bench's P8 allows 1 %); watching the
WAL file itself (it is written before the commit is visible: the commit
becomes visible through the shared memory, which the kernel does not
report, so a look made at once misses it); ``PRAGMA data_version`` (it moves
only when the connection next reads, one commit late).

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
from collections.abc import Callable
from typing import Any

from jobledger.core import get_logger

__all__ = ["CommitWatcher", "notify", "notify_path"]

log = get_logger("store")

_RETRY = 0.01
"""Seconds after which a look that failed (the file busy) is made again."""


def notify_path(path: str) -> str:
    """The file beside the log at ``path`` that committers write to."""
    return path + "-notify"


def notify(fd: int) -> None:
    """Say that a commit is visible: write one byte to the notify file
    (opened by the committer). Never raises: a lost notice only delays."""
    with contextlib.suppress(OSError):
        os.pwrite(fd, b"\x01", 0)


class CommitWatcher:
    """Calls ``changed(seq)`` on the event loop when another connection has
    committed to the SQLite file at ``path`` (a WAL database). ``start``
    returns ``False``, and nothing is watched, where the system cannot tell
    (no inotify); the caller's polls then find those commits."""

    def __init__(self, path: str, changed: Callable[[int], None]) -> None:
        self._path = os.path.abspath(path)
        self._changed = changed
        self._inotify: Any = None
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
        try:
            inotify.add_watch(notify_path(self._path), flags.MODIFY)
            self._conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA query_only = 1")
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(inotify.fileno(), self._written)
        except (OSError, sqlite3.Error) as exc:
            inotify.close()
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            log.info("cannot watch the log for other processes' commits", error=str(exc))
            return False
        self._inotify = inotify
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

    def _written(self) -> None:
        """A committer wrote to the notify file: look at the head."""
        inotify = self._inotify
        if inotify is None:
            return
        try:
            events = inotify.read(timeout=0)
        except OSError:
            return
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
