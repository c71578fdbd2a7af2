"""Shared fixtures: real SQLite files in a temporary folder, the real bus,
the real Stower. Nothing of ours is mocked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import jobledger
import jobledger.core
from jobledger.eventbus import EventBus
from jobledger.store import EventLog, MemoryLog, SqliteLog
from jobledger.stower import Stower

from .model_server import ModelServer


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture(params=["memory", "sqlite"])
async def log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventLog]:
    """Each backend in turn: the contract is the same for all."""
    store: EventLog = MemoryLog() if request.param == "memory" else SqliteLog(tmp_path / "c.db")
    await store.open()
    yield store
    await store.close()


class Engine:
    """A log with a bus and a running Stower: the write path, without workers."""

    def __init__(self, log: EventLog, bus: EventBus, stower: Stower) -> None:
        self.log = log
        self.bus = bus
        self.stower = stower


@asynccontextmanager
async def running(log: EventLog) -> AsyncIterator[Engine]:
    """Open ``log``, start a bus and a Stower on it; stop and close after."""
    await log.open()
    bus = EventBus()
    stower = Stower(log, bus)
    await stower.start()
    try:
        yield Engine(log, bus, stower)
    finally:
        await stower.stop()
        await bus.aclose()
        await log.close()


@pytest.fixture
async def engine(log: EventLog) -> AsyncIterator[Engine]:
    async with running(log) as parts:
        yield parts


@pytest.fixture
async def sqlite_engine(db_path: Path) -> AsyncIterator[Engine]:
    async with running(SqliteLog(db_path)) as parts:
        yield parts


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], *, within: float = 10.0
) -> None:
    """Wait until ``check()`` holds (a condition, not a duration); fail after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result: Any = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0)  # yield to the loop; no fixed delay


def create(
    job_id: str, job_type: str = "t", user: str = "alice", **kw: Any
) -> jobledger.core.JobCreate:
    return jobledger.core.JobCreate(
        job_id=job_id, job_type=job_type, user=jobledger.User(id=user), actor=user, **kw
    )


def note(resource_id: str, text: str = "a note") -> jobledger.Annotation:
    """A W3C comment on the whole of ``resource_id`` saying ``text``."""
    return jobledger.Annotation(
        motivation="commenting",
        target=jobledger.Target(source=resource_id),
        body=[jobledger.TextualBody(value=text)],
    )


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    """A fake OpenAI-compatible server on a free local port (tests/model_server.py)."""
    with ModelServer() as server:
        yield server
