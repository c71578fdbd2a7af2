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
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
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


def _note(text: str) -> jobledger.Annotation:
    return jobledger.Annotation(
        motivation="commenting",
        target=jobledger.Target(source="doc"),
        body=[jobledger.TextualBody(value=text)],
    )


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
        await ctx.create_mark("doc", _note(f"n={job.params['n']}"))
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


if __name__ == "__main__":
    if sys.argv[2] == "poison":
        asyncio.run(poison_child(sys.argv[1]))
    else:
        asyncio.run(child(sys.argv[1], sys.argv[2], int(sys.argv[3])))
