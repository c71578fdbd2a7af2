"""Worker processes on one shared log whose queue has a capacity, and the
check that the capacity held across all of them (issue 16).

Each child opens the log with workers of the ``narrow`` type (taking up to
three jobs at once) and no ``queues=`` of its own: it learns the capacity
from the log. It says ``ready`` and works until the parent closes its stdin.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import jobledger
from jobledger import Job, JobContext, JobWorker
from jobledger.core import Envelope, JobStatus, Projection

QUEUE = "narrow"


class Narrow(JobWorker):
    """Holds each job a little, so that jobs of several processes overlap."""

    job_types = ("narrow",)
    concurrency = 3

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        await asyncio.sleep(float(job.params.get("hold", 0.1)))
        return {"ok": True}


async def worker_child(db: str) -> None:
    async with jobledger.open(db, workers=[Narrow()], poll_interval=0.2) as ledger:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.read)  # until the parent closes stdin
        statistics = ledger.statistics()
    refused = sum(w.refused_full for w in statistics.workers)
    print(f"refused_full {refused}", flush=True)


def spawn(db: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, db],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def most_running(history: Sequence[Envelope]) -> tuple[int, list[str]]:
    """Fold ``history`` (the whole log, in order) job by job and return the
    most jobs of ``QUEUE`` running at once, and every breach: a
    ``job.started`` of the queue decided while its capacity (as the log
    recorded it up to then) was already reached."""
    model = Projection()
    capacity: int | None = None
    most = 0
    breaches: list[str] = []
    for env in history:
        if env.type == "queue.configured" and env.data.queue == QUEUE:  # type: ignore[union-attr]
            capacity = env.data.capacity  # type: ignore[union-attr]
        running = _running(model)
        job = model.jobs.get(env.stream)
        started = env.type == "job.started" and job is not None and job.queue == QUEUE
        if started and capacity is not None and running >= capacity:
            breaches.append(f"seq {env.seq}: {running} running, capacity {capacity}")
        model.apply(env)
        most = max(most, _running(model))
    return most, breaches


def _running(model: Projection) -> int:
    return sum(
        1 for job in model.jobs.values() if job.queue == QUEUE and job.status is JobStatus.RUNNING
    )


async def stop(procs: Sequence[subprocess.Popen[str]], timeout: float = 60) -> list[int]:
    """Close each child's stdin, wait for it; the ``refused_full`` each said."""
    refused: list[int] = []
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.close()
    for proc in procs:
        assert proc.stdout is not None and proc.stderr is not None
        out, err = await asyncio.wait_for(
            asyncio.gather(
                asyncio.to_thread(proc.stdout.read), asyncio.to_thread(proc.stderr.read)
            ),
            timeout,
        )
        assert await asyncio.to_thread(proc.wait, timeout) == 0, err
        lines = [line.split() for line in out.splitlines()]
        refused += [int(words[1]) for words in lines if words[:1] == ["refused_full"]]
    return refused


def kill_all(procs: Sequence[subprocess.Popen[str]]) -> None:
    """Kill the children still running (after a failed check), reap them and
    close their pipes."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


if __name__ == "__main__":
    asyncio.run(worker_child(sys.argv[1]))
