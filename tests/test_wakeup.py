"""Another process's commit wakes this one at once: its workers and its
followers, with no poll (the clock never moves here)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import jobledger

SUBMIT = """
import asyncio, sys
import jobledger

async def main():
    async with jobledger.open(sys.argv[1]) as ledger:
        for i in range(int(sys.argv[2])):
            await ledger.submit("elsewhere", {"i": i})

asyncio.run(main())
"""


async def _submit_elsewhere(path: Path, count: int) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SUBMIT, str(path), str(count)
    )
    assert await child.wait() == 0


async def test_a_job_another_process_submits_starts_without_a_poll(tmp_path: Path) -> None:
    started: list[str] = []
    all_started = asyncio.Event()

    class Elsewhere(jobledger.JobWorker):
        job_types = ("elsewhere",)

        async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> Any:
            started.append(job.id)
            if len(started) == 3:
                all_started.set()

    clock = jobledger.ManualClock()
    path = tmp_path / "shared.db"
    async with jobledger.open(path, workers=[Elsewhere()], clock=clock, poll_interval=3600):
        await _submit_elsewhere(path, 3)
        await asyncio.wait_for(all_started.wait(), timeout=30)
        assert clock.monotonic() == 0.0  # no poll came due: the commits woke the worker


async def test_a_follower_sees_another_process_events_without_a_poll(tmp_path: Path) -> None:
    clock = jobledger.ManualClock()
    path = tmp_path / "shared.db"
    async with jobledger.open(path, clock=clock, poll_interval=3600) as ledger:
        seen: list[str] = []

        async def follow() -> None:
            async for env in ledger.events(follow=True):
                seen.append(env.type)
                if len(seen) == 2:
                    return

        follower = asyncio.ensure_future(follow())
        await _submit_elsewhere(path, 2)
        await asyncio.wait_for(follower, timeout=30)
        assert seen == ["job.created", "job.created"]
        assert clock.monotonic() == 0.0
