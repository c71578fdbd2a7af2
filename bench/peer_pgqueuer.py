#!/usr/bin/env python
"""Standalone throughput / pickup-latency benchmark for pgqueuer 1.6.0.

Usage: /tmp/venv/bin/python /tmp/peer_pgqueuer.py [--n 5000] [--dsn ...]

Isolation: every pgqueuer object lives in the PostgreSQL schema ``peer_pgqueuer``
(dropped and recreated at start, dropped at the end). This is done with the
library's own setting ``DBSettings.db_schema`` (env var PGQUEUER_SCHEMA), which
schema-qualifies every table/type/function name, *and* with
``search_path=peer_pgqueuer`` on every asyncpg connection. The NOTIFY channel is
database-global, so it is renamed too (PGQUEUER_CHANNEL) to avoid cross-talk with
any other pgqueuer install in the same database.

Consumers: 4 ``QueueManager`` instances, each on its own asyncpg connection,
each ``run()`` with library defaults (batch_size=10, max_concurrent_tasks=None
i.e. unbounded, dequeue_timeout=30s, LISTEN/NOTIFY wake-up). This is how
pgqueuer's own tools/benchmark.py scales ("--dequeue N" = N PgQueuer instances,
each on its own connection, batch size 10).
"""

from __future__ import annotations

import os

# Must be set before pgqueuer's db_settings() is first evaluated (it is cached).
SCHEMA = "peer_pgqueuer"
os.environ["PGQUEUER_SCHEMA"] = SCHEMA
os.environ["PGQUEUER_CHANNEL"] = "ch_peer_pgqueuer"

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import timedelta  # noqa: E402

import asyncpg  # noqa: E402
from pgqueuer.db import AsyncpgDriver  # noqa: E402
from pgqueuer.domain.settings import db_settings  # noqa: E402
from pgqueuer.errors import FailingListenerError  # noqa: E402
from pgqueuer.models import Job  # noqa: E402
from pgqueuer.qm import QueueManager  # noqa: E402
from pgqueuer.queries import Queries  # noqa: E402

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
ENTRYPOINT = "noop"
N_WORKERS = 4


class Tracker:
    """Counts task executions and records task-start times (perf_counter)."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.done = asyncio.Event()
        self.last_done_at = 0.0
        self.started: dict[int, float] = {}
        self.watch: dict[int, asyncio.Event] = {}

    def reset(self, target: int) -> None:
        self.count = 0
        self.target = target
        self.done = asyncio.Event()
        self.last_done_at = 0.0

    def hit(self, key: int) -> None:
        now = time.perf_counter()
        ev = self.watch.get(key)
        if ev is not None:
            self.started[key] = now
            ev.set()
        self.count += 1
        if self.count >= self.target and not self.done.is_set():
            self.last_done_at = now
            self.done.set()


async def connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, server_settings={"search_path": SCHEMA})


async def wait_listening(qm: QueueManager, deadline_s: float = 30.0) -> None:
    """Block until this QueueManager's LISTEN connection round-trips a NOTIFY."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            await qm.listener_healthy(timeout=timedelta(seconds=0.5))
            return
        except FailingListenerError:
            if time.monotonic() > end:
                raise


