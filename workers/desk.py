"""The claim desk: deals the pending jobs of one process's runners, so that no
two of them propose the same job.

Runners of one process that each read the pending jobs and claim the first
ones race for the same jobs: all but one claim lose, and each lost claim
costs the writer a decision (four plain workers lost 1.5 claims per job).
The desk serves every runner that asks in one turn of the event loop with
one read of the read model for each set of job types asked for (runners of
one kind share a read; runners of other kinds never wait behind them),
deals each job found to one runner (in the order they asked, each within
its free slots and its queue's capacity), and keeps a dealt job from being
dealt again until its claim is answered (``answered``).

It is also the Stower's :class:`~jobledger.core.ClaimProposer`: it keeps
what its last read found and nobody took, with the jobs batches created
since (up to ``_SPARE`` jobs, in claim order), and when
the Stower asks, at each batch, it proposes claims of those for the
runners (its ``Idle`` ones: all that are started) with a free slot, most
often the slot a report in that batch frees. The Stower decides them in the
batch and tells the desk after the commit which started (``settle``).

Either way a claim stays a fenced ``job:start`` naming the version seen:
the desk only decides who proposes it. Runners of other processes can
still race; the fence decides.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from jobledger.core import Clock, Job, JobReader, JobStart, PendingRead, pending_order
from jobledger.core import runnable as runnable_at

from .capacity import QueueCapacity

__all__ = ["ClaimDesk", "Idle"]

_SPARE = 32
"""Pending jobs a read asks for beyond what the runners asked for, kept for
the claims the Stower proposes when slots free up."""


class _Request:
    __slots__ = ("answer", "limit", "types")

    def __init__(self, types: frozenset[str], limit: int) -> None:
        self.types = types
        self.limit = limit
        self.answer: asyncio.Future[tuple[list[Job], datetime]] = (
            asyncio.get_running_loop().create_future()
        )


class Idle(Protocol):
    """A runner as the desk sees it: its job types and free slots, and what
    it does with a claim proposed for it."""

    @property
    def job_types(self) -> frozenset[str]: ...

    def free(self) -> int:
        """Slots free now (neither running a job nor held for a proposed claim)."""
        ...

    def running(self) -> int:
        """Jobs running now (their reports not yet answered)."""
        ...

    def claim_for(self, job: Job) -> JobStart:
        """The fenced claim this runner would send for ``job``."""
        ...

    def reserve(self) -> None:
        """Hold a slot for a claim proposed on this runner's behalf."""
        ...

    def unreserve(self) -> None:
        """The proposed claim did not start the job: the slot is free again."""
        ...

    def accept(self, job: Job) -> None:
        """The proposed claim started ``job`` (committed): run it."""
        ...


