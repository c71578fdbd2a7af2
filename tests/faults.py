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
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jobledger
from jobledger import Job, JobContext, JobWorker

CHILD_JOBS = 24
"""Jobs a child submits, in groups of four (so batches hold several commands)."""


class Work(JobWorker):
    """Reports progress once and completes: every crash point is on its way."""

    job_types = ("work",)
    concurrency = 4
    lease_seconds = 5.0
    progress_interval = 0.0

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        await ctx.progress(50, stage="half")
        return {"n": job.params["n"]}


async def child(db: str, sent_path: str, acks_path: str, jobs: int) -> None:
    """Submit ``jobs`` jobs in groups of four while a worker runs them; wait for all."""
    # Blocking writes on purpose: a record must be on disk before the child goes on.
    with open(sent_path, "a") as sent, open(acks_path, "a") as acks:  # noqa: ASYNC230
        async with jobledger.open(db, workers=[Work()]) as ledger:
            done = []
            for start in range(0, jobs, 4):
                keys = [f"{os.getpid()}-{n}" for n in range(start, min(jobs, start + 4))]
                sent.write("".join(f"{key}\n" for key in keys))
                sent.flush()
                os.fsync(sent.fileno())
                submitted = await asyncio.gather(
                    *(
                        ledger.submit("work", {"n": key}, idempotency_key=key, max_retries=2)
                        for key in keys
                    )
                )
                acks.write("".join(f"{k} {j.id}\n" for k, j in zip(keys, submitted, strict=True)))
                acks.flush()
                os.fsync(acks.fileno())
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
        [
            sys.executable,
            __file__,
            str(db),
            str(workdir / "sent"),
            str(workdir / "acks"),
            str(jobs),
        ],
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
    # Recover as a new process would, on a clock past every lease of the dead one.
    clock = jobledger.ManualClock(datetime.now(UTC) + timedelta(minutes=10))
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
                live = job.status == "running" and job.lease and job.lease.expires_at > clock.now()
                assert job.is_terminal or job.status == "pending" or live, job
            if page.cursor is None:
                break
            cursor = page.cursor
        return await ledger.head()


if __name__ == "__main__":
    db_arg, sent_arg, acks_arg, jobs_arg = sys.argv[1:5]
    asyncio.run(child(db_arg, sent_arg, acks_arg, int(jobs_arg)))
