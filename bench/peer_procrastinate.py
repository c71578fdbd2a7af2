#!/usr/bin/env python
"""Standalone throughput / pickup-latency benchmark for procrastinate 3.10.0.

Usage: /tmp/venv/bin/python /tmp/peer_procrastinate.py [--n 5000] [--dsn ...]

Isolation: procrastinate's schema.sql uses unqualified names, so it is installed
into the PostgreSQL schema ``peer_procrastinate`` (dropped and recreated at start,
dropped at the end) by giving every connection ``search_path=peer_procrastinate``
through the libpq ``options`` parameter. That covers the pool connections and
the worker's standalone LISTEN connection (procrastinate builds it from the
pool's conninfo/kwargs). NOTIFY channels are database-global
("procrastinate_any_queue_v1"); a foreign notification could only cause a
spurious (harmless) fetch in our schema.

Consumer: one procrastinate worker, ``concurrency=4``, everything else left at
the library defaults (listen_notify=True, fetch_job_polling_interval=5.0,
delete_jobs="never", queues=None, default pool of PsycopgConnector).
Producer: a separate App/PsycopgConnector (its own default pool), deferring by
task name, like a web process deferring to a separate worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import statistics
import sys
import time
import urllib.parse

import psycopg
from procrastinate import App, PsycopgConnector

# procrastinate warns when an App is created in __main__ (relevant only when a
# separate worker process must import the app; here the worker runs in-process).
logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
SCHEMA = "peer_procrastinate"
TASK_NAME = "peer_noop"
CONCURRENCY = 4


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


tracker: Tracker | None = None


def with_search_path(dsn: str, schema: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    query = urllib.parse.parse_qsl(parts.query)
    query = [(k, v) for k, v in query if k != "options"]
    query.append(("options", f"-c search_path={schema}"))
    return urllib.parse.urlunsplit(
        parts._replace(query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote))
    )


async def bench(
    dsn: str,
    n: int,
    batch: int,
    lat_samples: int,
    concurrency: int,
    delete_jobs: str | None,
) -> dict[str, object]:
    global tracker
    tracker = Tracker()
    sp_dsn = with_search_path(dsn, SCHEMA)

    # ---- fresh schema ----------------------------------------------------------
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await admin.execute(f"CREATE SCHEMA {SCHEMA}")

    worker_app = App(connector=PsycopgConnector(conninfo=sp_dsn))

    @worker_app.task(name=TASK_NAME)
    async def peer_noop(i: int) -> None:  # no-op task; records start time
        assert tracker is not None
        tracker.hit(i)

    producer_app = App(connector=PsycopgConnector(conninfo=sp_dsn))
    result: dict[str, object] = {"peer": "procrastinate"}

    async with worker_app.open_async(), producer_app.open_async():
        # install schema (objects land in peer_procrastinate via search_path)
        await worker_app.schema_manager.apply_schema_async()
        async with worker_app.connector.pool.connection() as c:
            cur = await c.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = %s "
                "AND tablename = 'procrastinate_jobs'",
                (SCHEMA,),
            )
            row = await cur.fetchone()
            if row is None or row[0] != 1:
                raise RuntimeError("schema not installed where expected")

        deferrer = producer_app.configure_task(TASK_NAME)

        worker_kwargs: dict = {"concurrency": concurrency, "install_signal_handlers": False}
        if delete_jobs is not None:  # library default is "never"
            worker_kwargs["delete_jobs"] = delete_jobs
        worker_task = asyncio.create_task(worker_app.run_worker_async(**worker_kwargs))
        try:
            # ---- wait until the worker is registered and LISTENing --------------
            await wait_worker_listening(worker_app, worker_task)

            # ---- warm-up: one job -----------------------------------------------
            tracker.reset(1)
            await deferrer.defer_async(i=-1)
            await asyncio.wait_for(tracker.done.wait(), 30)
            await asyncio.sleep(0.5)

            # ---- (a) one job per defer call -------------------------------------
            tracker.reset(n)
            t0 = time.perf_counter()
            for i in range(n):
                await deferrer.defer_async(i=i)
            t_enq = time.perf_counter() - t0
            await asyncio.wait_for(tracker.done.wait(), 900)
            elapsed = tracker.last_done_at - t0
            result["one_per_call"] = round(n / elapsed, 1)
            result["one_per_call_enqueue_s"] = round(t_enq, 3)
            result["one_per_call_total_s"] = round(elapsed, 3)
            await asyncio.sleep(1.0)

            # ---- (b) batches via batch_defer_async ------------------------------
            tracker.reset(n)
            t0 = time.perf_counter()
            for start in range(0, n, batch):
                k = min(batch, n - start)
                await deferrer.batch_defer_async(*({"i": start + j} for j in range(k)))
            t_enq = time.perf_counter() - t0
            await asyncio.wait_for(tracker.done.wait(), 900)
            elapsed = tracker.last_done_at - t0
            result[f"batch_{batch}"] = round(n / elapsed, 1)
            result[f"batch_{batch}_enqueue_s"] = round(t_enq, 3)
            result[f"batch_{batch}_total_s"] = round(elapsed, 3)
            await asyncio.sleep(1.0)

            # ---- pickup latency: idle worker, one job at a time -----------------
            lat_ms: list[float] = []
            tracker.reset(1 << 62)
            for s in range(lat_samples):
                key = 1_000_000_000 + s
                ev = asyncio.Event()
                tracker.watch[key] = ev
                await asyncio.sleep(random.uniform(0.010, 0.100))
                t_before = time.perf_counter()
                await deferrer.defer_async(i=key)
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
                f"1 worker, concurrency={concurrency}, "
                f"delete_jobs={delete_jobs or 'never (default)'}, other defaults"
            )
        finally:
            # ---- shutdown: cancelling run_worker_async = graceful stop -----------
            worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(worker_task, 60)

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    return result


async def wait_worker_listening(
    app: App, worker_task: asyncio.Task, deadline_s: float = 30.0
) -> None:
    """Wait until a worker row exists and a session is LISTENing on procrastinate's channel."""
    end = time.monotonic() + deadline_s
    while True:
        if worker_task.done():
            worker_task.result()  # raise if it crashed
            raise RuntimeError("worker exited early")
        # fresh transaction each time: pg_stat_activity is snapshotted per transaction
        async with app.connector.pool.connection() as c:
            cur = await c.execute("SELECT count(*) FROM procrastinate_workers")
            (nworkers,) = await cur.fetchone()  # type: ignore[misc]
            cur = await c.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND query ILIKE 'LISTEN%procrastinate%'"
            )
            (nlisten,) = await cur.fetchone()  # type: ignore[misc]
        if nworkers >= 1 and nlisten >= 1:
            return
        if time.monotonic() > end:
            raise TimeoutError("worker did not start listening")
        await asyncio.sleep(0.05)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", default=DEFAULT_DSN)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--latency-samples", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=CONCURRENCY)
    ap.add_argument(
        "--delete-jobs",
        choices=["never", "successful", "always"],
        default=None,
        help="worker delete_jobs option (omitted = library default 'never')",
    )
    args = ap.parse_args()
    res = asyncio.run(
        bench(
            args.dsn,
            args.n,
            args.batch,
            args.latency_samples,
            args.concurrency,
            args.delete_jobs,
        )
    )
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
