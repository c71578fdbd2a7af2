"""jobledger benchmarks (issues 4 and 15): P1..P8, each against a peer or a limit where named.

Usage::

    python bench/run.py            # full
    python bench/run.py --quick    # about a minute on a small machine (2 cores)
    python bench/run.py --smoke    # a few seconds; checks the harness, not the speed

Prints one table and writes a JSON file (``--json PATH``, default
``bench/results.json``). Every file lives in a temporary directory, removed at
the end. The peer for P1, P1a and P1b is huey's ``SqliteHuey`` (``pip install -e
'.[bench]'``); without it, they report jobledger alone and "peer missing".

P1a and P1b (issue 15) run what the README shows: four plain ``JobWorker``
instances with default settings against huey's thread consumer with its default
polling. P8 measures a pickup across processes and the CPU of an idle ledger,
with child processes of this script (``--p8-worker``, ``--p8-idle``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

import jobledger
from jobledger.core.events import AnyEvent

try:  # the peer of P1, from the `bench` extra
    import huey as _huey
    from huey.consumer import Consumer as _HueyConsumer
except ImportError:  # pragma: no cover - depends on the environment
    _huey = None
    _HueyConsumer = None


@dataclass(frozen=True)
class Sizes:
    n: int  # P1 jobs
    p2: int  # P2 events
    m: int  # P3/P6 log size
    p4: int  # P4 samples
    p5: int  # P5 samples
    p6_gets: int  # P6 get() samples
    p6_n: int  # P1 again on the big file
    rounds: int  # alternating rounds (jobledger, peer/limit, jobledger, ...)
    p1a: int  # P1a and P1b jobs
    p8: int  # P8 pickups across processes
    idle_s: float  # P8 idle CPU: seconds measured


MODES = {
    "smoke": Sizes(
        n=50, p2=500, m=2_000, p4=10, p5=50, p6_gets=50, p6_n=50, rounds=1,
        p1a=20, p8=3, idle_s=1.0,
    ),
    "quick": Sizes(
        n=1_000, p2=5_000, m=100_000, p4=200, p5=1_000, p6_gets=1_000, p6_n=500, rounds=2,
        p1a=500, p8=30, idle_s=5.0,
    ),
    "full": Sizes(
        n=10_000, p2=20_000, m=1_000_000, p4=1_000, p5=5_000, p6_gets=5_000, p6_n=10_000,
        rounds=3, p1a=2_000, p8=200, idle_s=60.0,
    ),
}  # fmt: skip

CONCURRENCY = 128
SEND_BATCH = 2_000  # concurrent sends in flight while building a log


@dataclass
class Result:
    name: str
    metric: str
    ours: float | None
    unit: str
    other: float | None = None
    other_name: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# -- helpers -----------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


class Noop(jobledger.JobWorker):
    job_types = ("noop",)
    concurrency = CONCURRENCY
    progress_interval = 0.0

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> Any:
        await ctx.progress(50)
        return None


async def gather_chunked(make: Callable[[int], Awaitable[Any]], count: int) -> list[Any]:
    out: list[Any] = []
    for start in range(0, count, SEND_BATCH):
        stop = min(count, start + SEND_BATCH)
        out.extend(await asyncio.gather(*(make(i) for i in range(start, stop))))
    return out


# -- P1: end-to-end ----------------------------------------------------------


async def jobledger_e2e(path: Path, n: int) -> float:
    """N no-op jobs: submit → claim → one progress → complete; jobs/s."""
    async with jobledger.open(path, workers=[Noop()], synchronous="FULL") as ledger:
        t0 = time.perf_counter()
        jobs = await gather_chunked(lambda i: ledger.submit("noop", {"i": i}), n)
        await asyncio.gather(*(ledger.wait(j.id, timeout=600) for j in jobs))
        elapsed = time.perf_counter() - t0
        done = await ledger.list(status="completed", limit=1)
        assert len(done) >= 1
    return n / elapsed


def huey_e2e(path: Path, n: int) -> float:
    """N no-op huey tasks on SqliteHuey (fsync on), thread consumer in process; tasks/s."""
    assert _huey is not None
    assert _HueyConsumer is not None
    hq = _huey.SqliteHuey(f"bench-{uuid.uuid4().hex[:6]}", filename=str(path), fsync=True)
    hq.results = False
    count = [0]
    lock = threading.Lock()
    finished = threading.Event()

    @hq.task()
    def noop(i: int) -> None:
        with lock:
            count[0] += 1
            if count[0] >= n:
                finished.set()

    consumer = _HueyConsumer(
        hq,
        workers=4,
        periodic=False,
        initial_delay=0.001,
        backoff=1.1,
        max_delay=0.01,
        check_worker_health=False,
        worker_type="thread",
    )
    consumer._set_signal_handlers = lambda: None  # type: ignore[method-assign]
    consumer.start()
    try:
        t0 = time.perf_counter()
        for i in range(n):
            noop(i)
        if not finished.wait(600):
            raise RuntimeError("huey did not finish")
        elapsed = time.perf_counter() - t0
    finally:
        consumer.stop(graceful=True)
    return n / elapsed


async def p1(tmp: Path, sz: Sizes) -> Result:
    ours: list[float] = []
    peer: list[float] = []
    for r in range(sz.rounds):
        ours.append(await jobledger_e2e(tmp / f"p1-{r}.db", sz.n))
        if _huey is not None:
            peer.append(await asyncio.to_thread(huey_e2e, tmp / f"p1-huey-{r}.db", sz.n))
    a = statistics.median(ours)
    res = Result("P1", f"end-to-end, N={sz.n}", a, "jobs/s", target="≥ 5× huey")
    res.extra = {"rounds": ours}
    if peer:
        b = statistics.median(peer)
        res.other, res.other_name, res.ratio = b, "huey", a / b
        res.met = res.ratio >= 5
        res.extra["peer_rounds"] = peer
    else:
        res.other_name = "peer missing"
    return res


# -- P1a, P1b: four plain workers, default settings (issue 15) ----------------

PLAIN_WORKERS = 4  # jobledger workers, and huey's worker threads
HUEY_ENQUEUERS = (1, 4)  # P1a's huey figure: the faster of these


class Plain(jobledger.JobWorker):
    """A worker as the README writes one: ``job_types`` and ``execute``, every
    other setting (concurrency, progress_interval, lease...) its default."""

    job_types = ("plain",)

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> Any:
        await ctx.progress(50)
        return None


PLAIN_EVENTS = {"job.created": 1, "job.started": 1, "job.progressed": 1, "job.completed": 1}


def check(ok: bool, what: str) -> None:
    """A bench round that did not do what it claims fails the run (not ``assert``: ``-O``)."""
    if not ok:
        raise RuntimeError(f"bench check failed: {what}")


def status_of(job: jobledger.Job) -> str:
    return str(getattr(job.status, "value", job.status))


async def check_plain_round(
    ledger: jobledger.Ledger, head0: int, jobs: Sequence[jobledger.Job], done: Sequence[Any]
) -> dict[str, Any]:
    """After a round: every job completed, exactly its four events in the log
    (created, started, progressed, completed), and ``verify()`` is ok."""
    n = len(jobs)
    not_done = [j.id for j in done if status_of(j) != "completed"]
    check(not not_done, f"{len(not_done)} of {n} jobs not completed, e.g. {not_done[:3]}")
    head1 = await ledger.head()
    check(head1 - head0 == 4 * n, f"{head1 - head0} events for {n} jobs, expected {4 * n}")
    types: Counter[str] = Counter()
    streams: Counter[str] = Counter()
    async for env in ledger.events(head0):
        types[env.type] += 1
        streams[env.stream] += 1
    expected = {t: k * n for t, k in PLAIN_EVENTS.items()}
    check(dict(types) == expected, f"event types {dict(types)}, expected {expected}")
    check(
        all(streams[j.id] == 4 for j in jobs),
        "a job without exactly four events in its stream",
    )
    report = await ledger.verify()
    check(report.ok, f"verify() found problems: {report.problems[:3]}")
    return {"events": head1 - head0, "events_per_job": (head1 - head0) / n, "verify_ok": True}


async def jobledger_plain(path: Path, n: int, *, sequential: bool) -> dict[str, Any]:
    """N no-op jobs on four plain workers, everything at its default (the file
    ``synchronous=FULL``); all submits concurrent (P1a) or one producer
    awaiting each (P1b), then wait for all. jobs/s, commits and lost claims."""
    workers = [Plain(name=f"plain-{k + 1}") for k in range(PLAIN_WORKERS)]
    async with jobledger.open(path, workers=workers) as ledger:
        warm = await ledger.submit("plain", {"i": -1})  # warm-up, before the clock
        await ledger.wait(warm.id, timeout=60)
        stats0 = ledger.statistics()
        head0 = await ledger.head()
        t0 = time.perf_counter()
        if sequential:
            jobs = [await ledger.submit("plain", {"i": i}) for i in range(n)]
        else:
            jobs = await gather_chunked(lambda i: ledger.submit("plain", {"i": i}), n)
        done = await asyncio.gather(*(ledger.wait(j.id, timeout=600) for j in jobs))
        elapsed = time.perf_counter() - t0
        stats1 = ledger.statistics()
        checked = await check_plain_round(ledger, head0, jobs, done)
    batches = stats1.stower.batches - stats0.stower.batches
    lost = sum(w.lost_claims for w in stats1.workers) - sum(w.lost_claims for w in stats0.workers)
    claimed = sum(w.claimed for w in stats1.workers) - sum(w.claimed for w in stats0.workers)
    return {
        "rate": n / elapsed,
        "commits": batches,
        "commits_per_job": batches / n,
        "lost_claims": lost,
        "wasted_claims_per_job": lost / n,
        "claimed": claimed,
        **checked,
    }


def huey_plain(path: Path, n: int, enqueuers: int) -> float:
    """N trivial tasks on SqliteHuey (fsync on), ``Consumer(workers=4,
    worker_type="thread")`` in this process with huey's default polling, started
    and warmed up (one task) before the clock; ``enqueuers`` threads enqueue
    (each enqueue waits for its commit). tasks/s from the first enqueue to the
    last task done."""
    assert _huey is not None
    assert _HueyConsumer is not None
    hq = _huey.SqliteHuey(f"plain-{uuid.uuid4().hex[:6]}", filename=str(path), fsync=True)
    count = [0]
    lock = threading.Lock()
    warm = threading.Event()
    finished = threading.Event()

    @hq.task()
    def plain(i: int) -> None:
        if i < 0:
            warm.set()
            return
        with lock:
            count[0] += 1
            if count[0] >= n:
                finished.set()

    consumer = _HueyConsumer(hq, workers=PLAIN_WORKERS, worker_type="thread")
    # start() sets signal handlers, which only the main thread may do; this runs
    # on a worker thread of the bench. Not a setting: the consumer runs the same.
    consumer._set_signal_handlers = lambda: None  # type: ignore[method-assign]
    consumer.start()
    try:
        plain(-1)
        if not warm.wait(60):
            raise RuntimeError("huey did not run its warm-up task")

        def enqueue(k: int) -> None:
            for i in range(k, n, enqueuers):
                plain(i)

        threads = [threading.Thread(target=enqueue, args=(k,)) for k in range(enqueuers)]
        t0 = time.perf_counter()
        if enqueuers == 1:
            enqueue(0)
        else:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if not finished.wait(600):
            raise RuntimeError("huey did not finish")
        elapsed = time.perf_counter() - t0
    finally:
        consumer.stop(graceful=True)
    return n / elapsed


async def p1_plain(tmp: Path, sz: Sizes, *, sequential: bool) -> Result:
    name = "P1b" if sequential else "P1a"
    enqueuers = (1,) if sequential else HUEY_ENQUEUERS
    rounds: list[dict[str, Any]] = []
    peer: dict[int, list[float]] = {k: [] for k in enqueuers}
    for r in range(sz.rounds):
        rounds.append(await jobledger_plain(tmp / f"{name}-{r}.db", sz.p1a, sequential=sequential))
        if _huey is not None:
            for k in enqueuers:
                db = tmp / f"{name}-huey{k}-{r}.db"
                peer[k].append(await asyncio.to_thread(huey_plain, db, sz.p1a, k))
    a = statistics.median(x["rate"] for x in rounds)
    how = "one producer awaiting each submit" if sequential else "all submits concurrent"
    res = Result(
        name, f"{how}, 4 plain workers, N={sz.p1a}", a, "jobs/s",
        target="≥ 1× huey" if sequential else "≥ 5× huey",
    )  # fmt: skip
    commits = statistics.median(x["commits_per_job"] for x in rounds)
    wasted = statistics.median(x["wasted_claims_per_job"] for x in rounds)
    res.extra = {
        "rounds": [x["rate"] for x in rounds],
        "round_details": rounds,
        "workers": PLAIN_WORKERS,
        "commits_per_job": commits,
        "commits_target": "≤ 1",
        "commits_met": commits <= 1,
        "wasted_claims_per_job": wasted,
        "wasted_claims_target": "≤ 0.05",
        "wasted_claims_met": wasted <= 0.05,
    }
    if _huey is None:
        res.other_name = "peer missing"
        return res
    medians = {k: statistics.median(v) for k, v in peer.items()}
    best = max(medians, key=lambda k: medians[k])
    res.other = medians[best]
    threads = "thread" if best == 1 else "threads"
    res.other_name = f"huey, {best} enqueue {threads}"
    res.ratio = a / res.other
    res.met = res.ratio >= (1 if sequential else 5)
    res.extra["peer_rounds"] = {f"{k}_enqueuers": v for k, v in peer.items()}
    res.extra["peer_medians"] = {f"{k}_enqueuers": v for k, v in medians.items()}
    return res


# -- P2: append --------------------------------------------------------------


async def jobledger_append(path: Path, count: int) -> float:
    async with jobledger.open(path, synchronous="FULL") as ledger:
        head0 = await ledger.head()
        t0 = time.perf_counter()
        await gather_chunked(lambda i: ledger.submit("noop", {"i": i}), count)
        elapsed = time.perf_counter() - t0
        events = await ledger.head() - head0
    return events / elapsed


def sqlite_limit(path: Path, count: int) -> float:
    """The same number of similar rows, executemany in batches of 1000, WAL + FULL."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, stream TEXT NOT NULL,
            version INTEGER NOT NULL, type TEXT NOT NULL, time TEXT NOT NULL,
            actor TEXT NOT NULL, correlation_id TEXT, causation_id TEXT,
            data BLOB NOT NULL, hash TEXT NOT NULL, UNIQUE (stream, version))"""
    )
    now = datetime.now(UTC).isoformat()
    t0 = time.perf_counter()
    for start in range(0, count, 1000):
        rows = []
        for i in range(start, min(count, start + 1000)):
            job = f"job_{uuid.uuid4().hex}"
            data = msgspec.json.encode(
                {"type": "job.created", "job_type": "noop", "params": {"i": i}, "user": "system"}
            )
            rows.append(
                (i + 1, uuid.uuid4().hex, job, 1, "job.created", now, "system", job, None, data,
                 os.urandom(32).hex())
            )  # fmt: skip
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return count / elapsed


async def p2(tmp: Path, sz: Sizes) -> Result:
    ours: list[float] = []
    limit: list[float] = []
    for r in range(sz.rounds):
        ours.append(await jobledger_append(tmp / f"p2-{r}.db", sz.p2))
        limit.append(await asyncio.to_thread(sqlite_limit, tmp / f"p2-raw-{r}.db", sz.p2))
    a, b = statistics.median(ours), statistics.median(limit)
    return Result(
        "P2", f"append, {sz.p2} submits", a, "events/s", b, "sqlite3 executemany", a / b,
        "≥ 0.5× limit", a / b >= 0.5, {"rounds": ours, "limit_rounds": limit},
    )  # fmt: skip


# -- P3: replay --------------------------------------------------------------


async def build_log(path: Path, m: int) -> None:
    """A log of at least M events, through the real Stower."""
    async with jobledger.open(path, synchronous="FULL", max_batch=5_000) as ledger:
        # A type no worker takes: the file's jobs stay pending, as in a busy history.
        async def one(i: int) -> None:
            await ledger.submit("filler", {"i": i})

        await gather_chunked(one, m)
        assert await ledger.head() >= m


def raw_scan(path: Path) -> tuple[int, float]:
    decoder = msgspec.json.Decoder(AnyEvent)
    conn = sqlite3.connect(path)
    t0 = time.perf_counter()
    n = 0
    for (data,) in conn.execute("SELECT data FROM events ORDER BY seq"):
        decoder.decode(data)
        n += 1
    elapsed = time.perf_counter() - t0
    conn.close()
    return n, elapsed


async def p3(path: Path, sz: Sizes) -> Result:
    ours: list[float] = []
    limit: list[float] = []
    async with jobledger.open(path) as ledger:
        head = await ledger.head()
        for _ in range(sz.rounds):
            t0 = time.perf_counter()
            model = await ledger.replay()
            ours.append(head / (time.perf_counter() - t0))
            assert len(model.jobs) > 0
            n, elapsed = await asyncio.to_thread(raw_scan, path)
            limit.append(n / elapsed)
    a, b = statistics.median(ours), statistics.median(limit)
    return Result(
        "P3", f"replay, M={head}", a, "events/s", b, "scan + msgspec decode", a / b,
        "≥ 0.5× limit", a / b >= 0.5, {"rounds": ours, "limit_rounds": limit},
    )  # fmt: skip


# -- P4: pickup latency ------------------------------------------------------


class Stamp(jobledger.JobWorker):
    job_types = ("stamp",)
    concurrency = 1

    def __init__(self) -> None:
        super().__init__()
        self.started: dict[str, float] = {}

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> Any:
        self.started[job.id] = time.perf_counter()
        return None


async def p4(tmp: Path, sz: Sizes) -> Result:
    worker = Stamp()
    samples: list[float] = []
    async with jobledger.open(tmp / "p4.db", workers=[worker], synchronous="FULL") as ledger:
        for _ in range(sz.p4 + 5):
            t0 = time.perf_counter()
            job = await ledger.submit("stamp")
            await ledger.wait(job.id, timeout=30)
            samples.append((worker.started[job.id] - t0) * 1000)
    samples = samples[5:]  # warm-up
    p50, p99 = pct(samples, 50), pct(samples, 99)
    return Result(
        "P4", f"pickup latency, {len(samples)} jobs, p50", p50, "ms",
        target="p50 ≤ 1 ms, p99 ≤ 20 ms", met=p50 <= 1 and p99 <= 20,
        extra={"p50_ms": p50, "p99_ms": p99},
    )  # fmt: skip


# -- P5: live latency --------------------------------------------------------


async def p5(tmp: Path, sz: Sizes) -> Result:
    """Commit (``send`` returns) → an ``events(follow=True)`` subscriber, at ~1000 events/s."""
    returned: dict[str, float] = {}
    received: dict[str, float] = {}
    env_lag: list[float] = []
    async with jobledger.open(tmp / "p5.db", synchronous="FULL") as ledger:
        after = await ledger.head()
        ready = asyncio.Event()
        live = asyncio.Event()  # the follower has received its first event

        async def follow() -> None:
            stream = ledger.events(after, follow=True)
            ready.set()
            async for env in stream:
                now = time.perf_counter()
                received[env.stream] = now
                live.set()
                env_lag.append((datetime.now(UTC) - env.time).total_seconds() * 1000)
                if len(received) >= sz.p5:
                    break

        task = asyncio.create_task(follow())
        await ready.wait()
        # Warm up: wait until the follower has caught up and gone live (it has
        # received a first event), so every measured event arrives live.
        warm = await ledger.submit("noop")
        await live.wait()
        del received[warm.id]

        async def one() -> None:
            job = await ledger.submit("noop")
            returned[job.id] = time.perf_counter()

        pending: set[asyncio.Task[None]] = set()
        t0 = time.perf_counter()
        for i in range(sz.p5):  # paced at 1000/s, not waiting for each commit
            delay = t0 + i / 1000 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t = asyncio.create_task(one())
            pending.add(t)
            t.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        rate = sz.p5 / (time.perf_counter() - t0)
        await asyncio.wait_for(task, 30)
    # A subscriber may see an event before its sender resumes: that counts as 0.
    lat = [max(0.0, (received[k] - returned[k]) * 1000) for k in returned if k in received]
    p50, p99 = pct(lat, 50), pct(lat, 99)
    return Result(
        "P5", f"live latency at {rate:.0f} ev/s, p99", p99, "ms", target="p99 ≤ 5 ms",
        met=p99 <= 5,
        extra={"p50_ms": p50, "p99_ms": p99, "rate": rate,
               "from_envelope_time_p50_ms": pct(env_lag, 50),
               "from_envelope_time_p99_ms": pct(env_lag, 99)},
    )  # fmt: skip


# -- P6: history size, P7: memory ---------------------------------------------


async def p6_measure(path: Path, sz: Sizes) -> dict[str, float]:
    """P6 in this process (the child of ``p6``): get() latencies on the big
    file, P1 on it, and this process's peak RSS (P7)."""
    conn = sqlite3.connect(path)
    ids = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM jobs WHERE job_type = 'filler' ORDER BY random() LIMIT ?",
            (sz.p6_gets,),
        )
    ]
    conn.close()
    samples: list[float] = []
    async with jobledger.open(path) as ledger:
        for job_id in ids:
            t0 = time.perf_counter()
            await ledger.get(job_id)
            samples.append((time.perf_counter() - t0) * 1000)
    rate = await jobledger_e2e(path, sz.p6_n)
    return {
        "rate": rate,
        "get_p50_ms": pct(samples, 50),
        "get_p99_ms": pct(samples, 99),
        "rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """This process's peak resident set. On Linux, VmHWM: ``ru_maxrss`` survives
    ``execve``, so a child started by a big parent would report the parent's."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 1024 / 1024


async def p6(path: Path, mode: str, p1_rate: float) -> tuple[Result, Result]:
    """P6 and P7, measured in a fresh process: only P6's work counts in its RSS."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--p6-child", str(path), "--mode", mode,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"the P6 child failed with exit code {child.returncode}")
    m = json.loads(out)
    ratio = m["rate"] / p1_rate
    r6 = Result(
        "P6", f"P1 (N={MODES[mode].p6_n}) on the M-event file", m["rate"], "jobs/s", p1_rate,
        "P1 on empty file", ratio, "within 20 % of P1; get p99 ≤ 1 ms",
        ratio >= 0.8 and m["get_p99_ms"] <= 1,
        {"get_p50_ms": m["get_p50_ms"], "get_p99_ms": m["get_p99_ms"]},
    )  # fmt: skip
    r7 = Result(
        "P7", "peak RSS of the P6 process", m["rss_mb"], "MB", target="≤ 200 MB",
        met=m["rss_mb"] <= 200,
    )  # fmt: skip
    return r6, r7


# -- P8: pickup across processes, idle CPU (issue 15) --------------------------

P8_MARK = "p8 "  # the worker process's lines to the bench start with this


class Pickup(jobledger.JobWorker):
    """P8's worker, in its own process, default settings: stamps ``time.time()``
    as ``execute`` starts and prints it to the bench."""

    job_types = ("pickup",)

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> Any:
        started = time.time()
        sys.stdout.write(P8_MARK + json.dumps({"id": job.id, "t": started}) + "\n")
        sys.stdout.flush()
        return None


async def p8_worker(path: str | Path) -> None:
    """The worker process of P8 (``--p8-worker``): one default ``Pickup`` on
    the file; prints ready, then a line per ``execute``; ends when stdin closes
    (the bench closes it, or the bench died)."""
    loop = asyncio.get_running_loop()
    eof = asyncio.Event()

    def watch() -> None:
        sys.stdin.buffer.read()
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(eof.set)

    threading.Thread(target=watch, daemon=True).start()
    async with jobledger.open(path, workers=[Pickup()]):
        sys.stdout.write(P8_MARK + json.dumps("ready") + "\n")
        sys.stdout.flush()
        await eof.wait()


async def p8_idle_measure(path: Path, seconds: float) -> dict[str, float]:
    """The idle process of P8 (``--p8-idle``): a ledger with one default worker
    on an empty file, doing nothing for ``seconds``; this process's CPU time
    (every thread) over that time, as a percentage of one core."""
    async with jobledger.open(path, workers=[Pickup()]):
        await asyncio.sleep(min(1.0, seconds))  # settle: opening is not idling
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        w0 = time.perf_counter()
        await asyncio.sleep(seconds)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        w1 = time.perf_counter()
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"cpu_pct": cpu / (w1 - w0) * 100, "cpu_seconds": cpu, "seconds": w1 - w0}


async def reap(child: asyncio.subprocess.Process) -> None:
    """The child is gone when this returns: killed if it still runs."""
    if child.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
    await child.wait()


async def p8_line(child: asyncio.subprocess.Process, timeout: float) -> Any:
    assert child.stdout is not None
    while True:
        raw = await asyncio.wait_for(child.stdout.readline(), timeout)
        if not raw:
            raise RuntimeError(f"the P8 worker process ended early ({child.returncode})")
        text = raw.decode()
        if text.startswith(P8_MARK):
            return json.loads(text[len(P8_MARK) :])


async def p8_pickup(path: str | Path, samples: int) -> list[float]:
    """This process submits one job at a time on the file (``time.time()`` just
    before ``submit``); a worker process on the same file stamps ``time.time()``
    when ``execute`` starts. The next submit comes a random 10 ms to 1 s after
    that start: arrivals at any point of a poll cycle (the default poll is 1 s),
    as a user's would be, not locked to the worker's last pickup. Latencies in
    ms, the first job (warm-up) left out."""
    rng = random.Random(8)
    latencies: list[float] = []
    jobs: list[str] = []
    async with jobledger.open(path) as ledger:  # creates the file; no worker here
        child = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--p8-worker", str(path),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            check(await p8_line(child, 60) == "ready", "the P8 worker did not start")
            for i in range(samples + 1):
                await asyncio.sleep(rng.uniform(0.01, 1.0))
                submitted = time.time()
                job = await ledger.submit("pickup", {"i": i})
                stamp = await p8_line(child, 60)
                check(stamp["id"] == job.id, f"started {stamp['id']}, submitted {job.id}")
                jobs.append(job.id)
                if i > 0:
                    latencies.append((stamp["t"] - submitted) * 1000)
            done = await asyncio.gather(*(ledger.wait(j, timeout=60) for j in jobs))
            check(all(status_of(j) == "completed" for j in done), "a P8 job not completed")
            assert child.stdin is not None
            child.stdin.close()
            rc = await asyncio.wait_for(child.wait(), 60)
            check(rc == 0, f"the P8 worker process exited with {rc}")
        finally:
            await reap(child)
        report = await ledger.verify()
        check(report.ok, f"verify() found problems: {report.problems[:3]}")
    return latencies


async def p8_idle(path: Path, seconds: float) -> dict[str, float]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--p8-idle", str(path), "--seconds", str(seconds),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(child.communicate(), seconds + 120)
    finally:
        await reap(child)
    check(child.returncode == 0, f"the P8 idle process exited with {child.returncode}")
    result: dict[str, float] = json.loads(out)
    return result


async def p8(tmp: Path, sz: Sizes) -> Result:
    latencies = await p8_pickup(tmp / "p8.db", sz.p8)
    idle = await p8_idle(tmp / "p8-idle.db", sz.idle_s)
    p50, p99 = pct(latencies, 50), pct(latencies, 99)
    return Result(
        "P8", f"pickup across processes (SQLite), {len(latencies)} jobs, p50", p50, "ms",
        target="p50 ≤ 10 ms, p99 ≤ 50 ms", met=p50 <= 10 and p99 <= 50,
        extra={"p50_ms": p50, "p99_ms": p99, "max_ms": max(latencies),
               "idle_cpu_pct": idle["cpu_pct"], "idle_seconds": idle["seconds"],
               "idle_target": "≤ 1 % of one core", "idle_met": idle["cpu_pct"] <= 1},
    )  # fmt: skip


# -- report ------------------------------------------------------------------


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def table(results: list[Result], mode: str) -> Table:
    t = Table(title=f"jobledger bench ({mode})")
    for col in ("scenario", "measure", "jobledger", "peer / limit", "ratio", "target", "met"):
        t.add_column(col)
    for r in results:
        ours = f"{fmt(r.ours)} {r.unit}"
        if r.name in ("P4", "P5", "P8"):
            ours = f"p50 {fmt(r.extra['p50_ms'])} / p99 {fmt(r.extra['p99_ms'])} ms"
        elif r.name == "P6":
            ours += f"; get p50 {fmt(r.extra['get_p50_ms'])} / p99 {fmt(r.extra['get_p99_ms'])} ms"
        other = f"{fmt(r.other)} ({r.other_name})" if r.other is not None else r.other_name or "-"
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else "-"
        t.add_row(r.name, r.metric, ours, other, ratio, r.target, verdict(r.met))
        if r.name == "P1a":
            x = r.extra
            t.add_row(
                "P1a commits/job", "Stower batches over the round / N",
                fmt(x["commits_per_job"]), "-", "-", x["commits_target"], verdict(x["commits_met"]),
            )  # fmt: skip
            t.add_row(
                "P1a wasted claims/job", "claims lost to another worker / N",
                fmt(x["wasted_claims_per_job"]), "-", "-", x["wasted_claims_target"],
                verdict(x["wasted_claims_met"]),
            )  # fmt: skip
        elif r.name == "P8":
            x = r.extra
            t.add_row(
                "P8 idle CPU", f"one default worker, empty file, {x['idle_seconds']:.0f} s",
                f"{fmt(x['idle_cpu_pct'])} % of one core", "-", "-", x["idle_target"],
                verdict(x["idle_met"]),
            )  # fmt: skip
    return t


def verdict(met: bool | None) -> str:
    return "-" if met is None else ("[green]met[/]" if met else "[red]not met[/]")


async def main_async(mode: str, console: Console) -> dict[str, Any]:
    sz = MODES[mode]
    tmp = Path(tempfile.mkdtemp(prefix="jobledger-bench-"))
    results: list[Result] = []
    try:
        started = time.perf_counter()
        r1 = await p1(tmp, sz)
        results.append(r1)
        results.append(await p1_plain(tmp, sz, sequential=False))
        results.append(await p1_plain(tmp, sz, sequential=True))
        results.append(await p2(tmp, sz))
        big = tmp / "big.db"
        t0 = time.perf_counter()
        await build_log(big, sz.m)
        build_s = time.perf_counter() - t0
        r3 = await p3(big, sz)
        r3.extra["build_seconds"] = build_s
        results.append(r3)
        results.append(await p4(tmp, sz))
        results.append(await p5(tmp, sz))
        assert r1.ours is not None
        results.extend(await p6(big, mode, r1.ours))
        results.append(await p8(tmp, sz))
        total = time.perf_counter() - started
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    console.print(table(results, mode))
    console.print(f"total {total:.1f} s; log built at {sz.m / build_s:,.0f} events/s")
    doc = {
        "mode": mode,
        "sizes": sz.__dict__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "huey": getattr(_huey, "__version__", None),
        "seconds": total,
        "results": {r.name: r.__dict__ for r in results},
    }
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_const", const="quick", dest="mode")
    group.add_argument("--smoke", action="store_const", const="smoke", dest="mode")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results.json")
    parser.add_argument("--p6-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=sorted(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--p8-worker", help=argparse.SUPPRESS)  # a path or a URL
    parser.add_argument("--p8-idle", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.p6_child is not None:  # the P6/P7 process started by p6()
        print(json.dumps(asyncio.run(p6_measure(args.p6_child, MODES[args.mode]))))
        return 0
    if args.p8_worker is not None:  # P8's worker process, started by p8_pickup()
        asyncio.run(p8_worker(args.p8_worker))
        return 0
    if args.p8_idle is not None:  # P8's idle ledger, started by p8_idle()
        print(json.dumps(asyncio.run(p8_idle_measure(args.p8_idle, args.seconds))))
        return 0
    console = Console(width=200)
    doc = asyncio.run(main_async(args.mode or "full", console))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
