"""Commit notification: the callbacks a log calls after each commit
(``EventLog.on_commit``), kept one way for every backend."""

from __future__ import annotations

from collections.abc import Callable

from jobledger.core import get_logger

__all__: list[str] = []

log = get_logger("store")


def watch_commits(
    callbacks: list[Callable[[int], None]], callback: Callable[[int], None]
) -> Callable[[], None]:
    """Add ``callback`` to ``callbacks``; return the function that takes it out
    (once, however often it is called)."""
    callbacks.append(callback)

    def stop() -> None:
        if callback in callbacks:
            callbacks.remove(callback)

    return stop


def tell_commit(callbacks: list[Callable[[int], None]], seq: int) -> None:
    """Call each callback with the head ``seq``. One that raises is logged and
    the others are still told: a commit is committed whatever a listener does."""
    for callback in list(callbacks):
        try:
            callback(seq)
        except Exception as exc:
            log.error("a commit callback failed", exc_info=exc)
