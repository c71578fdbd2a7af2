"""Waiting: ``wait()`` for a job to reach a status, woken by the job's own
events, never by polling."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable, Iterable

from jobledger.core import (
    Envelope,
    Job,
    JobStatus,
    NotFound,
    ValidationError,
    WaitTimeout,
    evolve_job,
)

from .arguments import UserArg, _as_user, _id, _statuses
from .subscriptions import Subscriptions

__all__ = ["Waiting"]


class _Waiter:
    """One ``wait()`` call: follows its job by the envelopes published after it
    registered, and wakes the call only when the job is done or must be read
    afresh (an envelope it cannot apply). Envelopes offered while a read is
    under way are kept and applied after it: the read may have been made
    before they were committed."""

    __slots__ = ("done", "job", "kept", "reading", "wake")

    def __init__(self, done: Callable[[Job], bool]) -> None:
        self.done = done
        self.job: Job | None = None
        self.reading = True  # until the first read is in
        self.kept: builtins.list[Envelope] = []
        self.wake = asyncio.Event()

    def offer(self, env: Envelope) -> None:
        if self.reading:
            self.kept.append(env)
        else:
            self._apply(env)

    def read(self, job: Job) -> None:
        """A read of the job came back: take it unless events already moved
        the job past it, then apply what was kept meanwhile."""
        if self.job is None or job.version >= self.job.version:
            self.job = job
        self.reading = False
        kept, self.kept = self.kept, []
        for env in kept:
            self._apply(env)

    def _apply(self, env: Envelope) -> None:
        job = self.job
        if job is None or env.version <= job.version:
            return  # deleted, or already seen
        if env.version != job.version + 1:
            self.reading = True  # a gap: keep what comes until it is read afresh
            self.kept.append(env)
            self.wake.set()
            return
        self.job = evolve_job(job, env)
        if self.job is None or self.done(self.job):
            self.wake.set()


class Waiting:
    """``wait()`` over a :class:`Subscriptions` (which brings each job's
    envelopes) and a read of the job (``get``, which checks ownership)."""

    def __init__(
        self,
        subscriptions: Subscriptions,
        get: Callable[[str, UserArg], Awaitable[Job]],
        check_open: Callable[[], None],
    ) -> None:
        self._subscriptions = subscriptions
        self._get = get
        self._check_open = check_open
        self._waiters: set[_Waiter] = set()

    def wake_all(self) -> None:
        """Wake every call waiting (after a close: each then raises ``LedgerClosed``)."""
        for waiter in self._waiters:
            waiter.wake.set()

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        user: UserArg = None,
        until: Iterable[JobStatus | str] | None = None,
    ) -> Job:
        """The contract of :meth:`jobledger.Ledger.wait`."""
        self._check_open()
        _id(job_id, "job_id")
        _as_user(user)
        wanted = _statuses(until)
        if timeout is not None and (
            not isinstance(timeout, int | float)
            or isinstance(timeout, bool)
            or not 0 <= timeout < float("inf")
        ):
            raise ValidationError("must be finite seconds >= 0", field="timeout")
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout

        def done(job: Job) -> bool:
            return job.is_terminal or (wanted is not None and job.status in wanted)

        waiter = _Waiter(done)
        self._waiters.add(waiter)
        unwatch = self._subscriptions.watch(job_id, waiter.offer)
        try:
            # Registered before reading: every event committed after the read
            # reaches the waiter (published here, or found by the tail when
            # another process wrote it), which follows the job from the
            # events alone and wakes this call only when it is done, or
            # when it must read the job again. The first read is made
            # whatever the timeout, so a job already done is returned.
            waiter.read(await self._get(job_id, user))
            async with asyncio.timeout_at(deadline):
                while waiter.job is not None and not done(waiter.job):
                    await waiter.wake.wait()
                    self._check_open()
                    waiter.wake.clear()
                    if waiter.reading:  # a gap: read it afresh
                        waiter.read(await self._get(job_id, user))
                if waiter.job is None:
                    raise NotFound("job", job_id)
                return waiter.job
        except TimeoutError:
            raise WaitTimeout(f"job {job_id!r} not finished after {timeout} s") from None
        finally:
            unwatch()
            self._waiters.discard(waiter)
