"""Which PostgreSQL driver the backend uses: asyncpg against psycopg 3 (async),
measured on the work the backend does, against the same server in one run.

    python bench/drivers.py [--url postgresql://postgres@127.0.0.1:5432/test] [--n 2000]

Three measures, each the median of three rounds, alternating drivers:

- ``append``: one write transaction as the Stower's (take the append lock
  and read the head in one statement, insert 4 events with ``executemany``,
  upsert one job row, ``pg_notify``, commit), one after another;
- ``read``: a job row by its primary key (``get``), one after another;
- ``scan``: 100,000 event rows read in chunks of 5,000.

The figures are in docs/architecture.md ("Choosing the PostgreSQL driver").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

URL = os.environ.get("JOBLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA = "bench_drivers"

_SETUP = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};
CREATE TABLE {SCHEMA}.events (seq bigint PRIMARY KEY, stream text NOT NULL, data bytea NOT NULL,
    hash text NOT NULL);
CREATE TABLE {SCHEMA}.jobs (id text PRIMARY KEY, status text NOT NULL, doc bytea NOT NULL);
CREATE OR REPLACE FUNCTION {SCHEMA}.begin_append(key bigint)
RETURNS TABLE (seq bigint, hash text) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(key);
    RETURN QUERY SELECT e.seq, e.hash FROM {SCHEMA}.events AS e ORDER BY e.seq DESC LIMIT 1;
END $$;
"""
_DATA = b'{"type":"job.created","job_id":"job_x","job_type":"noop","params":{"i":1}}'
_DOC = b'{"id":"job_x","status":"pending","params":{"i":1}}' * 4


async def _asyncpg_suite(n: int) -> dict[str, float]:
    import asyncpg

    conn = await asyncpg.connect(URL)
    try:
        await conn.execute(_SETUP)
        seq = 0

        async def append_one() -> None:
            nonlocal seq
            async with conn.transaction():
                await conn.fetchrow(f"SELECT * FROM {SCHEMA}.begin_append($1)", 42)
                rows = [(seq + i + 1, f"job_{seq}", _DATA, "h" * 64) for i in range(4)]
                await conn.executemany(f"INSERT INTO {SCHEMA}.events VALUES ($1, $2, $3, $4)", rows)
                await conn.execute(
                    f"INSERT INTO {SCHEMA}.jobs VALUES ($1, 'pending', $2)"
                    " ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc",
                    f"job_{seq}",
                    _DOC,
                )
                await conn.execute("SELECT pg_notify('bench_drivers', $1)", str(seq))
            seq += 4

        async def read_one() -> None:
            await conn.fetchrow(f"SELECT doc FROM {SCHEMA}.jobs WHERE id = $1", "job_0")

        async def scan() -> None:
            last = 0
            while rows := await conn.fetch(
                f"SELECT seq, stream, data, hash FROM {SCHEMA}.events WHERE seq > $1"
                " ORDER BY seq LIMIT 5000",
                last,
            ):
                last = rows[-1][0]

        return await _measure(n, append_one, read_one, scan)
    finally:
        await conn.close()


async def _psycopg_suite(n: int) -> dict[str, float]:
    import psycopg

    conn = await psycopg.AsyncConnection.connect(URL, autocommit=True)
    try:
        await conn.execute(_SETUP.encode())
        seq = 0

        async def append_one() -> None:
            nonlocal seq
            async with conn.transaction():
                await (
                    await conn.execute(f"SELECT * FROM {SCHEMA}.begin_append(%s)", (42,))
                ).fetchone()
                rows = [(seq + i + 1, f"job_{seq}", _DATA, "h" * 64) for i in range(4)]
                async with conn.cursor() as cur:
                    await cur.executemany(
                        f"INSERT INTO {SCHEMA}.events VALUES (%s, %s, %s, %s)",
                        rows,
                    )
                await conn.execute(
                    f"INSERT INTO {SCHEMA}.jobs VALUES (%s, 'pending', %s)"
                    " ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc",
                    (f"job_{seq}", _DOC),
                )
                await conn.execute("SELECT pg_notify('bench_drivers', %s)", (str(seq),))
            seq += 4

        async def read_one() -> None:
            await (
                await conn.execute(f"SELECT doc FROM {SCHEMA}.jobs WHERE id = %s", ("job_0",))
            ).fetchone()

        async def scan() -> None:
            last = 0
            while True:
                cur = await conn.execute(
                    f"SELECT seq, stream, data, hash FROM {SCHEMA}.events WHERE seq > %s"
                    " ORDER BY seq LIMIT 5000",
                    (last,),
                )
                rows = await cur.fetchall()
                if not rows:
                    return
                last = rows[-1][0]

        return await _measure(n, append_one, read_one, scan)
    finally:
        await conn.close()


async def _measure(
    n: int,
    append_one: Callable[[], Awaitable[None]],
    read_one: Callable[[], Awaitable[None]],
    scan: Callable[[], Awaitable[None]],
) -> dict[str, float]:
    t0 = time.perf_counter()
    for _ in range(n):
        await append_one()
    appends = n / (time.perf_counter() - t0)
    while True:  # the scan reads 100,000 events
        await append_one()
        if n * 4 >= 100_000:
            break
        n += 1
    t0 = time.perf_counter()
    for _ in range(n):
        await read_one()
    reads = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    await scan()
    scanned = 1 / (time.perf_counter() - t0)
    return {"append tx/s": appends, "get /s": reads, "scans of 100k /s": scanned}


async def main() -> None:
    global URL
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=URL)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    URL = args.url
    results: dict[str, list[dict[str, float]]] = {"asyncpg": [], "psycopg": []}
    for _ in range(3):
        results["asyncpg"].append(await _asyncpg_suite(args.n))
        results["psycopg"].append(await _psycopg_suite(args.n))
    for driver, rounds in results.items():
        medians = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        print(driver, {k: round(v, 1) for k, v in medians.items()})
    import asyncpg

    conn: Any = await asyncpg.connect(URL)
    await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
