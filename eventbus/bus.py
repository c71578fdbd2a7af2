"""The EventBus: commands in, committed events out, on pyventus.

One :class:`EventBus` per ledger. Each bus owns two pyventus ``EventLinker``
subclasses made for it alone (one for commands, one for events), so two
ledgers in one process share no subscriptions; channels are plain strings:
the command's wire name (``job:start``) or the event's (``job.started``).

Why our own processing service (measured on pyventus 0.8, see DESIGN.md):
its default ``AsyncIOProcessingService`` makes one task per emit and the
tasks run in whatever order the loop picks, so ``job.completed`` could reach
a subscriber before the ``job.progressed`` emitted just before it; its
``enforce_submission_order`` mode keeps order but holds the queue in a
module-global task set shared by every emitter in the process. The bus
therefore plugs in :class:`_OrderedProcessing`: one FIFO per bus, drained by
one task the bus owns, so emit order is delivery order, there is no task per
emit, and ``publish`` never blocks the Stower (it only appends).

Batches, not single messages, cross the bus, and without pyventus's
``EventEmitter``: its emit costs a uuid, a timestamp and a gather, which
makes a task per subscriber (about 15 µs and two turns of the loop, more
than the Stower spends deciding a command). The bus keeps its subscribers
in its pyventus linkers and delivers itself. ``send`` queues its command,
and the commands sent in one turn of the event loop go together to the
command handler's ``execute`` on the commands FIFO. ``publish`` schedules
one delivery of the committed batch for when the Stower yields (after it
has answered its senders): there, each subscription that is a plain
function is called at once, in turn, and each that is a coroutine function
gets the batch on the events FIFO. Each subscription filters the batch by
event type. Order is kept for each subscriber: batches in publish order,
and a batch in order. (Measured: sequential submits 978 → 1,241 a second,
P1a 782 → 882 jobs a second.)

Handler exceptions never reach pyventus (which would print them to stdout)
nor the emitter: every handler is wrapped, and a failure goes to the bus's
``on_error`` (by default, our structlog logger) and is counted.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import types
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from pyventus.core.processing import ProcessingService
from pyventus.events import EventLinker, EventSubscriber

from jobledger.core import (
    COMMAND_TYPES,
    Command,
    Envelope,
    LedgerClosed,
    ValidationError,
    get_logger,
)

__all__ = [
    "BusStatistics",
    "CommandHandler",
    "EventBus",
    "EventHandler",
    "Pending",
    "Reply",
    "Subscription",
]

log = get_logger("eventbus")

Reply = tuple[Envelope, ...]
"""What ``send`` returns: the committed events the command produced, in order."""

EventHandler = Callable[[Envelope], Awaitable[None] | None]
"""A subscriber: called with each envelope, in ``seq`` order. Must be quick."""

Pending = tuple[Command, "asyncio.Future[Reply]"]
"""A sent command and the future its sender waits on."""

CommandHandler = Callable[[Sequence[Pending]], Awaitable[None]]
"""The one command handler (the Stower): takes sent commands with the futures
to answer, in send order."""

_COMMANDS = "commands"
_EVENTS = "events"

_bus_numbers = itertools.count(1)


class BusStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A bus's counters. ``queued`` and ``max_queued`` count batches (of commands
    sent in one loop turn, or of events committed together) not yet delivered."""

    commands_sent: int
    commands_in_flight: int
    events_published: int
    queued: int
    max_queued: int
    subscribers: int
    handler_errors: int


