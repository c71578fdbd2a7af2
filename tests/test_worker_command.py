"""``jobledger worker``: a real subprocess on a real SQLite file, stopped by
real signals; the app's workers from ``tests/worker_app.py``. Argument
errors and a failing ledger are checked in-process through ``main``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import jobledger
from jobledger.cli import main
from jobledger.core import ValidationError

from .conftest import eventually
from .worker_app import Hold

HERE = Path(__file__).resolve().parent


class Worker:
    """A running ``jobledger worker`` process and the JSON lines it logged."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self.other: list[str] = []  # stderr lines that are not JSON (there must be none)

    async def until(self, event: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        """The first line logged (from now or before) with ``event`` and ``fields``."""
        assert self.proc.stderr is not None

        def found() -> dict[str, Any] | None:
            for line in self.lines:
                if line.get("event") == event and all(line.get(k) == v for k, v in fields.items()):
                    return line
            return None

        async def read() -> dict[str, Any]:
            assert self.proc.stderr is not None
            while (line := found()) is None:
                raw = await self.proc.stderr.readline()
                if not raw:
                    raise AssertionError(f"the worker ended before {event!r}: {self.other}")
                self._take(raw)
            return line

        return await asyncio.wait_for(read(), timeout)

    def _take(self, raw: bytes) -> None:
        text = raw.decode().strip()
        try:
            self.lines.append(json.loads(text))
        except json.JSONDecodeError:
            self.other.append(text)

    async def ended(self, timeout: float) -> int:
        assert self.proc.stderr is not None
        rest = await asyncio.wait_for(self.proc.stderr.read(), timeout)
        for raw in rest.splitlines():
            if raw.strip():
                self._take(raw)
        return await asyncio.wait_for(self.proc.wait(), timeout)


@asynccontextmanager
async def worker(db: Path, *args: str) -> AsyncIterator[Worker]:
    env = {k: v for k, v in os.environ.items() if k not in {"FORCE_COLOR", "COLUMNS"}}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jobledger.cli", "worker", "--db", str(db),
        "--app-dir", str(HERE), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    running = Worker(proc)
    try:
        await running.until("worker running")
        yield running
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def running(ledger: jobledger.Ledger, job_id: str) -> None:
    async def started() -> bool:
        return (await ledger.get(job_id)).status == "running"

    await eventually(started, within=30)


async def test_sigterm_releases_the_job_in_flight_for_another_worker_and_exits_0(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.db"
    async with jobledger.open(db) as ledger:
        async with worker(db, "--app", "worker_app:WORKERS", "--grace", "1") as w:
            job = await ledger.submit("hold")
            await running(ledger, job.id)
            started = await w.until("job started", job_id=job.id)
            assert (started["worker"], started["job_type"], started["level"]) == (
                "Hold",
                "hold",
                "info",
            )
            w.proc.send_signal(signal.SIGTERM)
            assert await w.ended(timeout=20) == 0, w.other
        assert not w.other, w.other  # JSON lines only, no traceback
        events = [line["event"] for line in w.lines]
        assert "stopping: no new claims" in events and events[-1] == "worker stopped"
        released = [line for line in w.lines if line["event"] == "job released"]
        assert [(line["job_id"], line["worker"]) for line in released] == [(job.id, "Hold")]
        history = [env.type for env in await ledger.history(job.id)]
        assert history == ["job.created", "job.started", "job.released"]
        again = await ledger.get(job.id)
        assert again.status == "pending"

    class Prompt(Hold):  # another worker of the same type, that ends the job at once
        async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> dict[str, Any]:
            return {"resumed": True}

    async with jobledger.open(db, workers=[Prompt()]) as ledger:
        done = await ledger.wait(job.id, timeout=30)
        assert (done.status, done.result) == ("completed", {"resumed": True})
        assert (done.failures, done.recoveries) == (0, 0)  # nothing spent
        assert (await ledger.verify()).ok


async def test_a_second_signal_ends_the_grace_at_once(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    async with jobledger.open(db) as ledger:
        async with worker(db, "--app", "worker_app:WORKERS", "--grace", "600") as w:
            job = await ledger.submit("hold")
            await running(ledger, job.id)
            w.proc.send_signal(signal.SIGINT)
            await w.until("stopping: no new claims")
            loop = asyncio.get_running_loop()
            before = loop.time()
            w.proc.send_signal(signal.SIGTERM)
            assert await w.ended(timeout=30) == 0, w.other
            assert loop.time() - before < 15  # not the 600 s of grace
        assert "stopping at once" in [line["event"] for line in w.lines]
        assert (await ledger.get(job.id)).status == "pending"
        assert [env.type for env in await ledger.history(job.id)][-1] == "job.released"


async def test_each_job_is_logged_at_its_start_and_end_with_its_id_and_worker(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.db"
    async with jobledger.open(db) as ledger:
        async with worker(db, "--app", "worker_app:quick_only", "--concurrency", "2") as w:
            jobs = [await ledger.submit("quick") for _ in range(3)]
            for job in jobs:
                assert (await ledger.wait(job.id, timeout=30)).status == "completed"
                ended = await w.until("job ended", job_id=job.id)
                assert (ended["worker"], ended["report"], ended["logger"]) == (
                    "Quick",
                    "job:complete",
                    "jobledger.workers",
                )
                assert await w.until("job started", job_id=job.id)
            w.proc.send_signal(signal.SIGTERM)
            assert await w.ended(timeout=20) == 0
        assert not w.other, w.other


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--app", "worker_app"], "expected MODULE:ATTR"),
        (["--app", "no_such_module:WORKERS"], "cannot import no_such_module"),
        (["--app", "worker_app:MISSING"], "worker_app has no MISSING"),
        (["--app", "worker_app:Hold.job_types"], "expected a JobWorker"),
        (["--app", "worker_app:WORKERS", "--types", "nosuch"], "no worker for those job types"),
        (["--app", "worker_app:WORKERS", "--grace", "nan"], "between 0 and 86400"),
        (["--app", "worker_app:WORKERS", "--grace", "-1"], "between 0 and 86400"),
        (["--app", "worker_app:WORKERS", "--concurrency", "0"], "from 1 to 10000"),
        (["--app", "worker_app:WORKERS", "--concurrency", "10001"], "from 1 to 10000"),
    ],
)
def test_a_bad_app_or_option_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    db = tmp_path / "jobs.db"
    code = main(["worker", "--db", str(db), "--app-dir", str(HERE), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert says in err and "Traceback" not in err
    assert not db.exists()  # nothing opened, nothing made


def test_a_ledger_that_fails_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The app's worker fails once started (an async factory made it): the
    ledger closes itself, and the command exits 1 so a process manager
    restarts it."""
    db = tmp_path / "jobs.db"
    code = main(["worker", "--db", str(db), "--app-dir", str(HERE), "--app", "worker_app:broken"])
    err = capsys.readouterr().err
    assert code == 1
    failed = [json.loads(line) for line in err.splitlines() if '"the ledger failed"' in line]
    assert [line["part"] for line in failed] == ["worker:Broken"]
    assert "a worker's bug" in failed[0]["error"]


def test_the_help_says_what_it_does_with_an_example() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "jobledger.cli", "worker", "--help"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "example: jobledger worker --db" in help_text
    assert "--grace SECONDS" in help_text


async def test_end_grace_cuts_a_close_short_and_wait_closed_returns_after_it(
    tmp_path: Path,
) -> None:
    """The API under the command: ``end_grace()`` before a close with ten
    minutes of grace releases the running job at once; ``wait_closed()``
    returns once the close has ended."""
    loop = asyncio.get_running_loop()
    async with jobledger.open(tmp_path / "jobs.db", workers=[Hold()], stop_timeout=600) as ledger:
        job = await ledger.submit("hold")
        await running(ledger, job.id)
        closed = asyncio.ensure_future(ledger.wait_closed())
        await asyncio.sleep(0)
        assert not closed.done()
        ledger.end_grace()
        began = loop.time()
    assert loop.time() - began < 15  # the close did not wait out 600 s of grace
    await asyncio.wait_for(closed, 5)
    async with jobledger.open(tmp_path / "jobs.db") as again:
        assert [e.type for e in await again.history(job.id)][-1] == "job.released"
        assert (await again.get(job.id)).status == "pending"


class _Bare(jobledger.JobWorker):
    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> None:
        return None


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"job_types": ()}, "job_types"),
        ({"job_types": ("",)}, "job_types"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"concurrency": "3"}, "concurrency"),
        ({"concurrency": 10**9}, "concurrency"),
        ({"lease_seconds": float("nan")}, "lease_seconds"),
        ({"lease_seconds": 0}, "lease_seconds"),
        ({"lease_seconds": float("inf")}, "lease_seconds"),
        ({"stop_grace": -1.0}, "stop_grace"),
        ({"progress_interval": float("nan")}, "progress_interval"),
    ],
)
def test_a_worker_with_a_bad_setting_is_a_validation_error_naming_it(
    settings: dict[str, Any], field: str
) -> None:
    kind = type("Bad", (_Bare,), {"job_types": ("t",), **settings})
    with pytest.raises(ValidationError) as refused:
        kind()
    assert refused.value.field == field
    assert kind.__name__ in str(refused.value)
