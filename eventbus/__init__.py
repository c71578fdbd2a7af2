"""jobledger.eventbus: the in-process EventBus on pyventus, request/reply and
reactivex Observables. Imports only ``jobledger.core``."""

from .bus import (
    BusStatistics,
    CommandHandler,
    EventBus,
    EventHandler,
    Pending,
    Reply,
    Subscription,
)
from .rx import observable

__all__ = [
    "BusStatistics",
    "CommandHandler",
    "EventBus",
    "EventHandler",
    "Pending",
    "Reply",
    "Subscription",
    "observable",
]
