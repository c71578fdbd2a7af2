"""Proposed claims: the part of the Stower that asks its
:class:`~jobledger.core.ClaimProposer` (the runners' claim desk) for claims
for runners with a free slot, decides them in the batch, and tells the
proposer after the commit which jobs they started (or, when the batch is not
committed, that none did). A mixin of :class:`~jobledger.stower.Stower`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from jobledger.core import (
    ClaimProposer,
    Job,
    JobStart,
    decide,
    get_logger,
    validate_command,
)
from jobledger.store import Record

from .batch import _BatchState, _Cache
from .chaining import _Chaining

__all__: list[str] = []

log = get_logger("stower")


class _Proposing(_Chaining):
    """The Stower provides the attributes declared here for the type checker."""

    if TYPE_CHECKING:
        _proposer: ClaimProposer | None
        _proposals: list[tuple[JobStart, Job | None]]
        _cache: _Cache

    def _decide_proposals(
        self,
        state: _BatchState,
        now: datetime,
        ms: int,
        seq: int,
        previous: str,
        records: list[Record],
        fresh: Sequence[Job] = (),
    ) -> tuple[int, str]:
        """Ask the proposer for claims for the runners whose slots are free
        (most often, the slot a job this batch ends frees), of the jobs it
        knows and the ``fresh`` ones this batch creates, and decide them in
        the batch (a stale or refused one writes nothing). Returns the ``seq``
        and hash the batch has reached."""
        assert self._proposer is not None
        self._withdraw_proposals()  # (an earlier attempt at this batch that did not commit)
        try:
            proposals = self._proposer.propose(now, fresh)
        except Exception as exc:  # the proposer's bug: the batch goes on without claims
            log.error("proposing claims failed", exc_info=exc)
            return seq, previous
        # Each is on record before any is decided: whatever fails half-way,
        # every proposal is settled (withdrawn with the batch, at worst).
        first = len(self._proposals)
        self._proposals.extend((command, None) for command in proposals)
        for index, command in enumerate(proposals, start=first):
            if command.job_id not in state.jobs:
                # A job this batch does not name: decided on what the cache
                # knows (current: the batch's read or its commit checks the
                # head), or not at all.
                cached = self._cache.get(("job", command.job_id))
                if cached is None or cached[0] is None:
                    continue
                state.jobs[command.job_id], state.versions[command.job_id] = cached
            try:
                events = decide(validate_command(command), state, now)
            except Exception as exc:  # refused (or a bug): nothing written for it
                log.debug("a proposed claim was refused", job_id=command.job_id, error=repr(exc))
                continue
            seq, previous, produced = self._chain(events, command, seq, previous, now, ms, state)
            records.extend(produced)
            if events:
                self._proposals[index] = (command, state.jobs.get(command.job_id))
        return seq, previous

    def _withdraw_proposals(self) -> None:
        """The batch was not committed: no claim it proposed started anything."""
        if self._proposals:
            proposals, self._proposals = self._proposals, []
            self._settle_proposals([(command, None) for command, _ in proposals])

    def _settle_proposals(self, outcomes: Sequence[tuple[JobStart, Job | None]]) -> None:
        assert self._proposer is not None
        try:
            self._proposer.settle(outcomes)
        except Exception as exc:  # the proposer's bug: committed is committed
            log.error("settling proposed claims failed", exc_info=exc)
