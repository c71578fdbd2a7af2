"""Crash points: named places where a test makes the process die hard.

A reliability test runs jobledger in a child process with the environment
variable ``JOBLEDGER_CRASH=<point>:<k>``; at the ``k``-th time that process
reaches ``<point>`` it ends at once with ``os._exit(CRASH_EXIT_CODE)``: no
``finally``, no flush, no goodbye, as a power cut or ``kill -9`` would end it.
Unarmed (the variable unset, as everywhere but in those tests), a crash point
costs one comparison.
"""

from __future__ import annotations

import os

__all__ = ["CRASH_EXIT_CODE", "CRASH_POINTS", "crash_point"]

CRASH_POINTS = (
    "stower.before_begin",  # a batch taken from the mailbox, nothing written yet
    "store.after_insert",  # every statement of the batch run, COMMIT not yet
    "stower.after_commit",  # committed, not yet published
    "stower.before_answer",  # published, the senders not yet answered
    "runner.after_claim",  # a claim won, execute not yet started
    "runner.mid_progress",  # a progress report committed, execute not yet resumed
)
"""Every crash point, in the order a job meets them."""

CRASH_EXIT_CODE = 97
"""The exit code of a process ended at a crash point."""


def _armed(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    point, _, count = spec.rpartition(":")
    if point not in CRASH_POINTS or not count.isdigit() or int(count) < 1:
        raise ValueError(
            f"JOBLEDGER_CRASH={spec!r}: expected <point>:<k>, a point of {CRASH_POINTS}"
        )
    return point, int(count)


_ARMED = _armed(os.environ.get("JOBLEDGER_CRASH"))
_hits = 0


def crash_point(name: str) -> None:
    """End the process here if the armed crash point is ``name`` and this is its k-th hit."""
    global _hits
    if _ARMED is None or name != _ARMED[0]:
        return
    _hits += 1
    if _hits == _ARMED[1]:
        os._exit(CRASH_EXIT_CODE)