class ClaimDesk:
    """Deals pending jobs to the runners of one process. Each dealt job has
    taken a place in its queue (``capacity``); the runner gives it back if
    the claim is lost."""

    def __init__(self, reader: JobReader, clock: Clock, capacity: QueueCapacity) -> None:
        self._reader = reader
        self._clock = clock
        self._capacity = capacity
        self._requests: list[_Request] = []
        self._dealt: set[str] = set()  # jobs whose claims are not answered yet
        self._reading = False
        self._settled_while_reading: set[str] = set()  # a read begun before may show them
        self._fresh_while_reading: list[Job] = []  # made after a read began: it may miss them
        self._serving: asyncio.Task[None] | None = None
        self._idle: list[Idle] = []  # runners waiting for work, in the order they began
        self._proposed: dict[str, tuple[Idle, str]] = {}  # job -> (runner, queue): in a batch
        self._spare: list[Job] = []  # pending jobs the last read found that nobody took
        self._read = PendingRead([])  # the last read, as it found the jobs
        self._read_by_id: dict[str, Job] | None = None  # (made when first asked)
        self._dues: dict[frozenset[str], datetime | None] = {}  # by the types read
        self.reads = 0

    async def deal(self, job_types: Sequence[str], limit: int) -> tuple[list[Job], datetime]:
        """Up to ``limit`` pending jobs of ``job_types`` that no other runner
        here is claiming, in claim order, each with its queue place taken;
        and the time the read model was asked at. The caller claims them and
        then calls ``answered`` with their ids, whatever the outcome."""
        request = _Request(frozenset(job_types), limit)
        self._requests.append(request)
        if self._serving is None:
            self._serving = asyncio.get_running_loop().create_task(
                self._serve(), name="jobledger-claim-desk"
            )
        try:
            return await request.answer
        except asyncio.CancelledError:
            answer = request.answer
            if answer.done() and not answer.cancelled() and answer.exception() is None:
                dealt, _ = answer.result()  # dealt, but the runner is gone: give them back
                for job in dealt:
                    self._capacity.release(job.queue)
                self.answered(job.id for job in dealt)
            raise

    async def next_due(self, job_types: Sequence[str]) -> datetime | None:
        """The earliest ``run_at`` of the pending jobs of ``job_types``, as
        the last read of those types found it (the read that dealt the jobs
        just claimed: every deal reads, so it is as fresh as the claim; one
        round trip serves every runner); asked of the read model when none
        has read them yet."""
        types = frozenset(job_types)
        if types in self._dues:
            return self._dues[types]
        return await self._reader.next_due(job_types)

    def answered(self, job_ids: Iterable[str]) -> None:
        """The claims of ``job_ids`` are answered: they may be dealt again
        (a lost or refused claim's job is pending still, or is another's)."""
        ids = set(job_ids)
        self._dealt.difference_update(ids)
        if self._reading:  # the read in flight may have seen them still pending
            self._settled_while_reading.update(ids)

    # -- claims the writer proposes (jobledger.core.ClaimProposer) -----------

    def reports_due(self) -> bool:
        """Whether a runner here has a job running (its report will come)."""
        return any(runner.running() for runner in self._idle)

    def read_at(self, seq: int, hash: str) -> Mapping[str, Job]:
        """The jobs the last read found, by id, if it saw the head
        ``seq``/``hash``: the Stower decides their claims on them."""
        read = self._read
        if read.seq != seq or read.hash != hash or not read.jobs:
            return {}
        if self._read_by_id is None:
            self._read_by_id = {job.id: job for job in read.jobs}
        return self._read_by_id

    def offer(self, runner: Idle) -> None:
        """From now on, whenever ``runner`` has a free slot, the Stower may
        claim a job for it in the batch it is deciding."""
        if runner not in self._idle:
            self._idle.append(runner)

    def withdraw(self, runner: Idle) -> None:
        """No more proposed claims for ``runner`` (it stops)."""
        if runner in self._idle:
            self._idle.remove(runner)

    def propose(self, now: datetime, fresh: Sequence[Job] = ()) -> list[JobStart]:
        """Claims for runners with a free slot, of the pending jobs the last
        read found and nobody took and the ``fresh`` ones the batch creates,
        in claim order. Fresh jobs nobody takes join the spare ones."""
        fresh = [j for j in fresh if any(j.job_type in r.job_types for r in self._idle)]
        if fresh:
            self._spare = sorted([*self._spare, *fresh], key=pending_order)[:_SPARE]
            if self._reading:
                self._fresh_while_reading.extend(fresh)
        if not self._spare or not any(runner.free() > 0 for runner in self._idle):
            return []
        proposals: list[JobStart] = []
        for job in self._spare:
            if not runnable_at(job, now):
                continue
            if job.id in self._dealt or job.id in self._proposed:
                continue
            for runner in self._idle:
                if job.job_type not in runner.job_types or runner.free() <= 0:
                    continue
                if not self._capacity.try_acquire(job.queue):
                    break
                runner.reserve()
                self._proposed[job.id] = (runner, job.queue)
                proposals.append(runner.claim_for(job))
                break
        if proposals:
            taken = {command.job_id for command in proposals}
            self._spare = [j for j in self._spare if j.id not in taken]
        return proposals

    def settle(self, outcomes: Sequence[tuple[JobStart, Job | None]]) -> None:
        for command, started in outcomes:
            runner, queue = self._proposed.pop(command.job_id)
            if self._reading:  # the read in flight may have seen it still pending
                self._settled_while_reading.add(command.job_id)
            if started is None:
                self._capacity.release(queue)
                runner.unreserve()
            else:
                runner.accept(started)

    async def _serve(self) -> None:
        try:
            await asyncio.sleep(0)  # every runner that asks in this turn is served together
            while self._requests:
                requests, self._requests = self._requests, []
                await self._serve_round(requests)
        finally:
            self._serving = None
            for request in self._requests:  # (cancelled half-way: none is left waiting)
                if not request.answer.done():
                    request.answer.cancel()

    async def _serve_round(self, requests: list[_Request]) -> None:
        # One read for the runners that take the same job types (the usual
        # case: several workers of one kind); runners of other types get a
        # read of their own, so plenty of one type never starves another.
        groups: dict[frozenset[str], list[_Request]] = {}
        for request in requests:
            if not request.answer.done():
                groups.setdefault(request.types, []).append(request)
        try:
            for types, group in groups.items():
                await self._serve_group(types, group)
        except asyncio.CancelledError:
            for request in requests:  # (none is left waiting)
                if not request.answer.done():
                    request.answer.cancel()
            raise

    async def _serve_group(self, types: frozenset[str], group: list[_Request]) -> None:
        wanted = max(sum(r.limit for r in group), _SPARE)
        if self._capacity.limited:
            wanted *= 4  # some may be in queues that are full
        now = self._clock.now()
        self.reads += 1
        self._reading = True
        try:
            if self._capacity.watching:  # the log records capacities: which queues are full
                self._capacity.observe(await self._reader.queues())
            read = await self._reader.next_pending_read(
                sorted(types), now, limit=wanted + len(self._dealt)
            )
        except asyncio.CancelledError:
            for request in group:
                request.answer.cancel()
            raise
        except Exception as exc:  # (a StorageError, say): each runner handles it
            for request in group:
                if not request.answer.done():
                    request.answer.set_exception(exc)
            return
        finally:
            self._reading = False
            stale, self._settled_while_reading = self._settled_while_reading, set()
            fresh, self._fresh_while_reading = self._fresh_while_reading, []
        self._read, self._read_by_id = read, None
        self._dues[types] = read.due
        found = [j for j in read.jobs if j.id not in stale and j.id not in self._proposed]
        for request in group:
            if request.answer.done():  # the runner stopped waiting
                continue
            picked: list[Job] = []
            for job in found:
                if len(picked) == request.limit:
                    break
                if job.id in self._dealt:
                    continue
                if not self._capacity.try_acquire(job.queue):
                    continue
                self._dealt.add(job.id)
                picked.append(job)
            request.answer.set_result((picked, now))
        # What nobody took now, for the claims the Stower proposes when a
        # runner's slot frees (a stale one is refused by its fence).
        # (with the jobs made while it read, which it may have missed: once
        # each, in claim order, none dealt, proposed or settled meanwhile)
        spare = {j.id: j for j in [*found, *fresh] if j.id not in self._dealt}
        for job_id in stale | self._proposed.keys():
            spare.pop(job_id, None)
        self._spare = sorted(spare.values(), key=pending_order)[:_SPARE]
