"""The PostgreSQL server the tests use, and a schema of its own for each log.

The server is ``JOBLEDGER_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Where no server answers, the
PostgreSQL tests are skipped with the reason; under ``CI=true`` they fail
instead, so CI never passes without them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    return os.environ.get("JOBLEDGER_TEST_POSTGRES_URL", DEFAULT_URL)


def _unreachable(url: str) -> str | None:
    """Why the server cannot be used (``None``: it answers)."""
    try:
        import asyncpg
    except ImportError:
        return "asyncpg is not installed (the jobledger[postgres] extra)"

    async def probe() -> None:
        conn = await asyncpg.connect(url, timeout=5)
        await conn.close()

    try:
        _run(probe)
    except Exception as exc:
        return f"no PostgreSQL server answers at {url}: {type(exc).__name__}: {exc}"
    return None


def _run(work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``work()`` to its end on a loop of its own, in a thread: a fixture
    may be asked for while the test's loop runs."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(work())).result()


class Schemas:
    """Makes unique schema names on the test server and drops them after."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[str] = []

    def new(self) -> str:
        name = f"t_{secrets.token_hex(6)}"
        self.made.append(name)
        return name

    def drop_all(self) -> None:
        if not self.made:
            return
        import asyncpg

        async def drop() -> None:
            conn = await asyncpg.connect(self.url, timeout=10)
            try:
                for name in self.made:
                    await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            finally:
                await conn.close()

        _run(drop)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test server's URL; skips (or, under CI=true, fails) when none answers."""
    url = server_url()
    reason = _unreachable(url)
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the PostgreSQL tests cannot run: {reason}")
        pytest.skip(reason)
    return url


@pytest.fixture
def pg_schemas(postgres_url: str) -> Iterator[Schemas]:
    """Fresh schema names on the test server, dropped after the test."""
    schemas = Schemas(postgres_url)
    yield schemas
    schemas.drop_all()
