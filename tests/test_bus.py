"""The EventBus: order, isolation between buses, failures routed to us, request/reply."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from jobledger.core import (
    Envelope,
    JobFailed,
    JobStart,
    LedgerClosed,
    ValidationError,
)
from jobledger.eventbus import EventBus, Pending, Reply, observable

from .conftest import eventually


def envelopes(n: int, start: int = 1) -> list[Envelope]:
    types = ["job.failed", "job.started", "job.progressed"]
    return [
        Envelope(
            seq=i,
            event_id=f"e{i}",
            stream="s",
            version=i,
            type=types[i % 3],
            time=datetime(2026, 1, 1, tzinfo=UTC),
            actor="a",
            data=JobFailed(job_id="s", attempt=1, error="e"),
            hash="h",
        )
        for i in range(start, start + n)
    ]


async def test_delivery_keeps_publish_order_across_channels() -> None:
    bus = EventBus()
    seen: list[int] = []
    seen_async: list[int] = []

    async def slow(env: Envelope) -> None:
        await asyncio.sleep(0)
        seen_async.append(env.seq)

    bus.subscribe(lambda env: seen.append(env.seq))
    bus.subscribe(slow)
    bus.publish(envelopes(500))
    bus.publish(envelopes(500, start=501))
    await bus.drain()
    assert seen == list(range(1, 1001))
    assert seen_async == list(range(1, 1001))
    assert bus.statistics().events_published == 1000


async def test_subscriptions_by_type_and_unsubscribe() -> None:
    bus = EventBus()
    failed: list[int] = []
    sub = bus.subscribe(lambda env: failed.append(env.seq), "job.failed")
    bus.publish(envelopes(6))
    await bus.drain()
    assert failed == [3, 6]
    sub.unsubscribe()
    sub.unsubscribe()  # idempotent
    bus.publish(envelopes(3, start=7))
    await bus.drain()
    assert failed == [3, 6]


async def test_two_buses_share_nothing() -> None:
    a, b = EventBus(), EventBus()
    got_a: list[int] = []
    got_b: list[int] = []
    a.subscribe(lambda env: got_a.append(env.seq))
    b.subscribe(lambda env: got_b.append(env.seq))
    a.publish(envelopes(2))
    await a.drain()
    await b.drain()
    assert got_a == [1, 2] and got_b == []


async def test_a_failing_subscriber_is_reported_and_harms_no_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    errors: list[tuple[str, str]] = []
    bus = EventBus(on_error=lambda exc, where: errors.append((repr(exc), where)))
    seen: list[int] = []

    def broken(env: Envelope) -> None:
        raise RuntimeError(f"boom {env.seq}")

    bus.subscribe(broken)
    bus.subscribe(lambda env: seen.append(env.seq))
    bus.publish(envelopes(3))  # publish itself never raises
    await bus.drain()
    assert seen == [1, 2, 3]
    assert [e for e, _ in errors] == [repr(RuntimeError(f"boom {i}")) for i in (1, 2, 3)]
    assert "broken" in errors[0][1]
    assert bus.statistics().handler_errors == 3
    assert capsys.readouterr().out == ""  # nothing printed by pyventus


async def test_send_needs_a_handler_and_a_command() -> None:
    bus = EventBus()
    with pytest.raises(LedgerClosed):
        await bus.send(JobStart(job_id="j", worker="w", expected_version=1))
    with pytest.raises(ValidationError):
        await bus.send({"type": "job:start"})  # type: ignore[arg-type]


async def test_send_returns_the_handlers_answer_or_raises_its_rejection() -> None:
    bus = EventBus()
    answers: list[str] = []

    async def handler(batch: Sequence[Pending]) -> None:
        for command, future in batch:
            assert isinstance(command, JobStart)
            answers.append(command.job_id)
            if command.job_id == "bad":
                future.set_exception(ValidationError("bad job", field="job_id"))
            else:
                future.set_result(tuple(envelopes(1)))

    sub = bus.handle_commands(handler)
    with pytest.raises(RuntimeError):
        bus.handle_commands(handler)
    reply = await bus.send(JobStart(job_id="ok", worker="w", expected_version=1))
    assert [e.seq for e in reply] == [1]
    with pytest.raises(ValidationError) as caught:
        await bus.send(JobStart(job_id="bad", worker="w", expected_version=1))
    assert caught.value.field == "job_id"
    assert answers == ["ok", "bad"]
    sub.unsubscribe()
    with pytest.raises(LedgerClosed):
        await bus.send(JobStart(job_id="ok", worker="w", expected_version=1))


async def test_commands_are_delivered_in_send_order() -> None:
    bus = EventBus()
    order: list[str] = []

    sizes: list[int] = []

    async def handler(batch: Sequence[Pending]) -> None:
        sizes.append(len(batch))
        for command, future in batch:
            assert isinstance(command, JobStart)
            order.append(command.job_id)
            future.set_result(())

    bus.handle_commands(handler)
    await asyncio.gather(
        *(bus.send(JobStart(job_id=f"j{i}", worker="w", expected_version=1)) for i in range(200))
    )
    await bus.send(JobStart(job_id="last", worker="w", expected_version=1))
    assert order == [f"j{i}" for i in range(200)] + ["last"]
    # Commands sent in one turn of the loop cross the bus together.
    assert sizes == [200, 1]
    assert bus.statistics().commands_sent == 201


async def test_commands_sent_before_the_handler_leaves_reach_it() -> None:
    bus = EventBus()
    got: list[str] = []

    async def handler(batch: Sequence[Pending]) -> None:
        for command, future in batch:
            assert isinstance(command, JobStart)
            got.append(command.job_id)
            future.set_result(())

    sub = bus.handle_commands(handler)
    sent = [
        asyncio.ensure_future(bus.send(JobStart(job_id=f"j{i}", worker="w", expected_version=1)))
        for i in range(3)
    ]
    await asyncio.sleep(0)  # one loop turn: the sends are queued, not yet handed over
    sub.unsubscribe()
    await asyncio.gather(*sent)
    assert got == ["j0", "j1", "j2"]
    with pytest.raises(LedgerClosed):
        await bus.send(JobStart(job_id="late", worker="w", expected_version=1))


async def test_send_waits_its_turn_when_max_in_flight_commands_are_out() -> None:
    bus = EventBus(max_in_flight=2)
    held: list[tuple[str, asyncio.Future[Reply]]] = []

    async def handler(batch: Sequence[Pending]) -> None:  # answers only when told
        for command, future in batch:
            assert isinstance(command, JobStart)
            held.append((command.job_id, future))

    bus.handle_commands(handler)
    sends = [
        asyncio.ensure_future(bus.send(JobStart(job_id=f"j{i}", worker="w", expected_version=1)))
        for i in range(5)
    ]
    await eventually(lambda: len(held) == 2)
    assert bus.statistics().commands_in_flight == 2
    sends[3].cancel()  # a waiting sender gives up: its turn passes to the next
    held[0][1].set_result(())
    await eventually(lambda: len(held) == 3)
    held[1][1].set_result(())
    await eventually(lambda: len(held) == 4)
    assert [job_id for job_id, _ in held] == ["j0", "j1", "j2", "j4"]
    for _, future in held[2:]:
        future.set_result(())
    await asyncio.gather(*(sends[i] for i in (0, 1, 2, 4)))
    assert sends[3].cancelled()
    assert bus.statistics().commands_in_flight == 0
    with pytest.raises(ValueError):
        EventBus(max_in_flight=0)


async def test_observable_pushes_live_envelopes_and_disposes() -> None:
    bus = EventBus()
    got: list[int] = []
    disposable = observable(bus, "job.failed").subscribe(lambda env: got.append(env.seq))
    bus.publish(envelopes(6))
    await bus.drain()
    disposable.dispose()
    bus.publish(envelopes(3, start=7))
    await bus.drain()
    assert got == [3, 6]


async def test_a_closed_bus_refuses_new_subscribers() -> None:
    bus = EventBus()
    await bus.aclose()
    assert bus.closed
    with pytest.raises(LedgerClosed):
        bus.subscribe(lambda env: None)


async def test_two_drains_while_a_delivery_is_scheduled_both_return() -> None:
    bus = EventBus()
    seen: list[int] = []
    bus.subscribe(lambda env: seen.append(env.seq))
    drains = [asyncio.ensure_future(bus.drain()) for _ in range(2)]  # they start first
    bus.publish(envelopes(3))  # its delivery runs once this task yields, after theirs begin
    await asyncio.wait_for(asyncio.gather(*drains), timeout=5)
    assert seen == [1, 2, 3]


async def test_a_subscriber_unsubscribed_during_a_delivery_gets_nothing_after() -> None:
    # A plain subscriber unsubscribes the others when it sees seq 1 (as a
    # waiter does when its job ends): whichever order the bus calls them in,
    # none of them is called after that.
    bus = EventBus()
    late: list[int] = []
    unsubscribed = [False]

    def other(env: Envelope) -> None:
        if unsubscribed[0]:
            late.append(env.seq)

    others = [bus.subscribe(other) for _ in range(16)]

    def first(env: Envelope) -> None:
        unsubscribed[0] = True
        for subscription in others:
            subscription.unsubscribe()

    bus.subscribe(first)
    bus.publish(envelopes(1))
    await bus.drain()
    assert late == []
