"""The one list of job endings: ``ends_job`` is true exactly at the event
that ends a job's run, on every way a run has ended in a released format
(the v1 and v2 fixture logs, never regenerated, hold each, the older lease
expiry that failed a job included) and on a retry by hand."""

from __future__ import annotations

from pathlib import Path

import jobledger
from jobledger.core import Envelope, JobStart, ends_job, evolve_job

FIXTURES = Path(__file__).parent / "fixtures"


def _check_endings(envelopes: list[Envelope]) -> set[str]:
    """Fold each job's stream; ``ends_job`` must be true where a run ends and
    false where the job is still live. Returns the event types seen ending one."""
    jobs: dict[str, jobledger.Job | None] = {}
    ending: set[str] = set()
    for env in envelopes:
        if not env.type.startswith("job."):
            continue
        before = jobs.get(env.stream)
        after = evolve_job(before, env)
        jobs[env.stream] = after
        if after is not None and not after.is_terminal:
            assert not ends_job(env), env
        elif after is not None and (before is None or not before.is_terminal):
            assert ends_job(env), env
            ending.add(env.type)
    return ending


async def test_ends_job_marks_every_ending_of_the_released_formats(tmp_path: Path) -> None:
    for name in ("log-v1.ndjson", "log-v2.ndjson"):
        lines = (FIXTURES / name).read_bytes().splitlines(keepends=True)
        async with jobledger.open(tmp_path / f"{name}.db") as ledger:
            await ledger.import_log(lines)
            envelopes = [env async for env in ledger.events()]
        ending = _check_endings(envelopes)
        if name == "log-v1.ndjson":  # the older lease expiry that failed its job
            assert "job.lease_expired" in ending


async def test_a_retried_job_ends_again_and_only_then(tmp_path: Path) -> None:
    async with jobledger.open(tmp_path / "jobs.db") as ledger:
        job = await ledger.submit("t")
        await ledger.cancel(job.id)
        await ledger.retry(job.id)
        await ledger.send(JobStart(job_id=job.id, worker="w", expected_version=3))
        await ledger.cancel(job.id)  # a request while it runs: not an ending yet
        envelopes = [env async for env in ledger.events()]
    assert [e.type for e in envelopes if ends_job(e)] == ["job.cancelled"]
    _check_endings(envelopes)
