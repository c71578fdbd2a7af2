"""reactivex Observables over the bus's live events."""

from __future__ import annotations

from typing import Any

import reactivex
from reactivex import Observable
from reactivex.abc import ObserverBase, SchedulerBase
from reactivex.disposable import Disposable

from jobledger.core import Envelope

from .bus import EventBus

__all__ = ["observable"]


def observable(bus: EventBus, *event_types: str) -> Observable[Envelope]:
    """A cold Observable of the live envelopes of ``event_types`` (all if none).

    Each subscription subscribes to the bus; disposing it unsubscribes. Events
    are pushed on the asyncio loop, in ``seq`` order. This is live only: use
    ``Ledger.observe`` for a stream that first catches up from the log.
    """

    def subscribe(observer: ObserverBase[Envelope], scheduler: SchedulerBase | None = None) -> Any:
        subscription = bus.subscribe(observer.on_next, *event_types)
        return Disposable(subscription.unsubscribe)

    return reactivex.create(subscribe)
