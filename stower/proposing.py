"""Proposed claims: the part of the Stower that asks its
:class:`~jobledger.core.ClaimProposer` (the runners' claim desk) for claims
for runners with a free slot, decides them in the batch, and tells the
proposer after the commit which jobs they started (or, when the batch is not
committed, that none did); and what else the Stower asks the proposer: the
jobs its last read found at the Stower's head (a claim of one is decided
without reading it again), and whether a report is due (a batch waits a few
turns for it). A mixin of :class:`~jobledger.stower.Stower`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from jobledger.store import Head, Record

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
        _head: Head

    def _reports_due(self) -> bool:
        """Whether a runner of this process has a job running (the claim
        desk knows): its report may come in the next turns of the loop."""
        if self._proposer is None:
            return False
        try:
            return self._proposer.reports_due()
        except Exception as exc:  # the proposer's bug: take the batch as it is
            log.error("the claim desk could not say if reports are due", exc_info=exc)
            return False

    def _read_at_head(self) -> Mapping[str, Job]:
        """The pending jobs the claim desk last read, if it read them at the
        Stower's head: as committed there, like the cache (a claim of one
        is then decided without reading it again)."""
        if self._proposer is None:
            return {}
        try:
            return self._proposer.read_at(self._head.seq, self._head.hash)
        except Exception as exc:  # the proposer's bug: read instead
            log.error("the claim desk's read could not be taken", exc_info=exc)
            return {}

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
