"""Embed jobledger, run a worker, and follow its jobs live.

Run: python examples/live_progress.py [path/to/jobs.db]

A UI would do what `follow()` does here: subscribe to the log from a known
`seq` and render each event as it arrives. Events are printed in log order,
and the stream never skips or repeats one, even while jobs run.
"""

from __future__ import annotations

import asyncio
import re
import sys
from typing import Any

import jobledger

TEXTS = {
    "doc-1": "Event sourcing keeps every change. The log is the truth. State is derived.",
    "doc-2": "Workers claim jobs. Leases fence stale workers. Nothing acknowledged is lost.",
}


class SentenceCounter(jobledger.JobWorker):
    """Counts sentences, reporting progress per sentence and marking each one."""

    job_types = ("count-sentences",)
    concurrency = 2

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> dict[str, Any]:
        resource = job.params["resource"]
        text = TEXTS[resource]
        sentences = [m for m in re.finditer(r"[^.]+\.", text) if m.group().strip()]
        for number, sentence in enumerate(sentences, start=1):
            mark = jobledger.Annotation.on_text(
                resource, text, sentence.start(), sentence.end(), motivation="tagging"
            )
            await ctx.create_mark(resource, mark)
            await ctx.progress(processed=number, total=len(sentences), stage="counting")
        return {"sentences": len(sentences)}


async def follow(ledger: jobledger.Ledger, after: int, expected_jobs: int) -> None:
    finished = 0
    async for env in ledger.events(after=after, follow=True):
        data = env.data
        if env.type == "job.progressed":
            print(f"  #{env.seq:<3} {env.stream[-6:]} {data.percent:5.1f}%")  # type: ignore[union-attr]
        else:
            print(f"  #{env.seq:<3} {env.stream[-6:]} {env.type}")
        if env.type in ("job.completed", "job.failed"):
            finished += 1
            if finished == expected_jobs:
                return


async def main(path: str) -> None:
    async with jobledger.open(path, workers=[SentenceCounter()]) as ledger:
        start = await ledger.head()
        follower = asyncio.create_task(follow(ledger, start, expected_jobs=len(TEXTS)))
        jobs = [
            await ledger.submit("count-sentences", {"resource": r}, user="alice") for r in TEXTS
        ]
        await follower
        for job in jobs:
            done = await ledger.get(job.id, user="alice")
            print(done.params["resource"], done.status, done.result)
        print("marks on doc-1:", [m.exact for m in await ledger.marks("doc-1")])
        print("log verified:", (await ledger.verify()).ok)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "live-progress.db"))
