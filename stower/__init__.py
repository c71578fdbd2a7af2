"""jobledger.stower: the Stower, the only writer of the event log, and the
sweeper that expires lost leases and timeouts. Imports ``jobledger.core``,
``jobledger.eventbus`` and ``jobledger.store``."""

from .stower import Stower, StowerStatistics
from .sweeper import Sweeper, SweeperStatistics

__all__ = ["Stower", "StowerStatistics", "Sweeper", "SweeperStatistics"]
