"""Queues: their capacities, recorded in the log (``queue.configured``), so
every process and host on the log enforces the same one, and read back with
their running counts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from jobledger.core import CorruptionError, Queue, QueueConfigure, get_logger
from jobledger.eventbus import EventBus
from jobledger.store import Backend
from jobledger.workers import QueueCapacity

from .arguments import _actor

__all__ = ["Queues"]

log = get_logger("ledger")


class Queues:
    """The queues of one log through its bus. Each method's contract is that
    of the :class:`jobledger.Ledger` method of its name."""

    def __init__(
        self,
        log: Backend,
        bus: EventBus,
        capacity: QueueCapacity,
        check_open: Callable[[], None],
    ) -> None:
        self._log = log
        self._bus = bus
        self._capacity = capacity
        self._check_open = check_open

    async def record(self, capacities: Mapping[str, int]) -> None:
        """Record ``capacities`` (the ``queues`` a ledger was opened with) in
        the log, where they differ from what it holds, then take the log's
        records as this process's limits. Called once the writer runs."""
        # (sent together: the Stower decides them in one batch, one commit)
        await asyncio.gather(
            *(self._bus.send(QueueConfigure(queue=n, capacity=c)) for n, c in capacities.items())
        )
        try:
            self._capacity.observe(await self._log.queues())
        except CorruptionError as exc:  # a damaged record: verify names it; the writer still checks
            log.warning("the queues' records do not read", error=str(exc))

    async def configure(self, name: str, capacity: int | None, actor: str = "system") -> Queue:
        self._check_open()
        await self._bus.send(QueueConfigure(queue=name, capacity=capacity, actor=_actor(actor)))
        queues = await self._log.queues()
        self._capacity.observe(queues)
        for queue in queues:
            if queue.name == name:
                return queue
        raise AssertionError(f"queue {name!r} was configured but has no record")

    async def queues(self) -> list[Queue]:
        self._check_open()
        return await self._log.queues()
