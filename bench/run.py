"""jobledger benchmarks (issue 4): P1..P7, each against a peer or a limit where named.

Usage::

    python bench/run.py            # full
    python bench/run.py --quick    # under a minute on a small machine
    python bench/run.py --smoke    # a few seconds; checks the harness, not the speed

Prints one table and writes a JSON file (``--json PATH``, default
``bench/results.json``). Every file lives in a temporary directory, removed at
the end. The peer for P1 is huey's ``SqliteHuey`` (``pip install -e '.[bench]'``);
without it, P1 reports jobledger alone and "peer missing".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
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


MODES = {
    "smoke": Sizes(n=50, p2=500, m=2_000, p4=10, p5=50, p6_gets=50, p6_n=50, rounds=1),
    "quick": Sizes(
        n=1_000, p2=5_000, m=100_000, p4=200, p5=1_000, p6_gets=1_000, p6_n=500, rounds=2
    ),
    "full": Sizes(
        n=10_000,
        p2=20_000,
        m=1_000_000,
        p4=1_000,
        p5=5_000,
        p6_gets=5_000,
        p6_n=10_000,
        rounds=3,
    ),
}

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
        target="p50 ≤ 2 ms, p99 ≤ 20 ms", met=p50 <= 2 and p99 <= 20,
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
        if r.name in ("P4", "P5"):
            ours = f"p50 {fmt(r.extra['p50_ms'])} / p99 {fmt(r.extra['p99_ms'])} ms"
        elif r.name == "P6":
            ours += f"; get p50 {fmt(r.extra['get_p50_ms'])} / p99 {fmt(r.extra['get_p99_ms'])} ms"
        other = f"{fmt(r.other)} ({r.other_name})" if r.other is not None else r.other_name or "-"
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else "-"
        met = "-" if r.met is None else ("[green]met[/]" if r.met else "[red]not met[/]")
        t.add_row(r.name, r.metric, ours, other, ratio, r.target, met)
    return t


async def main_async(mode: str, console: Console) -> dict[str, Any]:
    sz = MODES[mode]
    tmp = Path(tempfile.mkdtemp(prefix="jobledger-bench-"))
    results: list[Result] = []
    try:
        started = time.perf_counter()
        r1 = await p1(tmp, sz)
        results.append(r1)
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
    args = parser.parse_args(argv)
    if args.p6_child is not None:  # the P6/P7 process started by p6()
        print(json.dumps(asyncio.run(p6_measure(args.p6_child, MODES[args.mode]))))
        return 0
    console = Console(width=200)
    doc = asyncio.run(main_async(args.mode or "full", console))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