class _OrderedProcessing(ProcessingService):
    """A pyventus processing service that runs submissions one at a time, in order."""

    def __init__(self, on_error: Callable[[BaseException], None]) -> None:
        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.Event | None = None
        self._on_error = on_error
        self.max_queued = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    def submit(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._queue.append((callback, args, kwargs))
        self.max_queued = max(self.max_queued, len(self._queue))
        if self._task is None:
            self._start()

    def _start(self) -> None:
        if self._idle is None:
            self._idle = asyncio.Event()
        self._idle.clear()
        self._task = asyncio.get_running_loop().create_task(
            self._drain(), name="jobledger-bus-drain"
        )
        self._task.add_done_callback(self._drained)

    def _drained(self, task: asyncio.Task[None]) -> None:
        # A done callback, not a ``finally``: a task cancelled before it ever
        # ran (as when the whole loop is torn down) runs no ``finally``.
        self._task = None
        if self._queue and not task.get_loop().is_closed():
            self._start()  # cancelled with work left: deliver it still
        elif self._idle is not None:
            self._idle.set()

    async def _drain(self) -> None:
        while self._queue:
            callback, args, kwargs = self._queue.popleft()
            try:
                await callback(*args, **kwargs)
            except Exception as exc:  # pragma: no cover - handlers are wrapped
                self._on_error(exc)

    async def wait_idle(self) -> None:
        """Return once everything submitted so far has been delivered."""
        while self._task is not None and self._idle is not None:
            await self._idle.wait()


def _is_async(handler: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - an object with async __call__
    )


async def _awaited(
    result: Awaitable[Any], report: Callable[[BaseException, str], None], where: str
) -> None:
    try:
        await result
    except Exception as exc:
        report(exc, where)


class Subscription:
    """A live subscription. ``unsubscribe()`` stops delivery; idempotent."""

    def __init__(self, subscriber: EventSubscriber, bus: EventBus) -> None:
        self._subscriber = subscriber
        self._bus = bus
        self._active = True

    @property
    def active(self) -> bool:
        return self._active

    def unsubscribe(self) -> None:
        if self._active:
            self._active = False
            self._subscriber.unsubscribe()
            self._bus._inline.pop(self._subscriber, None)
            self._bus._queued.discard(self._subscriber)
            self._bus._subscriber_count -= 1


def _make_linker(kind: str, number: int) -> type[EventLinker]:
    # One EventLinker subclass per bus and kind: pyventus keeps its registry
    # on the class, so a fresh subclass is a fresh, private registry.
    return types.new_class(f"JobledgerBus{number}{kind}", (EventLinker,), {"debug": False})


class EventBus:
    """Commands to the Stower, committed events to everyone, in order.

    ``publish`` never blocks. ``send`` waits for the Stower's answer and is
    bounded: at most ``max_in_flight`` commands are in flight at once; beyond
    that, ``send`` waits (backpressure).
    """

    def __init__(
        self,
        *,
        max_in_flight: int = 10_000,
        on_error: Callable[[BaseException, str], None] | None = None,
    ) -> None:
        number = next(_bus_numbers)
        self._on_error_hook = on_error
        self._commands = _make_linker("Commands", number)
        self._events = _make_linker("Events", number)
        self._command_processing = _OrderedProcessing(self._processing_error)
        self._event_processing = _OrderedProcessing(self._processing_error)
        # A plain-function subscriber's delivery, called inside ``publish``.
        self._inline: dict[EventSubscriber, Callable[[Sequence[Envelope]], None]] = {}
        self._queued: set[EventSubscriber] = set()  # coroutine subscribers (on the FIFO)
        self._undelivered = 0  # published batches whose delivery has not run yet
        self._all_delivered: asyncio.Event | None = None  # set when that is 0 again
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._max_in_flight = max_in_flight
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._command_handler: EventSubscriber | None = None
        self._outbox: list[Pending] = []
        self._closed = False
        self._commands_sent = 0
        self._commands_in_flight = 0
        self._events_published = 0
        self._handler_errors = 0
        self._subscriber_count = 0

    # -- errors ----------------------------------------------------------

    def _processing_error(self, exc: BaseException) -> None:  # pragma: no cover - defensive
        self._report(exc, "bus")

    def _report(self, exc: BaseException, where: str) -> None:
        self._handler_errors += 1
        if self._on_error_hook is not None:
            try:
                self._on_error_hook(exc, where)
                return
            except Exception as hook_exc:  # the hook itself failed: fall back to the log
                log.error("on_error hook failed", error=repr(hook_exc))
        log.error("subscriber failed", where=where, error=repr(exc), exc_info=exc)

    def _wrap(
        self, handler: EventHandler, where: str, types: frozenset[str] | None
    ) -> Callable[[Sequence[Envelope]], Awaitable[None]]:
        """The pyventus callback for ``handler``: calls it with each envelope of a
        published batch whose type is one of ``types`` (all if ``None``), in order,
        and reports its failures instead of raising them."""
        is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - an object with async __call__
        )
        report = self._report

        if is_async:

            async def call_async(batch: Sequence[Envelope]) -> None:
                for env in batch:
                    if types is None or env.type in types:
                        try:
                            await handler(env)  # type: ignore[misc]
                        except Exception as exc:
                            report(exc, where)

            return call_async

        async def call_sync(batch: Sequence[Envelope]) -> None:
            for env in batch:
                if types is None or env.type in types:
                    try:
                        result = handler(env)
                        if result is not None and inspect.isawaitable(result):
                            await result
                    except Exception as exc:
                        report(exc, where)

        return call_sync

    # -- commands --------------------------------------------------------

    def handle_commands(self, handler: CommandHandler) -> Subscription:
        """Register the one command handler (the Stower).

        It is called with the commands sent, in send order, in batches (those
        sent in one turn of the event loop). Raises ``RuntimeError`` if one is
        registered already. Unsubscribing first delivers what was sent before.
        """
        if self._command_handler is not None:
            raise RuntimeError("this bus already has a command handler")
        subscriber = self._commands.subscribe(_COMMANDS, event_callback=handler, force_async=False)
        self._command_handler = subscriber
        self._subscriber_count += 1
        bus = self

        class _HandlerSubscription(Subscription):
            def unsubscribe(self) -> None:
                if self.active:
                    bus._flush()  # what was sent before goes to this handler
                    bus._command_handler = None
                super().unsubscribe()

        return _HandlerSubscription(subscriber, self)

    async def send(self, command: Command) -> Reply:
        """Send ``command`` to the Stower and wait for its answer.

        Returns the committed events, after they are durable and published.
        Raises what the Stower rejected the command with (``ValidationError``,
        ``NotFound``, ``InvalidTransition``, ``ConcurrencyConflict``,
        ``StorageError``, …), ``ValidationError`` if ``command`` is not a
        command, or ``LedgerClosed`` if no Stower is listening.
        """
        if not isinstance(command, Command):
            raise ValidationError(f"not a command: {type(command).__name__}")
        if self._closed or self._command_handler is None:
            raise LedgerClosed("no Stower is listening on this bus")
        if command.__struct_config__.tag not in COMMAND_TYPES:
            raise ValidationError(f"unknown command type {command.__struct_config__.tag!r}")
        loop = asyncio.get_running_loop()
        if self._commands_in_flight >= self._max_in_flight or self._room_waiters:
            await self._wait_for_room(loop)
        else:
            self._commands_in_flight += 1
        try:
            future: asyncio.Future[Reply] = loop.create_future()
            self._commands_sent += 1
            self._outbox.append((command, future))
            if len(self._outbox) == 1:
                loop.call_soon(self._flush)
            return await future
        finally:
            self._leave()

    async def _wait_for_room(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait, in turn, for an in-flight place (backpressure); it is handed
        over by the ``send`` that gives it up, so the count stays the same."""
        turn: asyncio.Future[None] = loop.create_future()
        self._room_waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._leave()  # handed a place as we were cancelled: pass it on
            elif turn in self._room_waiters:  # (``_leave`` may have dropped it already)
                self._room_waiters.remove(turn)
            raise

    def _leave(self) -> None:
        while self._room_waiters:
            turn = self._room_waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # the place goes to the next in turn
                return
        self._commands_in_flight -= 1

    def _flush(self) -> None:
        """Hand the commands sent so far to pyventus, as one emission."""
        if not self._outbox:
            return
        batch, self._outbox = self._outbox, []
        if self._command_handler is None:  # the Stower went away since they were sent
            for _, future in batch:
                if not future.done():
                    future.set_exception(LedgerClosed("no Stower is listening on this bus"))
            return
        for subscriber in self._commands.get_subscribers_from_events(_COMMANDS):
            self._command_processing.submit(subscriber.execute, batch)

    # -- events ----------------------------------------------------------

    def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Deliver committed envelopes to subscribers, in order. Never blocks.

        Only the Stower calls this, and only after the envelopes are durable.
        """
        if envelopes:
            batch = tuple(envelopes)
            self._events_published += len(batch)
            # Delivered once the publisher yields (it answers its senders
            # first), in publish order: one callback, not a task per subscriber.
            self._undelivered += 1
            asyncio.get_running_loop().call_soon(self._deliver, batch)

    def _deliver(self, batch: tuple[Envelope, ...]) -> None:
        self._undelivered -= 1
        if not self._undelivered and self._all_delivered is not None:
            self._all_delivered.set()
        inline = self._inline
        for subscriber in self._events.get_subscribers_from_events(_EVENTS):
            deliver = inline.get(subscriber)
            if deliver is not None:
                deliver(batch)
            elif subscriber in self._queued:
                self._event_processing.submit(subscriber.execute, batch)
            # (else it was unsubscribed by a handler called before it here)

    def subscribe(self, handler: EventHandler, *event_types: str) -> Subscription:
        """Call ``handler`` with every envelope of ``event_types`` (all types if
        none), in publish order. A plain function is called on the event loop
        as soon as the publisher yields, and must not block; a coroutine
        function is awaited in order on the bus's own task, so a slow one
        delays only the coroutine subscribers after it."""
        if self._closed:
            raise LedgerClosed("the bus is closed")
        where = f"subscriber {getattr(handler, '__qualname__', handler)!r}"
        types = frozenset(event_types) if event_types else None
        if _is_async(handler):
            subscriber = self._events.subscribe(
                _EVENTS, event_callback=self._wrap(handler, where, types), force_async=False
            )
            self._queued.add(subscriber)
        else:
            deliver = self._inline_delivery(handler, where, types)
            subscriber = self._events.subscribe(_EVENTS, event_callback=deliver, force_async=False)
            self._inline[subscriber] = deliver
        self._subscriber_count += 1
        return Subscription(subscriber, self)

    def _inline_delivery(
        self, handler: EventHandler, where: str, types: frozenset[str] | None
    ) -> Callable[[Sequence[Envelope]], None]:
        """A plain-function subscriber's delivery: each envelope of a batch
        whose type it asked for, in order, at once; a failure is reported."""
        report = self._report

        def deliver(batch: Sequence[Envelope]) -> None:
            for env in batch:
                if types is None or env.type in types:
                    try:
                        result = handler(env)
                        if result is not None and inspect.isawaitable(result):
                            # (a plain function that returned an awaitable: run it in order)
                            self._event_processing.submit(_awaited, result, report, where)
                    except Exception as exc:
                        report(exc, where)

        return deliver

    async def drain(self) -> None:
        """Wait until every command sent and every event published so far is delivered."""
        self._flush()
        await self._command_processing.wait_idle()
        if self._undelivered:  # (the deliveries already scheduled run first)
            if self._all_delivered is None or self._all_delivered.is_set():
                self._all_delivered = asyncio.Event()  # (shared by every drain waiting)
            await self._all_delivered.wait()
        await self._event_processing.wait_idle()

    async def aclose(self) -> None:
        """Deliver what is queued, then refuse new commands and subscriptions. Idempotent."""
        self._closed = True
        await self.drain()
        self._commands.remove_all()
        self._events.remove_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def statistics(self) -> BusStatistics:
        """A snapshot of the bus's counters. Never blocks."""
        return BusStatistics(
            commands_sent=self._commands_sent,
            commands_in_flight=self._commands_in_flight,
            events_published=self._events_published,
            queued=self._command_processing.queued + self._event_processing.queued,
            max_queued=max(self._command_processing.max_queued, self._event_processing.max_queued),
            subscribers=self._subscriber_count,
            handler_errors=self._handler_errors,
        )
