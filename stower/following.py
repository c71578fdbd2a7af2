"""Following other processes' commits: the part of the Stower that learns
of them (a notice on PostgreSQL, a told ``seq`` on every backend) and keeps
what it knows of the log true: the head it takes from a notice that
continues it, and the cache and queues' records it drops where another
process may have changed them. A mixin of :class:`~jobledger.stower.Stower`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobledger.core import Queue
from jobledger.store import Head, Notice

from .batch import _Cache

__all__: list[str] = []


class _Following:
    """The Stower provides the attributes declared here for the type checker."""

    if TYPE_CHECKING:
        _head: Head
        _cache: _Cache
        _queues: dict[str, Queue] | None
        _followed: int
        _writing: bool
        _heard_past: int

    def follow(self, notice: Notice) -> None:
        """Another process's commit, as its notice tells it (``Notices``).
        One that continues the Stower's head moves the head to it without a
        read: the streams it names leave the cache (all of it when it names
        none), and the queues' records if it changed one; so a batch that
        needs nothing else (new jobs, say) still commits in one round trip.
        One that does not continue it (a notice missed) drops what the
        Stower knew: the next batch reads."""
        if notice.seq <= self._head.seq:
            return  # (told already: by its own commit, or a read)
        if notice.previous != self._head.seq:
            self._forget()
            return
        self._head = Head(notice.seq, notice.hash)
        if notice.queues:
            self._queues = None
        if notice.streams is None:
            self._cache.clear()
        else:
            for stream in notice.streams:
                self._cache.drop(stream)
        self._followed += 1

    def heard(self, seq: int) -> None:
        """The log told of a commit at ``seq``: past the Stower's head, it is
        another process's, so what the Stower knew may be stale. The next
        batch then reads instead of trying a write that would be refused.
        (Told while a batch is being written, it may be that batch's own
        commit, whose head the Stower takes only once the write returns: it
        is weighed then.)"""
        if self._writing:
            self._heard_past = max(self._heard_past, seq)
        elif seq > self._head.seq:
            self._forget()

    def _forget(self) -> None:
        """Drop what the Stower knew of the log's state: it may be stale."""
        self._cache.clear()
        self._queues = None
