"""jobledger.testing: the backend contract as pytest test classes, shipped
with the package so a new backend can run it.

A backend's own test module subclasses :class:`BackendContract` (or one of
its parts) and provides one fixture, ``new_backend``: a function returning a
new, empty, unopened backend each time it is called::

    import pytest
    from jobledger.store import MemoryLog
    from jobledger.testing import BackendContract

    class TestMemoryLog(BackendContract):
        @pytest.fixture
        def new_backend(self):
            return MemoryLog

Each test is named for the promise it checks (gapless ``seq`` under
concurrent appends, expected-version conflicts, atomic batches, the hash
chain, read model equal to replay, claim exactly once, cursor pages stable
under concurrent writes, the commit notification, …), so a backend that
breaks one fails the test of that name. Needs pytest and pytest-asyncio
(the ``test`` extra).
"""

from .log_contract import BackendFixtures, LogContract
from .read_model_contract import Engine, ReadModelContract
from .records import START, Chain, completed, created, deleted, started

__all__ = [
    "START",
    "BackendContract",
    "BackendFixtures",
    "Chain",
    "Engine",
    "LogContract",
    "ReadModelContract",
    "completed",
    "created",
    "deleted",
    "started",
]


class BackendContract(LogContract, ReadModelContract):
    """The whole contract: the log (:class:`LogContract`) and the read model,
    scheduling and audit view (:class:`ReadModelContract`)."""
