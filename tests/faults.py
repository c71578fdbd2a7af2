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
import itertools
import logging
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

import jobledger
import jobledger.core
from jobledger import Job, JobContext, JobledgerError, JobWorker
from jobledger.core.faults import CrashAt

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


def _note(text: str, resource_id: str = "doc") -> jobledger.Annotation:
    """A W3C comment saying ``text`` on the whole of ``resource_id``."""
    return jobledger.Annotation(
        motivation="commenting",
        target=jobledger.Target(source=resource_id),
        body=[jobledger.TextualBody(value=text)],
    )


def _append(path: str, text: str) -> None:
    """Append ``text`` to ``path`` and fsync it: on disk before going on."""
    with open(path, "a") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


CRASH_ENV = "JOBLEDGER_CRASH"
"""The environment variable that arms a crash point in a child of this module
(``<point>:<k>``): the child reads it and passes the armed point into
``jobledger.open(faults=...)``; the library itself reads no environment."""


def armed_faults() -> CrashAt | None:
    """The crash point ``$JOBLEDGER_CRASH`` arms in this process, if any."""
    spec = os.environ.get(CRASH_ENV)
    return CrashAt.parse(spec) if spec else None


async def finish(db: str, sink: str) -> None:
    """Run the workers until every job in the log has ended."""
    async with jobledger.open(db, workers=[Work(sink)], faults=armed_faults()) as ledger:
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
    async with jobledger.open(db, workers=[Work(sink)], faults=armed_faults()) as ledger:
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
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash is not None:
        env[CRASH_ENV] = crash
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
    """Every invariant of issue 6 on the log ``db`` (a file, or a PostgreSQL
    URL), after recovery; returns the number of entries in the log."""
    if not str(db).startswith(("postgresql://", "postgres://")):
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            seqs = [row[0] for row in conn.execute("SELECT seq FROM events ORDER BY seq")]
        finally:
            conn.close()
        assert seqs == list(range(1, len(seqs) + 1)), "seq is not exactly 1..N"
    # Recover as a new process would (the sweep on open expires the leases
    # that have run out); a lease of the dead process may still be running.
    clock = jobledger.core.SystemClock()
    recovered_at = clock.now()  # the sweep on open expires every lease run out by then
    async with jobledger.open(db, clock=clock, sweep_interval=3600) as ledger:
        report = await ledger.verify()  # chain, versions, replay == read model
        assert report.ok, report.problems
        seqs = [env.seq async for env in ledger.events()]
        assert seqs == list(range(1, len(seqs) + 1)), "seq is not exactly 1..N"
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
                # Attempts that failed are bounded by the retries, lost workers by
                # the recoveries; a release (a worker stopping) spends neither.
                assert job.failures <= job.max_retries + 1, job
                assert job.recoveries <= job.max_recoveries, job
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
        await ctx.create_mark("doc", _note(f"n={job.params['n']}"))
        return {"n": job.params["n"]}


def state(model: jobledger.core.Projection) -> bytes:
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
        job = await ledger.submit(
            "poison", idempotency_key="poison", max_recoveries=2, max_retries=2, retry=retry
        )
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


class OffsetClock(jobledger.core.SystemClock):
    """The real clock with its wall clock ``offset`` seconds off; its monotonic
    clock and its sleeps are the real ones."""

    def __init__(self, offset: float) -> None:
        self.offset = timedelta(seconds=offset)

    def now(self) -> datetime:
        return super().now() + self.offset


def child_clock() -> OffsetClock:
    """The clock of a child process: off by ``$JOBLEDGER_TEST_CLOCK_OFFSET`` seconds."""
    return OffsetClock(float(os.environ.get(CLOCK_OFFSET_ENV, "0")))


class _WithFields(logging.Formatter):
    """A record's line with the fields jobledger's loggers bound (``error``,
    ``job_id``, ...), so a failure a child logs says what it was."""

    _PLAIN = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in self._PLAIN}
        line = super().format(record)
        return f"{line} {fields}" if fields else line


