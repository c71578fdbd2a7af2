"""Commit notification: the callbacks a log calls after each commit
(``EventLog.on_commit``), kept one way for every backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from jobledger.core import get_logger

__all__: list[str] = []

log = get_logger("store")

T = TypeVar("T")


def watch_commits(
    callbacks: list[Callable[[T], None]], callback: Callable[[T], None]
) -> Callable[[], None]:
    """Add ``callback`` to ``callbacks``; return the function that takes it out
    (once, however often it is called)."""
    callbacks.append(callback)

    def stop() -> None:
        if callback in callbacks:
            callbacks.remove(callback)

    return stop


def tell_commit(callbacks: list[Callable[[T], None]], seq: T) -> None:
    """Call each callback with the head ``seq`` (or a notice of it). One that raises is logged and
    the others are still told: a commit is committed whatever a listener does."""
    for callback in list(callbacks):
        try:
            callback(seq)
        except Exception as exc:
            log.error("a commit callback failed", exc_info=exc)
