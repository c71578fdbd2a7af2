"""Subscriptions: the log as a stream, catch-up then live, with one tail per
ledger.

:class:`Subscriptions` needs no :class:`~jobledger.Ledger`: give it the log,
the bus the log's commits are published on, and the clock, and ``start()``
it once the log is open. An HTTP server or the command line can then serve
``events()`` and ``observe()`` from it, and :class:`~jobledger.waiting.Waiting`
follows jobs through ``watch()``.

The one tail reads the head of the log every ``poll_interval`` seconds of
the ledger's clock (a ``ManualClock`` moves it only when advanced), and at
once when the log tells of a commit (``EventLog.on_commit``) that was not
published on the bus here: when the log is past what was published on the
bus here, another process wrote,
and the tail wakes every follower (which reads the log from where it is)
and offers the new envelopes to the watchers of their streams. Nothing else
polls. A storage error in the tail is logged and tried again at the next
poll; a damaged entry (``CorruptionError``) or any other error ends the tail,
which calls ``on_crash`` (the owner's cue to close): it would never get past
it, and its watchers would wait forever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

import reactivex
from reactivex import Observable
from reactivex.abc import ObserverBase, SchedulerBase
from reactivex.disposable import Disposable

from jobledger.core import (
    Clock,
    CorruptionError,
    Envelope,
    JobCreated,
    LedgerClosed,
    StorageError,
    ValidationError,
    get_logger,
)
from jobledger.eventbus import EventBus
from jobledger.store import Backend

from .arguments import (
    UserArg,
    _as_user,
    _count,
    _event_types,
    _id,
    _optional_text,
    _owns_user,
    _seq,
)

__all__ = ["Subscriptions"]

log = get_logger("ledger")


class Subscriptions:
    """Following one log: ``events`` and ``observe`` for readers, ``watch`` for
    one stream's envelopes, and the tail that finds other processes' commits.

    ``clock`` is the ledger's clock: the tail waits ``poll_interval`` seconds
    of it. ``on_crash`` is called with the error that ended the tail.
    ``last_committed`` (optional) tells, without I/O, the last ``seq``
    committed in this process (the Stower's), so ``observe()`` starts after
    it even before its envelope is published; without it, the last ``seq``
    published on the bus is used.
    """

    def __init__(
        self,
        log: Backend,
        bus: EventBus,
        clock: Clock,
        *,
        poll_interval: float = 1.0,
        last_committed: Callable[[], int] | None = None,
        on_crash: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._log = log
        self._bus = bus
        self.clock = clock
        self._poll_interval = poll_interval
        self._last_committed = last_committed
        self._on_crash = on_crash
        self._failure: str | None = None  # why the ledger closed, if it failed
        self._watchers: dict[str, set[Callable[[Envelope], None]]] = {}
        self._followers: set[asyncio.Event] = set()
        self._seen_seq = 0  # every seq up to this one was published here or found by the tail
        self._tail: asyncio.Task[None] | None = None
        self._sleeper: asyncio.Future[None] | None = None  # the tail's wait, cut short by a nudge
        self._nudged = False
        self._told = 0  # the highest seq the log told of (committed)
        self._stop_hearing: Callable[[], None] | None = None
        self._started = False
        self._closed = False

    async def start(self) -> None:
        """Begin at the head of the (open) log: subscribe to the bus, start the tail."""
        if self._started:
            raise RuntimeError("the subscriptions are already started")
        self._started = True
        self._seen_seq = (await self._log.head()).seq
        self._bus.subscribe(self._published)
        self._stop_hearing = self._log.on_commit(self._heard)
        self._tail = asyncio.get_running_loop().create_task(
            self._tail_the_log(), name="jobledger-tail"
        )

    @property
    def running(self) -> bool:
        """Whether the tail is running."""
        return self._tail is not None and not self._tail.done()

    async def aclose(self, failure: str | None = None) -> None:
        """Stop the tail; every follower returns when it next wakes, or, given
        ``failure`` (why the ledger closed), raises ``LedgerClosed`` with it,
        as every later call does. Idempotent."""
        self._closed = True
        if failure is not None and self._failure is None:
            self._failure = failure
        if self._stop_hearing is not None:
            self._stop_hearing()
            self._stop_hearing = None
        if self._tail is not None:
            self._tail.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tail

    def wake_all(self) -> None:
        """Wake every follower (after a close, so it sees it)."""
        for event in self._followers:
            event.set()

    def _check_running(self) -> None:
        if self._failure is not None:
            raise LedgerClosed(self._failure)
        if self._closed or not self._started:
            raise LedgerClosed("the ledger is not open")

    # -- one stream --------------------------------------------------------

    def watch(self, stream: str, offer: Callable[[Envelope], None]) -> Callable[[], None]:
        """Call ``offer`` with each envelope of ``stream`` from now on, published
        here or found by the tail, in ``seq`` order per source (a gap in
        versions means a read is due). Returns the function that stops it."""
        self._watchers.setdefault(stream, set()).add(offer)

        def unwatch() -> None:
            offers = self._watchers.get(stream)
            if offers is not None:
                offers.discard(offer)
                if not offers:
                    del self._watchers[stream]

        return unwatch

    def _published(self, env: Envelope) -> None:
        # Only a contiguous run of seqs moves the mark: when another process
        # wrote in between, the seqs before this one are not seen yet, and
        # the tail must read them (or their waiters would wait forever).
        if env.seq == self._seen_seq + 1:
            self._seen_seq = env.seq
        offers = self._watchers.get(env.stream)
        if offers:
            for offer in offers:
                offer(env)

    def _heard(self, seq: int) -> None:
        """The log told of a commit: once the committing task has yielded,
        cut the tail's wait short unless the commit is one this process's
        bus publishes (the Stower's own, known without I/O through
        ``last_committed``, which the Stower moves before it yields)."""
        asyncio.get_running_loop().call_soon(self._nudge, seq)

    def _nudge(self, seq: int) -> None:
        self._told = max(self._told, seq)
        known = self._seen_seq
        if self._last_committed is not None:
            known = max(known, self._last_committed())
        if seq > known and not self._nudged:
            self._nudged = True
            if self._sleeper is not None:
                self._sleeper.cancel()

    async def _wait(self) -> None:
        """``poll_interval`` seconds of the clock, or less if nudged."""
        if self._nudged:
            self._nudged = False
            return
        sleeper = asyncio.ensure_future(self.clock.sleep(self._poll_interval))
        self._sleeper = sleeper
        try:
            await asyncio.wait((sleeper,))
        finally:
            self._sleeper = None
            sleeper.cancel()
        self._nudged = False

    async def _tail_the_log(self) -> None:
        """Every ``poll_interval`` seconds, one read of the head, or at once
        when the log tells of a commit not published here: if the log is
        past the last seq published here, another process wrote. Its
        events are offered to the watchers, and the followers are woken (they
        read the log from where they are). No watcher or follower polls."""
        try:
            await self._tail_loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.critical("the tail failed", exc_info=exc)
            if self._on_crash is None:
                raise
            self._on_crash(exc)

    async def _tail_loop(self) -> None:
        while True:
            await self._wait()
            try:
                # A commit the log told of needs no read of the head; the
                # clock's wake (a notice lost, say) reads it.
                head = self._told
                if head <= self._seen_seq:
                    head = (await self._log.head()).seq
                if head <= self._seen_seq:
                    continue
                for arrived in self._followers:
                    arrived.set()
                if self._watchers:
                    async for env in self._log.scan(self._seen_seq, head):
                        offers = self._watchers.get(env.stream)
                        for offer in offers or ():
                            offer(env)
                self._seen_seq = max(self._seen_seq, head)
            except CorruptionError:
                raise  # damage does not heal: the tail would never get past it
            except StorageError as exc:  # the disk (full, busy, an I/O error): go on
                log.warning("tailing the log failed; trying again", error=str(exc))

    # -- the log as a stream -----------------------------------------------

    async def events(
        self,
        after: int = 0,
        *,
        follow: bool = False,
        job_id: str | None = None,
        job_type: str | None = None,
        types: Iterable[str] | None = None,
        user: UserArg = None,
        buffer: int = 10_000,
        on_overflow: Callable[[int], None] | None = None,
    ) -> AsyncGenerator[Envelope, None]:
        """The log's envelopes with ``seq > after``, in order; optionally filtered
        to one job's stream (``job_id``), to the jobs of one type (``job_type``,
        with their marks and assets) and to some event types (``types``).

        Without ``follow`` it ends at the head of the log. With ``follow`` it
        then goes on with live events, with no gap and no duplicate: it
        subscribes first, reads the log up to the head, then drains the live
        buffer by ``seq``; whenever the next live event is not the next
        ``seq`` (its buffer of ``buffer`` envelopes overflowed because the
        consumer was slow, or another process wrote), it reads the missing
        ones from the log, as it does when the tail finds that another
        process wrote. A slow consumer never slows the Stower; when its
        buffer overflows, ``on_overflow`` is called with the ``seq`` of the
        first live envelope dropped (once until it catches up again), and
        nothing is lost: the dropped ones are read from the log. With
        ``user``, only the events of that user's jobs (and of their marks
        and assets) are given. ``LedgerClosed`` if not started or closed;
        a follower returns once closed.
        """
        self._check_running()
        after = _seq(after, "after")
        if job_id is not None:
            _id(job_id, "job_id")
        job_type = _optional_text(job_type, "job_type")
        buffer = _count(buffer, "buffer", most=10_000_000)
        if on_overflow is not None and not callable(on_overflow):
            raise ValidationError("must be callable", field="on_overflow")
        names = _event_types(types)
        wanted = None if names is None else frozenset(names)
        owned = await self._jobs_filter(user, job_type)

        def matches(env: Envelope) -> bool:
            if job_id is not None and env.stream != job_id:
                return False
            if wanted is not None and env.type not in wanted:
                return False
            return owned is None or owned(env)

        if not follow:
            async for env in self._log.scan(after):
                if matches(env):
                    yield env
            return

        live: deque[Envelope] = deque()
        arrived = asyncio.Event()

        overflowed = False

        def on_event(env: Envelope) -> None:
            nonlocal overflowed
            if len(live) < buffer:
                live.append(env)
            elif not overflowed:  # dropped: the gap is read back from the log
                overflowed = True
                if on_overflow is not None:
                    on_overflow(env.seq)
            arrived.set()

        subscription = self._bus.subscribe(on_event)
        self._followers.add(arrived)
        last = after
        try:
            while True:
                if self._closed:
                    if self._failure is not None:  # closed by a failure: say so
                        raise LedgerClosed(self._failure)
                    return
                page = await self._log.read(last, 1000)
                if page:
                    for env in page:
                        last = env.seq
                        if matches(env):
                            yield env
                    continue
                gap = False
                while live:
                    env = live.popleft()
                    if env.seq <= last:
                        continue
                    if env.seq != last + 1:
                        live.appendleft(env)
                        gap = True
                        break
                    last = env.seq
                    if matches(env):
                        yield env
                if gap:
                    continue
                arrived.clear()
                if live:
                    continue
                overflowed = False  # caught up: a later overflow is told again
                # Woken by a live event, or by the tail when another process wrote.
                await arrived.wait()
        finally:
            self._followers.discard(arrived)
            subscription.unsubscribe()

    async def _jobs_filter(
        self, user: UserArg, job_type: str | None
    ) -> Callable[[Envelope], bool] | None:
        """A filter passing the envelopes of the jobs of ``user`` (ownership) and
        of ``job_type``, with their marks and assets; ``None`` if neither is given."""
        owner = _as_user(user)
        if owner is None and job_type is None:
            return None
        jobs: set[str] = set()
        cursor: int | None = None
        while True:
            page = await self._log.list_jobs(
                user_id=owner.id if owner else None,
                tenant=owner.tenant if owner else None,
                job_type=job_type,
                before_seq=cursor,
                limit=1000,
            )
            jobs.update(j.id for j in page)
            if len(page) < 1000:
                break
            cursor = page[-1].created_seq

        def passes(env: Envelope) -> bool:
            data = env.data
            if (
                isinstance(data, JobCreated)
                and (owner is None or _owns_user(data.user, owner))
                and (job_type is None or data.job_type == job_type)
            ):
                jobs.add(env.stream)
            if env.type.startswith("job."):
                return env.stream in jobs
            return getattr(data, "job_id", None) in jobs

        return passes

    def observe(
        self,
        *,
        after: int | None = None,
        job_id: str | None = None,
        job_type: str | None = None,
        types: Iterable[str] | None = None,
        user: UserArg = None,
    ) -> Observable[Envelope]:
        """The same stream as ``events(follow=True)``, as a reactivex Observable.

        Emits on the running asyncio loop. ``after=None`` starts at the head
        (live only); give a ``seq`` to catch up first. Disposing the
        subscription stops it.
        """
        type_list = _event_types(types)

        def subscribe(
            observer: ObserverBase[Envelope], scheduler: SchedulerBase | None = None
        ) -> Any:
            # Live only: from the last seq committed here when subscribing (not
            # when the task first runs), so nothing committed after is missed.
            committed = self._last_committed() if self._last_committed is not None else 0
            head = max(self._seen_seq, committed)

            async def pump() -> None:
                start = after if after is not None else head
                try:
                    async for env in self.events(
                        start,
                        follow=True,
                        job_id=job_id,
                        job_type=job_type,
                        types=type_list,
                        user=user,
                    ):
                        observer.on_next(env)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    observer.on_error(exc)
                else:
                    observer.on_completed()

            task = asyncio.get_running_loop().create_task(pump(), name="jobledger-observe")

            def dispose() -> None:
                task.cancel()

            return Disposable(dispose)

        return reactivex.create(subscribe)
