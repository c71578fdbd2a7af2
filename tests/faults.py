"""The reliability battery's parts (issue 6): a child process that works a
ledger file until it dies at a crash point or is killed, and the invariants
checked on the file afterwards.

The child records, outside itself, what it sent and what was acknowledged:
before each submit it appends the job's idempotency key to ``sent``; once
the submit returns, it appends ``key job_id`` to ``acks`` and fsyncs it. A
kill can lose the last lines of those files but never lists an
acknowledgement that did not happen.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

import jobledger
from jobledger import Job, JobContext, JobledgerError, JobWorker

CHILD_JOBS = 24
"""Jobs a child submits, in groups of four (so batches hold several commands)."""


class Work(JobWorker):
    """Reports progress once, performs its side effect (a line in the sink:
    job id, attempt and process, fsynced) and completes: every crash point is
    on its way."""

    job_types = ("work",)
    concurrency = 4
    lease_seconds = 2.0
    progress_interval = 0.0

    def __init__(self, sink: str) -> None:
        super().__init__()
        self.sink = sink

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        await ctx.progress(50, stage="half")
        _append(self.sink, f"{job.id} {ctx.attempt} {os.getpid()}\n")
        return {"n": job.params["n"]}


def _append(path: str, text: str) -> None:
    """Append ``text`` to ``path`` and fsync it: on disk before going on."""
    with open(path, "a") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


async def finish(db: str, sink: str) -> None:
    """Run the workers until every job in the log has ended."""
    async with jobledger.open(db, workers=[Work(sink)]) as ledger:
        while True:
            waiting = [j for j in (await ledger.list(limit=10_000)).jobs if not j.is_terminal]
            if not waiting:
                return
            for job in waiting:
                await ledger.wait(job.id, timeout=120)


async def child(db: str, workdir: str, jobs: int) -> None:
    """Submit ``jobs`` jobs in groups of four while a worker runs them; wait for all."""
    sent, acks, sink = (str(Path(workdir) / name) for name in ("sent", "acks", "sink"))
    if jobs == 0:
        await finish(db, sink)
        return
    async with jobledger.open(db, workers=[Work(sink)]) as ledger:
        done = []
        for start in range(0, jobs, 4):
            keys = [f"{os.getpid()}-{n}" for n in range(start, min(jobs, start + 4))]
            _append(sent, "".join(f"{key}\n" for key in keys))
            submitted = await asyncio.gather(
                *(
                    ledger.submit("work", {"n": key}, idempotency_key=key, max_retries=2)
                    for key in keys
                )
            )
            _append(acks, "".join(f"{k} {j.id}\n" for k, j in zip(keys, submitted, strict=True)))
            print("acked", flush=True)  # the parent's cue: a group is acknowledged
            done.extend(submitted)
        for job in done:
            await ledger.wait(job.id, timeout=60)


def run_child(
    db: Path, workdir: Path, *, crash: str | None = None, jobs: int = CHILD_JOBS
) -> subprocess.CompletedProcess[str]:
    """Run one child on ``db``; with ``crash`` (``point:k``) armed."""
    env = {k: v for k, v in os.environ.items() if k != "JOBLEDGER_CRASH"}
    if crash is not None:
        env["JOBLEDGER_CRASH"] = crash
    return subprocess.run(
        [sys.executable, __file__, str(db), str(workdir), str(jobs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def records(workdir: Path) -> tuple[set[str], dict[str, str]]:
    """What the children sent (keys) and what was acknowledged (key → job id)."""
    sent_file, acks_file = workdir / "sent", workdir / "acks"
    sent = set(sent_file.read_text().split()) if sent_file.exists() else set()
    acked: dict[str, str] = {}
    if acks_file.exists():
        for line in acks_file.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:  # (a kill may cut the last line short)
                acked[parts[0]] = parts[1]
    return sent, acked


async def check_invariants(db: Path, sent: set[str], acked: Mapping[str, str]) -> int:
    """Every invariant of issue 6 on the file ``db``, after recovery; returns
    the number of entries in the log."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        seqs = [row[0] for row in conn.execute("SELECT seq FROM events ORDER BY seq")]
    finally:
        conn.close()
    assert seqs == list(range(1, len(seqs) + 1)), "seq is not exactly 1..N"
    # Recover as a new process would (the sweep on open expires the leases
    # that have run out); a lease of the dead process may still be running.
    clock = jobledger.SystemClock()
    recovered_at = clock.now()  # the sweep on open expires every lease run out by then
    async with jobledger.open(db, clock=clock, sweep_interval=3600) as ledger:
        report = await ledger.verify()  # chain, versions, replay == read model
        assert report.ok, report.problems
        created = [env async for env in ledger.events(types=["job.created"])]
        keys = [env.data.idempotency_key for env in created]  # type: ignore[union-attr]
        assert len(keys) == len(set(keys)), "a submit was written twice"
        assert set(keys) <= sent, "the log holds a job that was never sent"
        written = {env.data.idempotency_key: env.stream for env in created}  # type: ignore[union-attr]
        lost = {key for key, job_id in acked.items() if written.get(key) != job_id}
        assert not lost, f"acknowledged submits missing from the log: {sorted(lost)}"
        cursor = None
        while True:
            page = await ledger.list(limit=500, cursor=cursor)
            for job in page:
                assert job.attempt <= job.max_retries + 1, job
                live = job.status == "running" and job.lease and job.lease.expires_at > recovered_at
                assert job.is_terminal or job.status == "pending" or live, job
            if page.cursor is None:
                break
            cursor = page.cursor
        return await ledger.head()


