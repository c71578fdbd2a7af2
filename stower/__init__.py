"""jobledger.stower: the Stower, the only writer of the event log.
Imports ``jobledger.core``, ``jobledger.eventbus`` and ``jobledger.store``."""

from .stower import Stower, StowerStatistics

__all__ = ["Stower", "StowerStatistics"]
