"""jobledger on PostgreSQL, side by side with pgqueuer and procrastinate against
the same server, in one run.

    python bench/postgres.py                  # N = 5,000, three rounds each
    python bench/postgres.py --quick          # N = 500, one round

Against ``$JOBLEDGER_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``), each side in a schema of its
own, dropped at the end. Every side runs four workers at its defaults,
started and warmed up (one job) before the clock, and each peer also at its
best documented setting for short jobs (``bench/peer_pgqueuer.py`` and
``bench/peer_procrastinate.py``, each run in a process of its own); a job
does nothing.

- ``one per call``: one producer awaiting each enqueue in turn, N jobs, the
  clock stopped when the last has run (jobledger: ``submit``, each job's
  ``job.created``, ``job.started`` and ``job.completed`` committed and
  hash-chained before its command is answered);
- ``batches of 500``: the same N in batches of 500 (jobledger:
  ``submit_many``);
- ``pickup``: a job submitted in one process to ``execute()`` starting in
  another, one at a time, 10 ms to 1 s apart (jobledger: P8 on PostgreSQL;
  the peers' scripts measure it in one process, enqueue to task start);
- ``append``: events/s through ``submit_many`` against a raw
  ``executemany`` of similar rows in transactions of 1,000.

Prints one table; the figures are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench

import jobledger

URL = os.environ.get("JOBLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
WORKERS = 4
BATCH = 500
HERE = Path(__file__).resolve().parent
PEERS = {
    # Each peer in a process of its own, at its defaults and at its best
    # documented setting for short jobs (bench/peer_*.py say which is which).
    "pgqueuer": ["peer_pgqueuer.py"],
    "pgqueuer tuned (1 manager)": ["peer_pgqueuer.py", "--workers", "1"],
    "procrastinate": ["peer_procrastinate.py"],
    "procrastinate tuned": ["peer_procrastinate.py", "--delete-jobs", "always"],
}


async def peer_round(args: list[str], n: int, samples: int) -> dict[str, Any]:
    """One round of a peer's script: its JSON line."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / args[0]), *args[1:], "--n", str(n), "--batch", str(BATCH),
        "--latency-samples", str(samples), "--dsn", URL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(child.communicate(), 900)
    bench.check(child.returncode == 0, f"{args[0]} failed: {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


class Noop(jobledger.JobWorker):
    """Does nothing: what a queue costs, not what a job does."""

    job_types = ("noop",)

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> None:
        return None


class BusyNoop(Noop):
    """The tuned setting beside the default: 32 jobs at a time per worker."""

    concurrency = 32


async def _drop(schema: str) -> None:
    conn = await asyncpg.connect(URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def jobledger_round(n: int, *, batched: bool, tuned: bool = False) -> float:
    """jobs/s: N no-op jobs through four plain workers (``tuned``: 32 jobs at
    a time each), one producer."""
    schema = f"bench_jl_{uuid.uuid4().hex[:8]}"
    try:
        kind = BusyNoop if tuned else Noop
        workers = [kind(name=f"w{i}") for i in range(WORKERS)]
        async with jobledger.open(f"{URL}?schema={schema}", workers=workers) as ledger:
            warm = await ledger.submit("noop")
            await ledger.wait(warm.id, timeout=60)
            t0 = time.perf_counter()
            ids: list[str] = []
            if batched:
                for start in range(0, n, BATCH):
                    jobs = await ledger.submit_many(
                        [
                            jobledger.NewJob("noop", {"i": i})
                            for i in range(start, min(n, start + BATCH))
                        ]
                    )
                    ids.extend(j.id for j in jobs)
            else:
                for i in range(n):
                    ids.append((await ledger.submit("noop", {"i": i})).id)
            for job_id in ids:
                done = await ledger.wait(job_id, timeout=600)
                bench.check(done.status == "completed", f"{job_id} ended {done.status}")
            elapsed = time.perf_counter() - t0
            report = await ledger.verify()
            bench.check(report.ok, f"verify() found problems: {report.problems[:3]}")
        return n / elapsed
    finally:
        await _drop(schema)


async def raw_append(n: int) -> float:
    """rows/s: the same number of event-like rows, executemany in transactions of 1,000."""
    schema = f"bench_raw_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(URL)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(
            f'CREATE TABLE "{schema}".events (seq bigint PRIMARY KEY, event_id text UNIQUE,'
            " stream text, version bigint, type text, time text, actor text, data bytea,"
            " hash text, UNIQUE (stream, version))"
        )
        now = "2026-12-07T00:00:00Z"
        t0 = time.perf_counter()
        for start in range(0, n, 1000):
            rows = [
                (
                    i + 1, uuid.uuid4().hex, f"job_{uuid.uuid4().hex}", 1, "job.created", now,
                    "system", json.dumps({"type": "job.created", "i": i}).encode(),
                    os.urandom(32).hex(),
                )
                for i in range(start, min(n, start + 1000))
            ]  # fmt: skip
            async with conn.transaction():
                await conn.executemany(
                    f'INSERT INTO "{schema}".events VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)', rows
                )
        return n / (time.perf_counter() - t0)
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


async def jobledger_append(n: int) -> float:
    """events/s: N jobs submitted with submit_many in batches of 500, no workers."""
    schema = f"bench_ap_{uuid.uuid4().hex[:8]}"
    try:
        async with jobledger.open(f"{URL}?schema={schema}") as ledger:
            t0 = time.perf_counter()
            for start in range(0, n, BATCH):
                await ledger.submit_many(
                    [
                        jobledger.NewJob("noop", {"i": i})
                        for i in range(start, min(n, start + BATCH))
                    ]
                )
            elapsed = time.perf_counter() - t0
            return await ledger.head() / elapsed
    finally:
        await _drop(schema)


async def pickup(samples: int) -> list[float]:
    schema = f"bench_p8_{uuid.uuid4().hex[:8]}"
    try:
        return await bench.p8_pickup(f"{URL}?schema={schema}", samples)
    finally:
        await _drop(schema)


def median(values: list[float]) -> float:
    return statistics.median(values)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, rounds, samples = (500, 1, 30) if args.quick else (5_000, 3, 200)
    sides = ["jobledger", "jobledger tuned", *PEERS]
    figures: dict[str, dict[str, list[float]]] = {
        side: {"one": [], "batch": [], "p50": [], "p99": []} for side in sides
    }
    for _ in range(rounds):  # alternating sides, round by round
        figures["jobledger"]["one"].append(await jobledger_round(n, batched=False))
        figures["jobledger"]["batch"].append(await jobledger_round(n, batched=True))
        tuned = figures["jobledger tuned"]
        tuned["one"].append(await jobledger_round(n, batched=False, tuned=True))
        tuned["batch"].append(await jobledger_round(n, batched=True, tuned=True))
        for name, peer_args in PEERS.items():
            result = await peer_round(peer_args, n, 50)
            figures[name]["one"].append(result["one_per_call"])
            figures[name]["batch"].append(result["batch_500"])
            figures[name]["p50"].append(result["pickup_p50_ms"])
            figures[name]["p99"].append(result["pickup_p99_ms"])
    ours_append = [await jobledger_append(n) for _ in range(rounds)]
    raw = [await raw_append(n) for _ in range(rounds)]
    latencies = await pickup(samples)

    table = Table(title=f"jobledger on PostgreSQL (N = {n:,}, medians of {rounds})")
    for col in ("side", "one per call", f"batches of {BATCH}", "pickup p50 / p99"):
        table.add_column(col)
    ours_one, ours_batch = (
        median(figures["jobledger"]["one"]),
        median(figures["jobledger"]["batch"]),
    )
    p50, p99 = bench.pct(latencies, 50), bench.pct(latencies, 99)
    table.add_row(
        "jobledger (4 workers, defaults)", f"{ours_one:,.0f}", f"{ours_batch:,.0f}",
        f"{p50:.2f} / {p99:.2f} ms (across processes, {len(latencies)} jobs)",
    )  # fmt: skip
    tuned_one = median(figures["jobledger tuned"]["one"])
    tuned_batch = median(figures["jobledger tuned"]["batch"])
    table.add_row("jobledger tuned (concurrency 32)", f"{tuned_one:,.0f}", f"{tuned_batch:,.0f}")
    for name in PEERS:
        one, batch = median(figures[name]["one"]), median(figures[name]["batch"])
        table.add_row(
            name, f"{one:,.0f} (ours {ours_one / one:.2f}×)",
            f"{batch:,.0f} (ours {ours_batch / batch:.2f}×)",
            f"{median(figures[name]['p50']):.2f} / {median(figures[name]['p99']):.2f} ms"
            " (in process, 50 jobs)",
        )  # fmt: skip
    table.add_row(
        "append: submit_many events/s",
        f"{median(ours_append):,.0f}",
        f"raw executemany {median(raw):,.0f} rows/s",
        f"{median(ours_append) / median(raw):.2f}× raw",
    )
    Console().print(table)
    summary = {"n": n, "rounds": rounds, "figures": figures, "append": ours_append}
    summary |= {"raw_append": raw, "pickup_ms": latencies}
    print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
