"""Claims the writer proposes: the seam between the Stower and the runners.

When a runner's job ends, its report and the claim of its next job can go
in one commit instead of two. The Stower asks a :class:`ClaimProposer` (the
runners' claim desk) after deciding each batch's commands for claims for
the runners whose slots are free, decides each claim it gets like any other
(a fenced ``job:start`` naming the version the proposer saw: a stale one is
refused, never written), and after the commit tells the proposer which
claims started which jobs. A job is never claimed in the batch that creates
it: ``submit()`` answers with the job as its own command left it, pending.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from .commands import JobStart
from .models import Job

__all__ = ["ClaimProposer"]


class ClaimProposer(Protocol):
    """Proposes claims for runners with a free slot."""

    def propose(self, now: datetime) -> list[JobStart]:
        """Claims to decide in this batch, each of a job the proposer knows
        to be pending and due at ``now`` (from a read made before) and for
        one runner with a free slot; each claim holds that slot until
        ``settle``. Never blocks, never raises."""
        ...

    def settle(self, outcomes: Sequence[tuple[JobStart, Job | None]]) -> None:
        """After the batch: each claim proposed, with the job it started once
        committed, or ``None`` when it was refused or the batch was not
        committed (the runner's place is free again). Called once for every
        claim ``propose`` returned."""
        ...