async def kill_soak(db: Path, workdir: Path, kills: int, seed: int) -> dict[str, int]:
    """Start a child, SIGKILL it at a random point of its work (after a random
    number of acknowledged groups), check the invariants, again ``kills``
    times; then finish every job and count the executions (side effects).
    Returns the figures: kills, jobs, executions, extra executions."""
    rng = random.Random(seed)
    for _ in range(kills):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, str(db), str(workdir), str(CHILD_JOBS),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        for _ in range(rng.randint(0, CHILD_JOBS // 4 - 1)):  # groups to let through
            if not await proc.stdout.readline():
                break  # the child ended first
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        sent, acked = records(workdir)
        await check_invariants(db, sent, acked)
    await finish(str(db), str(workdir / "sink"))
    sent, acked = records(workdir)
    await check_invariants(db, sent, acked)
    async with jobledger.open(db) as ledger:
        jobs = (await ledger.list(limit=10_000)).jobs
    assert all(job.is_terminal for job in jobs), "a job did not end after recovery"
    runs = Counter(line.split()[0] for line in (workdir / "sink").read_text().splitlines())
    extra = sum(count - 1 for count in runs.values())
    assert all(count <= 1 + kills for count in runs.values()), runs
    assert extra <= kills * Work.concurrency, (extra, kills)
    return {"kills": kills, "jobs": len(jobs), "executions": sum(runs.values()), "extra": extra}


class Echo(JobWorker):
    """Progress, a mark, a result: a little of every table."""

    job_types = ("echo",)
    progress_interval = 0.0

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        await ctx.progress(50)
        await ctx.create_mark("doc", {"n": job.params["n"]})
        return {"n": job.params["n"]}


def state(model: jobledger.Projection) -> bytes:
    """A folded state as comparable bytes."""
    return msgspec.json.encode(
        [sorted(model.jobs.items()), sorted(model.marks.items()), sorted(model.assets.items())]
    )


async def flippable(path: Path) -> bytes:
    """Write a small closed log at ``path`` (checkpointed: no WAL left) for
    the flips; returns the state it folds to."""
    async with jobledger.open(path, workers=[Echo()]) as ledger:
        for n in range(12):
            await ledger.wait((await ledger.submit("echo", {"n": n})).id, timeout=10)
        return state(await ledger.replay())


def flip(source: Path, copy: Path, offset: int) -> None:
    """Copy ``source`` to ``copy`` with the byte at ``offset`` changed."""
    shutil.copy(source, copy)
    data = bytearray(copy.read_bytes())
    data[offset] ^= random.Random(offset).randrange(1, 256)
    copy.write_bytes(bytes(data))


async def outcome_of_a_flip(pristine: tuple[Path, bytes], copy: Path, offset: int) -> str:
    """Flip one byte of a copy at ``offset``; say how jobledger took it."""
    source, expected = pristine
    flip(source, copy, offset)
    try:
        async with jobledger.open(copy) as ledger:
            report = await ledger.verify()
            if not report.ok:
                return "reported by verify"
            # Verify finds nothing: then what it reads must be what was written.
            assert state(await ledger.replay()) == expected, f"silently wrong at {offset}"
            async with ledger._log.frozen() as view:
                assert state(await view.snapshot()) == expected, f"silently wrong at {offset}"
            return "harmless"
    except JobledgerError as exc:  # typed: StorageError, CorruptionError, ...
        return type(exc).__name__


def _discard(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


async def flip_many(workdir: Path, flips: int, seed: int) -> dict[str, int]:
    """Flip one byte at a random offset of a fresh copy, ``flips`` times;
    count the outcomes (every one typed, reported or harmless)."""
    source = workdir / "pristine.db"
    expected = await flippable(source)
    rng = random.Random(seed)
    size = source.stat().st_size
    outcomes: Counter[str] = Counter()
    for index in range(flips):
        copy = workdir / f"flip-{index}.db"
        outcomes[await outcome_of_a_flip((source, expected), copy, rng.randrange(size))] += 1
        _discard(copy)
    return dict(outcomes)


class Poison(JobWorker):
    """A handler that kills its own process, as a segfault or an OOM kill would."""

    job_types = ("poison",)
    lease_seconds = 0.3

    async def execute(self, job: Job, ctx: JobContext) -> None:
        os._exit(POISON_EXIT_CODE)


POISON_EXIT_CODE = 13


async def poison_child(db: str) -> None:
    """Submit the poison job (once: an idempotency key) and wait for it to end.
    A later child's sweeper expires the lease a dead one left, when it runs out."""
    retry = jobledger.RetryPolicy(base_delay=0.05, max_delay=0.1)
    async with jobledger.open(db, workers=[Poison()], sweep_interval=0.05) as ledger:
        job = await ledger.submit("poison", idempotency_key="poison", max_retries=2, retry=retry)
        await ledger.wait(job.id, timeout=60)


def run_poison_child(db: Path) -> subprocess.CompletedProcess[str]:
    """Run one ``poison_child`` process on ``db``."""
    return subprocess.run(
        [sys.executable, __file__, str(db), "poison", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- several processes: fencing, load, clocks (issue 6, items 6, 7 and 9) -----

CLOCK_OFFSET_ENV = "JOBLEDGER_TEST_CLOCK_OFFSET"
"""The environment variable that sets a child's wall clock off the real one,
in seconds (negative: behind): two processes with different wall clocks."""


class OffsetClock(jobledger.SystemClock):
    """The real clock with its wall clock ``offset`` seconds off; its monotonic
    clock and its sleeps are the real ones."""

    def __init__(self, offset: float) -> None:
        self.offset = timedelta(seconds=offset)

    def now(self) -> datetime:
        return super().now() + self.offset


def child_clock() -> OffsetClock:
    """The clock of a child process: off by ``$JOBLEDGER_TEST_CLOCK_OFFSET`` seconds."""
    return OffsetClock(float(os.environ.get(CLOCK_OFFSET_ENV, "0")))


def _log_warnings() -> None:
    """Show jobledger's warnings on stderr: the parent asserts it stays empty
    where nothing may go wrong (a storage error the tail logged, say)."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")


async def _line_from_parent() -> str:
    """The next line the parent writes on stdin (read in a thread: the loop
    runs on). The parent always writes one, or closes stdin."""
    return await asyncio.to_thread(sys.stdin.readline)


def spawn(db: Path, mode: str, *args: str, offset: float = 0.0) -> subprocess.Popen[str]:
    """Start a child of ``mode`` on ``db`` with pipes for its stdin, stdout and
    stderr, its wall clock ``offset`` seconds off."""
    env = {k: v for k, v in os.environ.items() if k != "JOBLEDGER_CRASH"}
    env[CLOCK_OFFSET_ENV] = repr(offset)
    return subprocess.Popen(
        [sys.executable, __file__, str(db), mode, *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def read_line(proc: subprocess.Popen[str], timeout: float = 60) -> list[str]:
    """The child's next line on stdout, split; ``[]`` at its end."""
    assert proc.stdout is not None
    return (await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout)).split()


def tell(proc: subprocess.Popen[str], line: str = "go") -> None:
    """Write a cue line to the child's stdin."""
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


async def ended(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    """Close the child's stdin, wait for it to exit; its remaining stdout and stderr."""
    out, err = await asyncio.to_thread(proc.communicate, timeout=timeout)
    return out, err


def stop_all(procs: list[subprocess.Popen[str]]) -> None:
    """Kill and reap the children still running (after a failed check)."""
    for proc in procs:
        if proc.poll() is None:
            os.kill(
                proc.pid, signal.SIGCONT
            )  # (a stopped process is killed too, but reap it promptly)
            proc.kill()
        proc.communicate()


# Item 6: a worker paused (SIGSTOP) past its lease, resumed (SIGCONT).

FENCED = "fenced"
FENCE_LEASE = 1.0
"""The paused worker's lease, seconds: short, so the test waits little."""

LATE_COMMANDS = (
    "progress", "heartbeat", "mark", "asset", "complete", "partial", "skip", "fail",
    "cancel", "suspend",
)  # fmt: skip
"""Everything a worker can send for its job: after the lease is lost, each must be refused."""


class Pausable(JobWorker):
    """Claims a ``fenced`` job under a short lease, says so on stdout, and hands
    the job to a task that waits for the parent's cue (given once the process
    was paused past its lease and resumed) and then tries every change a
    worker can make to its job. That task is shielded: it goes on when the
    runner cancels ``execute`` on finding the lease lost, as a handler that
    ignores cancellation would (the worst case for fencing)."""

    job_types = (FENCED,)
    lease_seconds = FENCE_LEASE
    progress_interval = 0.0

    def __init__(self) -> None:
        super().__init__()
        self.ledger: jobledger.Ledger | None = None
        self.finished = asyncio.Event()

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        late = asyncio.ensure_future(self._late(job, ctx))
        print(f"claimed {job.id} {ctx.attempt}", flush=True)  # the parent's cue to pause us
        await asyncio.shield(late)
        return {"by": "paused"}

    async def _late(self, job: Job, ctx: JobContext) -> None:
        await _line_from_parent()  # resumed, long past the lease
        assert self.ledger is not None
        send = self.ledger.send
        common: dict[str, Any] = {
            "job_id": job.id,
            "attempt": ctx.attempt,
            "actor": ctx.actor,
            "correlation_id": job.id,
        }
        tries: dict[str, Callable[[], Awaitable[object]]] = {
            "progress": lambda: ctx.progress(90, stage="late"),
            "heartbeat": ctx.heartbeat,
            "mark": lambda: ctx.create_mark("late-doc", {"by": "paused"}),
            "asset": lambda: ctx.create_asset("thumb", f"late/{job.id}.png", 10),
            "complete": lambda: send(jobledger.JobComplete(result={"by": "paused"}, **common)),
            "partial": lambda: send(jobledger.JobPartial(result={}, error="late", **common)),
            "skip": lambda: send(jobledger.JobSkip(reason="late", **common)),
            "fail": lambda: send(jobledger.JobFail(error="late", **common)),
            "cancel": lambda: send(jobledger.JobCancel(**common)),
            "suspend": lambda: send(jobledger.JobSuspend(**common)),
        }
        for name in LATE_COMMANDS:
            try:
                await tries[name]()
                print(f"late {name} accepted", flush=True)
            except JobledgerError as exc:
                print(f"late {name} {type(exc).__name__}", flush=True)
        self.finished.set()


async def paused_child(db: str) -> None:
    """Run a :class:`Pausable` worker until its late commands are answered;
    then print its runner's refused reports (``stats report_errors``)."""
    worker = Pausable()
    async with jobledger.open(
        db, workers=[worker], clock=child_clock(), poll_interval=0.05
    ) as ledger:
        worker.ledger = ledger
        await worker.finished.wait()
    print(f"stats {ledger.statistics().workers[0].report_errors}", flush=True)


class Successor(JobWorker):
    """The worker that gets the job once the paused one lost it: makes a mark,
    then holds the job until released."""

    job_types = (FENCED,)
    lease_seconds = 30.0

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        await ctx.create_mark("doc", {"by": "successor"})
        self.started.set()
        await self.release.wait()
        return {"by": "successor"}


async def pause_past_the_lease(db: Path, *, successor_done: bool) -> dict[str, Any]:
    """A worker process claims a job and is paused (SIGSTOP) past its lease;
    this process's sweeper expires the lease and its worker claims the job
    again (attempt 2). The paused process is resumed (SIGCONT) while attempt 2
    runs, or, with ``successor_done``, after it completed, and tries every
    change a worker can make: each must be refused with ``StaleAttempt`` (or
    ``InvalidTransition`` once the job has ended) and write nothing, and the
    job ends as attempt 2 made it. Returns the figures: the late commands and
    their answers, the paused runner's refused reports."""
    rules = jobledger.JobType(name=FENCED, suspendable=True)
    retry = jobledger.RetryPolicy(base_delay=0.01, max_delay=0.01, jitter=False)
    async with jobledger.open(db, job_types=[rules]) as ledger:
        job = await ledger.submit(FENCED, max_retries=1, retry=retry)
    paused = spawn(db, "paused")
    try:
        assert await read_line(paused) == ["claimed", job.id, "1"]
        os.kill(paused.pid, signal.SIGSTOP)
        _, status = await asyncio.to_thread(os.waitpid, paused.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status)  # it is stopped now: it can renew nothing
        successor = Successor()
        async with jobledger.open(
            db, workers=[successor], sweep_interval=0.05, poll_interval=0.05
        ) as ledger:
            # The lease runs out; the sweeper expires it; attempt 2 is claimed here.
            await asyncio.wait_for(successor.started.wait(), 30)
            if successor_done:
                successor.release.set()
                await ledger.wait(job.id, timeout=30)
            refusal = "InvalidTransition" if successor_done else "StaleAttempt"
            os.kill(paused.pid, signal.SIGCONT)
            tell(paused)
            answers = [await read_line(paused) for _ in LATE_COMMANDS]
            assert answers == [["late", name, refusal] for name in LATE_COMMANDS], answers
            out, err = await ended(paused)
            assert paused.returncode == 0, err
            (refused_reports,) = (int(line.split()[1]) for line in out.splitlines())
            assert refused_reports >= 1  # the runner's own last report was refused too
            successor.release.set()
            done = await ledger.wait(job.id, timeout=30)
            assert done.status == "completed" and done.result == {"by": "successor"}
            assert (done.attempt, done.failures) == (2, 1)
            history = [(env.type, env.actor) for env in await ledger.history(job.id)]
            expired = history.index(("job.lease_expired", "system:sweeper"))
            assert history[expired + 1 :] == [
                ("job.started", "worker:Successor"),
                ("job.completed", "worker:Successor"),
            ], history
            log = [env async for env in ledger.events()]
            lost_at = next(env.seq for env in log if env.type == "job.lease_expired")
            late = [env for env in log if env.seq > lost_at and env.actor == "worker:Pausable"]
            assert not late, late  # nothing the paused worker sent after losing the job
            assert [m.annotation for m in await ledger.marks("doc")] == [{"by": "successor"}]
            assert await ledger.marks("late-doc") == [] and await ledger.assets(job.id) == []
            assert (await ledger.verify()).ok
    finally:
        stop_all([paused])
    return {"late": len(answers), "refusal": refusal, "refused_reports": refused_reports}


PROCESS_CHILDREN: dict[str, Callable[..., Awaitable[None]]] = {
    "paused": paused_child,
}
"""The children of this section, by the mode named on their command line."""


if __name__ == "__main__":
    if sys.argv[2] == "poison":
        asyncio.run(poison_child(sys.argv[1]))
    elif sys.argv[2] in PROCESS_CHILDREN:
        asyncio.run(PROCESS_CHILDREN[sys.argv[2]](sys.argv[1], *sys.argv[3:]))
    else:
        asyncio.run(child(sys.argv[1], sys.argv[2], int(sys.argv[3])))