def _log_warnings() -> None:
    """Show jobledger's warnings on stderr: the parent asserts it stays empty
    where nothing may go wrong (a storage error the tail logged, say)."""
    handler = logging.StreamHandler()
    handler.setFormatter(_WithFields("%(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])


async def _line_from_parent() -> str:
    """The next line the parent writes on stdin (read in a thread: the loop
    runs on). The parent always writes one, or closes stdin."""
    return await asyncio.to_thread(sys.stdin.readline)


def spawn(
    db: Path, mode: str, *args: str, offset: float = 0.0, apart: bool = False
) -> subprocess.Popen[str]:
    """Start a child of ``mode`` on ``db`` with pipes for its stdin, stdout and
    stderr, its wall clock ``offset`` seconds off. ``apart``: in a PID
    namespace of its own (``unshare``), so that no other process can prove
    it dead, as for a process on another host; killing the child kills it."""
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    env[CLOCK_OFFSET_ENV] = repr(offset)
    namespace = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"] if apart else []
    return subprocess.Popen(
        [*namespace, sys.executable, __file__, str(db), mode, *args],
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
    """Close the child's stdin, wait for it to exit; its remaining stdout and
    stderr. (Read through the pipes' own buffers, which ``read_line`` may
    have filled ahead: ``communicate`` would read past them.)"""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.close()
    out, err = await asyncio.wait_for(
        asyncio.gather(asyncio.to_thread(proc.stdout.read), asyncio.to_thread(proc.stderr.read)),
        timeout,
    )
    await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout)
    return out, err


def stop_all(procs: list[subprocess.Popen[str]]) -> None:
    """Kill the children still running (after a failed check), reap them and
    close their pipes."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()  # (a stopped process is killed too)
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


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
            "mark": lambda: ctx.create_mark("late-doc", _note("paused", "late-doc")),
            "asset": lambda: ctx.create_asset("thumb", f"late/{job.id}.png", 10),
            "complete": lambda: send(jobledger.core.JobComplete(result={"by": "paused"}, **common)),
            "partial": lambda: send(jobledger.core.JobPartial(result={}, error="late", **common)),
            "skip": lambda: send(jobledger.core.JobSkip(reason="late", **common)),
            "fail": lambda: send(jobledger.core.JobFail(error="late", **common)),
            "cancel": lambda: send(jobledger.core.JobCancel(**common)),
            "suspend": lambda: send(jobledger.core.JobSuspend(**common)),
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
        await ctx.create_mark("doc", _note("successor"))
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
            assert (done.attempt, done.failures, done.recoveries) == (2, 0, 1)
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
            marks = await ledger.marks("doc")
            assert [m.annotation["body"][0]["value"] for m in marks] == ["successor"]
            assert await ledger.marks("late-doc") == [] and await ledger.assets(job.id) == []
            assert (await ledger.verify()).ok
    finally:
        stop_all([paused])
    return {"late": len(answers), "refusal": refusal, "refused_reports": refused_reports}


# Item 6: claims raced by many tasks in several processes.


async def claimer_child(db: str, tasks: str, index: str) -> None:
    """Read the pending jobs, say ``ready``, wait for the parent's cue, then
    claim them from ``tasks`` tasks at once, each task going through every
    job one claim at a time (naming the version read), each in its own order
    (rotated by the task and the process's ``index``) so the processes' small
    batches interleave; print one ``claim <job id> <outcome>`` line per
    claim: ``won`` or the error's type."""
    async with jobledger.open(db, clock=child_clock(), sweep_interval=3600) as ledger:
        pending = [job for job in (await ledger.list(limit=10_000)).jobs if job.status == "pending"]
        print("ready", flush=True)
        await _line_from_parent()
        lines: list[str] = []

        async def claim_all(n: int) -> None:
            shift = (n * 7 + int(index) * 3) % len(pending)
            for job in pending[shift:] + pending[:shift]:
                try:
                    await ledger.send(
                        jobledger.core.JobStart(
                            job_id=job.id,
                            worker=f"{os.getpid()}-{n}",
                            expected_version=job.version,
                            lease_seconds=3600,
                        )
                    )
                except JobledgerError as exc:
                    lines.append(f"claim {job.id} {type(exc).__name__}\n")
                else:
                    lines.append(f"claim {job.id} won\n")

        await asyncio.gather(*(claim_all(n) for n in range(int(tasks))))
        print("".join(lines), end="", flush=True)


async def claim_race(db: Path, *, processes: int, tasks: int, jobs: int) -> dict[str, int]:
    """``processes`` processes each claim every one of ``jobs`` pending jobs
    from ``tasks`` tasks, all at once: exactly one claim wins each job, every
    other one is a ``ConcurrencyConflict``, the log holds one ``job.started``
    per job, naming the winner. Returns the figures: claims, wins, conflicts,
    and how many processes won some."""
    async with jobledger.open(db) as ledger:
        ids = {(await ledger.submit("raced", {"n": n})).id for n in range(jobs)}
    claimers = [spawn(db, "claimer", str(tasks), str(n)) for n in range(processes)]
    try:
        for claimer in claimers:
            assert await read_line(claimer) == ["ready"]
        for claimer in claimers:
            tell(claimer)
        outcomes: Counter[str] = Counter()
        winners: dict[str, list[str]] = {job_id: [] for job_id in ids}
        for claimer in claimers:
            out, err = await ended(claimer)
            assert claimer.returncode == 0 and not err, err
            for line in out.splitlines():
                _, job_id, outcome = line.split()
                outcomes[outcome] += 1
                if outcome == "won":
                    winners[job_id].append(str(claimer.pid))
    finally:
        stop_all(claimers)
    assert sum(outcomes.values()) == processes * tasks * jobs
    assert all(len(won) == 1 for won in winners.values()), winners  # exactly one claim each
    assert set(outcomes) <= {"won", "ConcurrencyConflict"}, outcomes
    async with jobledger.open(db, sweep_interval=3600) as ledger:
        for job_id, (pid,) in winners.items():
            started = [env for env in await ledger.history(job_id) if env.type == "job.started"]
            assert len(started) == 1 and started[0].data.worker.startswith(f"{pid}-")  # type: ignore[union-attr]
        assert (await ledger.verify()).ok
    return {
        "claims": sum(outcomes.values()),
        "wins": outcomes["won"],
        "conflicts": outcomes["ConcurrencyConflict"],
        "winning_processes": len({pid for (pid,) in winners.values()}),
    }


# Item 7: submitters, workers and subscribers in separate processes, under load.

END = "end"
"""The job type of the sentinel the parent submits last: subscribers stop at it."""


class Busy(JobWorker):
    """Reports progress twice, makes a mark, writes its side effect (job id,
    attempt, process) to the sink, completes: several events per job."""

    job_types = ("busy",)
    concurrency = 4
    lease_seconds = 30.0  # (under load on two cores a heartbeat may come late)
    progress_interval = 0.0

    def __init__(self, sink: str) -> None:
        super().__init__()
        self.sink = sink

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        await ctx.progress(30, stage="one")
        resource = f"res-{job.params['n']}"
        await ctx.create_mark(resource, _note(job.id, resource))
        await ctx.progress(60, stage="two")
        _append(self.sink, f"{job.id} {ctx.attempt} {os.getpid()}\n")
        return {"n": job.params["n"]}


async def submitter_child(db: str, workdir: str, count: str) -> None:
    """Say ``ready``, wait for the parent's cue, submit ``count`` ``busy`` jobs
    in groups of four, recording what was sent and acknowledged (as
    :func:`child` does); then exit."""
    _log_warnings()
    sent, acks = str(Path(workdir) / "sent"), str(Path(workdir) / "acks")
    async with jobledger.open(db, clock=child_clock(), poll_interval=0.05) as ledger:
        print("ready", flush=True)
        await _line_from_parent()
        for start in range(0, int(count), 4):
            keys = [f"{os.getpid()}-{n}" for n in range(start, min(int(count), start + 4))]
            _append(sent, "".join(f"{key}\n" for key in keys))
            submitted = await asyncio.gather(
                *(ledger.submit("busy", {"n": key}, idempotency_key=key) for key in keys)
            )
            _append(acks, "".join(f"{k} {j.id}\n" for k, j in zip(keys, submitted, strict=True)))


async def worker_child(db: str, workdir: str) -> None:
    """Run a :class:`Busy` worker until the parent says stop, sweeping every
    0.05 s (often enough to see the other workers' jobs running)."""
    _log_warnings()
    sink = str(Path(workdir) / "sink")
    async with jobledger.open(
        db, workers=[Busy(sink)], clock=child_clock(), poll_interval=0.05, sweep_interval=0.05
    ) as ledger:
        print("ready", flush=True)
        await _line_from_parent()
        stats = ledger.statistics().workers[0]
    print(f"stats {stats.claimed} {stats.lost_claims}", flush=True)


async def subscriber_child(db: str, out: str, kind: str) -> None:
    """Follow the log with ``events(follow=True)`` from the start (``kind``
    ``events``) or with ``observe()`` live only (``observe``) until the
    sentinel job is created; write ``seq event_id`` of every envelope seen,
    in the order seen, to ``out``. Prints ``ready <head>`` once subscribed
    (an observer sees everything after that head, at least)."""
    _log_warnings()
    seen: list[jobledger.Envelope] = []
    async with jobledger.open(db, clock=child_clock(), poll_interval=0.05) as ledger:
        head = await ledger.head()
        if kind == "events":
            print(f"ready {head}", flush=True)
            async for env in ledger.events(follow=True):
                seen.append(env)
                if env.type == "job.created" and env.data.job_type == END:  # type: ignore[union-attr]
                    break
        else:
            done = asyncio.Event()
            failed: list[Exception] = []

            def on_next(env: jobledger.Envelope) -> None:
                seen.append(env)
                if env.type == "job.created" and env.data.job_type == END:  # type: ignore[union-attr]
                    done.set()

            def on_error(exc: Exception) -> None:
                failed.append(exc)
                done.set()

            subscription = ledger.observe().subscribe(on_next=on_next, on_error=on_error)
            print(f"ready {head}", flush=True)
            await done.wait()
            subscription.dispose()
            if failed:
                raise failed[0]
    _append(out, "".join(f"{env.seq} {env.event_id}\n" for env in seen))


async def load(
    db: Path,
    workdir: Path,
    *,
    submitters: int,
    jobs: int,
    workers: int,
    offsets: Sequence[float] = (),
) -> dict[str, Any]:
    """Item 7: ``submitters`` processes submit ``jobs`` jobs each while
    ``workers`` worker processes run them and two subscriber processes (one
    ``events(follow=True)``, one ``observe()``) follow the log. Every process
    exits cleanly with nothing on stderr (no ``database is locked``, no raw
    ``sqlite3`` error, no warning), each subscriber saw every event after it
    subscribed exactly once, in ``seq`` order, equal to the log read
    afterwards; no job was claimed twice (one ``job.started`` each, one run
    in the sink, attempt 1); every invariant holds.

    Item 9: ``offsets`` sets the wall clocks of the workers and submitters
    off (in turn, seconds): no live lease is expired by a process whose clock
    runs ahead, and the order of everything is the order of ``seq``, never of
    the times recorded. Every process is open before the first job is
    submitted (a process opening trusts its wall clock for the leases it
    finds past their expiry). Returns the figures."""
    started = time.perf_counter()

    def offset(n: int) -> float:
        return offsets[n % len(offsets)] if offsets else 0.0

    procs: list[subprocess.Popen[str]] = []
    try:
        async with jobledger.open(db, poll_interval=0.05) as ledger:
            subscribers = [
                spawn(db, "subscriber", str(workdir / f"seen-{kind}"), kind)
                for kind in ("events", "observe")
            ]
            working = [spawn(db, "worker", str(workdir), offset=offset(n)) for n in range(workers)]
            submitting = [
                spawn(db, "submitter", str(workdir), str(jobs), offset=offset(n + 1))
                for n in range(submitters)
            ]
            procs = subscribers + working + submitting
            heads = {}
            for kind, subscriber in zip(("events", "observe"), subscribers, strict=True):
                ready, head = await read_line(subscriber)
                assert ready == "ready"
                heads[kind] = int(head)
            for proc in working + submitting:
                assert await read_line(proc) == ["ready"]
            for submitter in submitting:
                tell(submitter)
            for submitter in submitting:
                _, err = await ended(submitter)
                assert submitter.returncode == 0 and not err, err
            _, acked = records(workdir)
            assert len(acked) == submitters * jobs
            for job_id in acked.values():
                assert (await ledger.wait(job_id, timeout=120)).status == "completed"
            claims = []
            for worker in working:
                tell(worker, "stop")
                out, err = await ended(worker)
                assert worker.returncode == 0 and not err, err
                claims.append(int(out.split()[1]))
            _append(str(workdir / "sent"), f"{END}\n")
            sentinel = await ledger.submit(END, idempotency_key=END)  # the subscribers stop at it
            _append(str(workdir / "acks"), f"{END} {sentinel.id}\n")
            for subscriber in subscribers:
                _, err = await ended(subscriber)
                assert subscriber.returncode == 0 and not err, err
            log = [env async for env in ledger.events()]
            listed = (await ledger.list(limit=10_000)).jobs
    finally:
        stop_all(procs)
    lines = [f"{env.seq} {env.event_id}" for env in log]
    assert (workdir / "seen-events").read_text().splitlines() == lines  # all, once, in order
    observed = (workdir / "seen-observe").read_text().splitlines()
    first = int(observed[0].split()[0])
    assert first <= heads["observe"] + 1 and observed == lines[first - 1 :]
    started_per_job = Counter(env.stream for env in log if env.type == "job.started")
    assert set(started_per_job.values()) == {1} and len(started_per_job) == len(acked)
    assert not [env for env in log if env.type == "job.lease_expired"]
    runs = [line.split() for line in (workdir / "sink").read_text().splitlines()]
    assert sorted(job_id for job_id, _, _ in runs) == sorted(acked.values())
    assert {attempt for _, attempt, _ in runs} == {"1"}  # each ran once, on its first attempt
    # The order is seq's: list() is by submission (created_seq), whatever the times say.
    assert [job.created_seq for job in listed] == sorted(
        (job.created_seq for job in listed), reverse=True
    )
    backwards = sum(1 for a, b in itertools.pairwise(log) if b.time < a.time)
    events = await check_invariants(db, *records(workdir))
    return {
        "processes": len(procs),
        "jobs": len(acked),
        "events": events,
        "claims_per_worker": claims,
        "observed": len(observed),
        "times_going_back": backwards,
        "seconds": round(time.perf_counter() - started, 1),
    }


# Item 9: a worker process whose wall clock is off.


class Holder(JobWorker):
    """Says ``claimed <job id> <attempt>`` and holds the job (renewing its
    lease) until the parent's cue."""

    job_types = ("held",)
    progress_interval = 0.0

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        print(f"claimed {job.id} {ctx.attempt}", flush=True)
        await _line_from_parent()
        return {"by": os.getpid()}


async def holder_child(db: str, lease_seconds: str) -> None:
    """Run a :class:`Holder` with leases of ``lease_seconds`` until its job ends."""
    worker = Holder()
    worker.lease_seconds = float(lease_seconds)
    async with jobledger.open(db, workers=[worker], clock=child_clock()) as ledger:
        (job,) = (await ledger.list()).jobs
        await ledger.wait(job.id, timeout=60)


async def standby_child(db: str, lease_seconds: str) -> None:
    """As :func:`holder_child`, saying ``ready`` once its ledger is open (its
    worker idle and listening)."""
    worker = Holder()
    worker.lease_seconds = float(lease_seconds)
    async with jobledger.open(db, workers=[worker], clock=child_clock()) as ledger:
        print("ready", flush=True)
        (job,) = (await ledger.list()).jobs
        await ledger.wait(job.id, timeout=60)


async def skewed_worker(
    db: Path, offset: float, *, dies: bool, lease: float = 1.0
) -> dict[str, Any]:
    """A worker process whose wall clock is ``offset`` seconds off holds a job
    under ``lease``-second leases while this process (the real clock) sweeps
    every 0.05 s. Alive, the worker keeps its lease through several renewals
    however far off its clock is, and completes the job on its first attempt.
    Killed (``dies``), its job is recovered here at once, whatever the clocks
    say: its lease names it as the holder, and a killed process of this host
    is provably dead (a zombie until reaped, then gone). (A dead holder that
    cannot be proven dead, on another host, waits for its lease: see
    ``test_a_dead_lease_is_expired_after_its_length_whatever_the_wall_clock_did``.)
    Returns the figures."""
    async with jobledger.open(db, sweep_interval=0.05, poll_interval=0.05) as ledger:
        job = await ledger.submit("held", max_retries=1)
        holder = spawn(db, "holder", repr(lease), offset=offset)
        try:
            assert await read_line(holder) == ["claimed", job.id, "1"]
            started = time.perf_counter()
            if dies:
                holder.kill()
                back = await ledger.wait(job.id, until=["pending"], timeout=60)
                assert (back.attempt, back.error_type) == (1, "LeaseExpired")
            else:
                renewals = 0
                async for env in ledger.events(follow=True, job_id=job.id):
                    renewals += env.type == "job.lease_renewed"
                    if renewals == 3 or env.type == "job.lease_expired":
                        break  # three renewals: the sweeper had every chance
                assert renewals == 3, "the live worker's lease was expired"
                tell(holder)
                done = await ledger.wait(job.id, timeout=60)
                assert (done.status, done.attempt, done.failures) == ("completed", 1, 0)
                _, err = await ended(holder)
                assert holder.returncode == 0, err
            waited = time.perf_counter() - started
            history = await ledger.history(job.id)
        finally:
            stop_all([holder])
    leases = [env for env in history if env.type in ("job.started", "job.lease_renewed")]
    expiries = [env for env in history if env.type == "job.lease_expired"]
    if dies:
        (expired,) = expiries
        assert expired.data.reason == "holder"  # type: ignore[union-attr]
        assert expired.data.recovery == 1  # type: ignore[union-attr]
    else:
        assert not expiries
    return {
        "offset": offset,
        "dies": dies,
        "renewals": len(leases) - 1,
        "seconds": round(waited, 2),
    }


PROCESS_CHILDREN: dict[str, Callable[..., Awaitable[None]]] = {
    "paused": paused_child,
    "claimer": claimer_child,
    "submitter": submitter_child,
    "worker": worker_child,
    "subscriber": subscriber_child,
    "holder": holder_child,
    "standby": standby_child,
}
"""The children of this section, by the mode named on their command line."""


if __name__ == "__main__":
    if sys.argv[2] == "poison":
        asyncio.run(poison_child(sys.argv[1]))
    elif sys.argv[2] in PROCESS_CHILDREN:
        asyncio.run(PROCESS_CHILDREN[sys.argv[2]](sys.argv[1], *sys.argv[3:]))
    else:
        asyncio.run(child(sys.argv[1], sys.argv[2], int(sys.argv[3])))