async def bench(
    dsn: str, n: int, batch: int, lat_samples: int, workers: int, concurrency_limit: int
) -> dict[str, object]:
    settings = db_settings()
    assert settings.db_schema == SCHEMA, settings
    tracker = Tracker()

    # ---- fresh schema + install ------------------------------------------------
    admin = await connect(dsn)
    await admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    await admin.execute(f"CREATE SCHEMA {SCHEMA}")
    admin_q = Queries(AsyncpgDriver(admin))
    await admin_q.install()

    # ---- consumers: `workers` QueueManagers (default 4), one asyncpg connection each
    consumer_conns = [await connect(dsn) for _ in range(workers)]
    qms: list[QueueManager] = []
    for conn in consumer_conns:
        qm = QueueManager(Queries(AsyncpgDriver(conn)))

        @qm.entrypoint(ENTRYPOINT, concurrency_limit=concurrency_limit)
        async def noop(job: Job) -> None:  # no-op task; records start time
            tracker.hit(int(job.payload or b"-1"))

        qms.append(qm)

    # library defaults for QueueManager.run()
    runners = [asyncio.create_task(qm.run()) for qm in qms]

    producer_conn = await connect(dsn)
    q = Queries(AsyncpgDriver(producer_conn))
    result: dict[str, object] = {"peer": "pgqueuer"}
    try:
        for qm in qms:
            await wait_listening(qm)

        # ---- warm-up: one job ---------------------------------------------------
        tracker.reset(1)
        await q.enqueue(ENTRYPOINT, b"-1")
        await asyncio.wait_for(tracker.done.wait(), 30)
        await asyncio.sleep(0.5)

        # ---- (a) one job per enqueue call --------------------------------------
        tracker.reset(n)
        t0 = time.perf_counter()
        for i in range(n):
            await q.enqueue(ENTRYPOINT, str(i).encode())
        t_enq = time.perf_counter() - t0
        await asyncio.wait_for(tracker.done.wait(), 600)
        elapsed = tracker.last_done_at - t0
        result["one_per_call"] = round(n / elapsed, 1)
        result["one_per_call_enqueue_s"] = round(t_enq, 3)
        result["one_per_call_total_s"] = round(elapsed, 3)
        await asyncio.sleep(1.0)  # let status-log buffers flush / queue settle

        # ---- (b) batches of `batch` via list enqueue ---------------------------
        tracker.reset(n)
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            k = min(batch, n - start)
            await q.enqueue(
                [ENTRYPOINT] * k,
                [str(start + j).encode() for j in range(k)],
                [0] * k,
            )
        t_enq = time.perf_counter() - t0
        await asyncio.wait_for(tracker.done.wait(), 600)
        elapsed = tracker.last_done_at - t0
        result[f"batch_{batch}"] = round(n / elapsed, 1)
        result[f"batch_{batch}_enqueue_s"] = round(t_enq, 3)
        result[f"batch_{batch}_total_s"] = round(elapsed, 3)
        await asyncio.sleep(1.0)

        # ---- pickup latency: idle consumers, one job at a time -----------------
        lat_ms: list[float] = []
        tracker.reset(1 << 62)  # never "done"; only per-key events matter
        for s in range(lat_samples):
            key = 1_000_000_000 + s
            ev = asyncio.Event()
            tracker.watch[key] = ev
            await asyncio.sleep(random.uniform(0.010, 0.100))
            t_before = time.perf_counter()
            await q.enqueue(ENTRYPOINT, str(key).encode())
            await asyncio.wait_for(ev.wait(), 60)
            lat_ms.append((tracker.started[key] - t_before) * 1000.0)
            del tracker.watch[key]
        lat_ms.sort()
        result["pickup_p50_ms"] = round(statistics.median(lat_ms), 2)
        result["pickup_p99_ms"] = round(
            statistics.quantiles(lat_ms, n=100, method="inclusive")[98], 2
        )
        result["pickup_max_ms"] = round(lat_ms[-1], 2)
        result["n"] = n
        result["workers"] = (
            f"{workers} x QueueManager.run() defaults (batch_size=10), "
            f"entrypoint concurrency_limit={concurrency_limit}"
        )
    finally:
        # ---- shutdown -----------------------------------------------------------
        for qm in qms:
            qm.shutdown.set()
        outcomes = await asyncio.wait_for(asyncio.gather(*runners, return_exceptions=True), 60)
        for o in outcomes:
            if isinstance(o, BaseException):
                print(f"consumer ended with {o!r}", file=sys.stderr)
        await producer_conn.close()
        for conn in consumer_conns:
            await conn.close()
        await admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await admin.close()
    return result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", default=DEFAULT_DSN)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--latency-samples", type=int, default=50)
    ap.add_argument(
        "--workers",
        type=int,
        default=N_WORKERS,
        help="number of QueueManager instances (one asyncpg connection each)",
    )
    ap.add_argument(
        "--concurrency-limit",
        type=int,
        default=0,
        help="entrypoint concurrency_limit (0 = library default, unlimited)",
    )
    args = ap.parse_args()
    res = asyncio.run(
        bench(
            args.dsn,
            args.n,
            args.batch,
            args.latency_samples,
            args.workers,
            args.concurrency_limit,
        )
    )
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
