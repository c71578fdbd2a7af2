"""An application's workers, as ``jobledger worker --app`` imports them
(``tests/test_worker_command.py`` runs the command with ``--app-dir tests``)."""

from __future__ import annotations

import asyncio
from typing import Any

import jobledger

__all__ = ["WORKERS", "Broken", "Hold", "Quick", "broken", "quick_only"]


class Hold(jobledger.JobWorker):
    """Holds its job ``params["seconds"]`` seconds (an hour by default)."""

    job_types = ("hold",)

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> dict[str, Any]:
        await asyncio.sleep(float(job.params.get("seconds", 3600)))
        return {"held": True}


class Quick(jobledger.JobWorker):
    """Ends its job at once."""

    job_types = ("quick",)

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> dict[str, Any]:
        return {"ok": True}


class Broken(jobledger.JobWorker):
    """A worker whose runner fails once started: its slot count raises once
    (a bug in the application's worker): the ledger fails and closes."""

    job_types = ("broken",)
    _asked = 0

    @property  # type: ignore[override]
    def concurrency(self) -> int:
        self._asked += 1
        if self._asked == 2:  # (the first: the constructor's; the second: the dispatcher's)
            raise RuntimeError("a worker's bug")
        return 1

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> None:
        return None


WORKERS = [Hold(), Quick()]


def quick_only() -> list[jobledger.JobWorker]:
    """A factory, as ``--app worker_app:quick_only`` calls it."""
    return [Quick()]


async def broken() -> jobledger.JobWorker:
    """An async factory."""
    return Broken()
