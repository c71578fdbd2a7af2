"""Claims the writer proposes: the seam between the Stower and the runners.

When a runner's job ends, its report and the claim of its next job can go
in one commit instead of two. The Stower asks a :class:`ClaimProposer` (the
runners' claim desk) after deciding each batch's commands for claims for
the runners whose slots are free, decides each claim it gets like any other
(a fenced ``job:start`` naming the version the proposer saw: a stale one is
refused, never written), and after the commit tells the proposer which
claims started which jobs. A job created in the batch is offered too
(``fresh``), so a job submitted while a runner waits is created and claimed
in one commit; ``submit()`` still answers with the job as its own command
left it (pending), as it would if the claim came a commit later.

The proposer also lends the Stower what its last read of the pending jobs
found (``read_at``): when that read saw the log at the Stower's own head,
the jobs are as committed at that head, so a runner's claim of one of them
is decided without reading it again (on PostgreSQL, the claim of a job
another process submitted is then one round trip). A write decided on them
is still conditional on that head, so a read that is stale costs a retry,
never a wrong decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from .commands import JobStart
from .models import Job

__all__ = ["ClaimProposer"]


class ClaimProposer(Protocol):
    """Proposes claims for runners with a free slot."""

    def propose(self, now: datetime, fresh: Sequence[Job] = ()) -> list[JobStart]:
        """Claims to decide in this batch, each of a job the proposer knows
        to be pending and due at ``now`` (from a read made before, or in
        ``fresh``: the jobs this batch creates, pending, in the order they
        were created) and for one runner with a free slot; each claim holds
        that slot until ``settle``. Never blocks, never raises."""
        ...

    def settle(self, outcomes: Sequence[tuple[JobStart, Job | None]]) -> None:
        """After the batch: each claim proposed, with the job it started once
        committed, or ``None`` when it was refused or the batch was not
        committed (the runner's place is free again). Called once for every
        claim ``propose`` returned."""
        ...

    def reports_due(self) -> bool:
        """Whether a runner has a job running, whose report will come: the
        Stower then lets the loop turn a few times before it takes a batch,
        so that a report sent just after a commit (a job that ends at once)
        shares the next commit with the commands sent beside it. Never
        blocks, never raises."""
        ...

    def read_at(self, seq: int, hash: str) -> Mapping[str, Job]:
        """The pending jobs the proposer's last read found, by id, if that
        read saw the log at the head ``seq``/``hash``; else empty. Never
        blocks, never raises."""
        ...
