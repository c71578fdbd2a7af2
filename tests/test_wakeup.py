"""Another process's commit wakes this one at once: its workers and its
followers, with no poll (the clock never moves here)."""

from __future__ import annotations

import asyncio
import os
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


class _HoldCommit:
    """Faults that hold the writer's thread just before COMMIT until let go
    (a slow disk), to close the log while a commit is in flight."""

    def __init__(self) -> None:
        import threading

        self.reached = threading.Event()
        self.go = threading.Event()

    def reach(self, point: str) -> None:
        if point == "store.after_insert" and not self.go.is_set():
            self.reached.set()
            self.go.wait(10)


async def test_closing_while_a_commit_is_in_flight_never_writes_into_a_reused_fd(
    tmp_path: Path,
) -> None:
    # The notice of a commit is written on the writer's thread, after COMMIT.
    # A close that runs meanwhile must not close the notify file under it:
    # its number may be taken at once by any file this process opens, which
    # the late notice would then overwrite (a byte at offset 0).
    import os

    from jobledger.store import SqliteLog
    from jobledger.store.sqlite_writer import _OWNED

    from .conftest import create, eventually, running

    hold = _HoldCommit()
    log = SqliteLog(tmp_path / "j.db", faults=hold)
    victim = tmp_path / "victim"
    victim.write_bytes(b"SQLite format 3\x00")
    async with running(log) as engine:
        sending = asyncio.ensure_future(engine.bus.send(create("j1")))
        await asyncio.get_running_loop().run_in_executor(None, hold.reached.wait, 10)
        notify_fd = log._notifier.fd if log._notifier is not None else None
        assert notify_fd is not None
        reader = log._reader
        closing = asyncio.ensure_future(log.close())
        # Until the close has let go of the reader: from then on it only waits
        # for the writer's thread (a condition, not a duration).
        await eventually(lambda: reader not in _OWNED)
        opened: list[int] = []  # files opened now, by anyone here, take the lowest numbers
        while len(opened) < 16 and notify_fd not in opened:
            opened.append(os.open(victim, os.O_RDWR))
        try:
            hold.go.set()
            await asyncio.gather(closing, sending, return_exceptions=True)
        finally:
            for fd in opened:
                os.close(fd)
    assert victim.read_bytes() == b"SQLite format 3\x00"


async def test_notify_files_of_processes_that_are_gone_are_pruned_on_open(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    gone = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    assert await gone.wait() == 0
    folder = tmp_path / "shared.db-notify"
    folder.mkdir()
    (folder / f"{gone.pid}-0123456789ab").write_bytes(b"")  # killed before it cleaned up
    (folder / f"{os.getpid()}-ba9876543210").write_bytes(b"")  # a live process's
    async with jobledger.open(path):
        names = sorted(os.listdir(folder))
        assert f"{gone.pid}-0123456789ab" not in names
        assert f"{os.getpid()}-ba9876543210" in names
        assert len(names) == 2  # the live one's, and this log's own
    assert os.listdir(folder) == [f"{os.getpid()}-ba9876543210"]


async def test_the_last_log_to_close_leaves_no_notify_folder(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with jobledger.open(path) as first, jobledger.open(path) as second:
        await first.submit("t")
        await second.submit("t")
        assert len(os.listdir(tmp_path / "jobs.db-notify")) == 2
    assert sorted(os.listdir(tmp_path)) == ["jobs.db"]
