"""Every lifecycle feature of the seeds, through the public API on a real
SQLite file, checking the resulting state and the exact events. Time-driven
behaviour runs on a ManualClock: nothing here sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

import jobledger
import jobledger.core
from jobledger import (
    Job,
    JobContext,
    JobType,
    JobWorker,
    ManualClock,
    NonRetryableError,
    PartialResult,
    RetryPolicy,
    SkipJob,
)
from jobledger.core import retry_delay

from .conftest import eventually, note

FAST_RETRY = RetryPolicy(base_delay=1.0, max_delay=4.0, jitter=False)


def types_of(history: list[jobledger.Envelope]) -> list[str]:
    return [e.type for e in history]


async def advance_until(
    clock: ManualClock, check: Callable[[], Awaitable[bool]], *, step: float = 1.0, limit: int = 200
) -> None:
    """Advance the clock a step at a time until ``check()`` holds. After each
    step, wait (on conditions, not durations) until the timers it woke have
    done their work and gone back to sleep, so no step is lost on a slow machine."""
    loop = asyncio.get_running_loop()
    for _ in range(limit):
        if await check():
            return
        asleep = clock.sleepers
        clock.advance(step)
        deadline = loop.time() + 0.5  # one-shot timers do not sleep again
        # Spin the loop (no real delay) until the woken timers sleep again.
        while clock.sleepers < asleep and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0)
        for _ in range(20):
            await asyncio.sleep(0)
    # Time has been given; on a slow machine the work it woke may still be running.
    await eventually(check, within=10.0)


async def status_is(ledger: jobledger.Ledger, job_id: str, *statuses: str) -> bool:
    return (await ledger.get(job_id)).status in statuses


class Scripted(JobWorker):
    """Does what the job's params say, attempt by attempt."""

    job_types = ("scripted",)
    concurrency = 4
    progress_interval = 0.0
    lease_seconds = 30.0
    stop_grace = 5.0

    def __init__(self) -> None:
        super().__init__()
        self.started: dict[str, int] = {}
        self.seen_checkpoints: list[dict[str, Any] | None] = []

    async def execute(self, job: Job, ctx: JobContext) -> Any:
        self.started[job.id] = ctx.attempt
        plan = job.params.get("plan", [])
        action = plan[ctx.attempt - 1] if ctx.attempt <= len(plan) else "ok"
        match action:
            case "ok":
                return {"attempt": ctx.attempt}
            case "fail":
                raise RuntimeError(f"failure on attempt {ctx.attempt}")
            case "fatal":
                raise NonRetryableError("the input can never work")
            case "skip":
                raise SkipJob("not in English")
            case "partial":
                return PartialResult(result={"done": 3}, error="2 of 5 sources unreadable")
            case "hang":
                await asyncio.Event().wait()
            case "cooperate":
                self.seen_checkpoints.append(ctx.checkpoint)
                start = (ctx.checkpoint or {}).get("step", 0)
                for step in range(start, 100):
                    await ctx.progress(step, checkpoint={"step": step})
                    if ctx.stopping:
                        return None
                    await ctx.wait_stopping()
            case "ignore":
                while True:
                    try:
                        await asyncio.Event().wait()
                    except asyncio.CancelledError:
                        raise
            case "assets":
                await ctx.create_asset("image/png", "thumbs/a.png", 1234, url="https://x/a.png")
                return {"assets": 1}
        raise AssertionError(action)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def worker() -> Scripted:
    return Scripted()


@pytest.fixture
async def ledger(
    db_path: Path, clock: ManualClock, worker: Scripted
) -> AsyncIterator[jobledger.Ledger]:
    async with jobledger.open(
        db_path,
        workers=[worker],
        clock=clock,
        poll_interval=1.0,
        sweep_interval=1.0,
        stop_timeout=0.2,
        job_types=[JobType(name="scripted", retry=FAST_RETRY, suspendable=True)],
    ) as opened:
        yield opened


async def claimed_elsewhere(ledger: jobledger.Ledger, job_type: str = "t") -> Job:
    """A job submitted, then claimed by a worker outside this ledger (a raw ``job:start``)."""
    job = await ledger.submit(job_type)
    await ledger.send(jobledger.core.JobStart(job_id=job.id, worker="w", expected_version=1))
    return job


async def submit(ledger: jobledger.Ledger, *plan: str, **kw: Any) -> Job:
    return await ledger.submit("scripted", {"plan": list(plan)}, user="alice", **kw)


# -- statuses and transitions ----------------------------------------------


async def test_a_refused_transition_names_both_states(ledger: jobledger.Ledger) -> None:
    job = await submit(ledger, "ok")
    await ledger.wait(job.id, timeout=10)
    with pytest.raises(jobledger.InvalidTransition) as caught:
        await ledger.cancel(job.id)
    assert (caught.value.current, caught.value.target) == ("completed", "cancelled")
    assert "completed" in str(caught.value) and "cancelled" in str(caught.value)
    with pytest.raises(jobledger.InvalidTransition):
        await ledger.send(jobledger.core.JobProgress(job_id=job.id, attempt=1, percent=5))


# -- retries ---------------------------------------------------------------


async def test_a_failing_job_is_retried_with_backoff_until_it_succeeds(
    ledger: jobledger.Ledger, clock: ManualClock
) -> None:
    job = await submit(ledger, "fail", "fail", "ok", max_retries=2)
    await advance_until(clock, lambda: status_is(ledger, job.id, "completed"))
    done = await ledger.get(job.id)
    assert done.attempt == 3 and done.result == {"attempt": 3}
    history = await ledger.history(job.id)
    assert types_of(history) == [
        "job.created",
        "job.started",
        "job.retry_scheduled",
        "job.started",
        "job.retry_scheduled",
        "job.started",
        "job.completed",
    ]
    retries = [e for e in history if e.type == "job.retry_scheduled"]
    assert [r.data.attempt for r in retries] == [1, 2]  # type: ignore[union-attr]
    assert [r.data.error for r in retries] == ["failure on attempt 1", "failure on attempt 2"]  # type: ignore[union-attr]
    # Backoff: 1 s, then 2 s (no jitter in this policy), from the failure's time.
    assert [r.data.run_at - r.time for r in retries] == [  # type: ignore[union-attr]
        timedelta(seconds=1),
        timedelta(seconds=2),
    ]
    starts = [e for e in history if e.type == "job.started"]
    assert starts[1].time >= retries[0].data.run_at  # type: ignore[union-attr]


async def test_out_of_retries_the_job_fails_with_the_last_error(
    ledger: jobledger.Ledger, clock: ManualClock
) -> None:
    job = await submit(ledger, "fail", "fail", max_retries=1)
    await advance_until(clock, lambda: status_is(ledger, job.id, "failed"))
    done = await ledger.get(job.id)
    assert (done.attempt, done.error, done.error_type) == (
        2,
        "failure on attempt 2",
        "RuntimeError",
    )
    assert types_of(await ledger.history(job.id))[-1] == "job.failed"


async def test_a_non_retryable_error_fails_at_once(ledger: jobledger.Ledger) -> None:
    job = await submit(ledger, "fatal", max_retries=5)
    done = await ledger.wait(job.id, timeout=10)
    assert (done.status, done.attempt, done.error) == ("failed", 1, "the input can never work")


async def test_per_type_retries_apply_unless_the_job_overrides(db_path: Path) -> None:
    kinds = [JobType(name="a", max_retries=3, retry=FAST_RETRY, timeout=30, queue="q")]
    async with jobledger.open(db_path, job_types=kinds) as ledger:
        plain = await ledger.submit("a")
        custom = await ledger.submit("a", max_retries=0, timeout=5)
        assert (plain.max_retries, plain.timeout, plain.retry, plain.queue) == (
            3,
            30,
            FAST_RETRY,
            "q",
        )
        assert (custom.max_retries, custom.timeout) == (0, 5)
        assert [t.name for t in ledger.job_types()] == ["a"]


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0)
    for retry in range(1, 8):
        ceiling = min(10.0, 2.0 ** (retry - 1))
        delays = [retry_delay(policy, retry, f"job-{i}") for i in range(50)]
        assert all(0 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 40  # spread across jobs
        assert delays == [retry_delay(policy, retry, f"job-{i}") for i in range(50)]  # stable
    assert retry_delay(RetryPolicy(base_delay=1, max_delay=10, jitter=False), 9, "j") == 10.0


# -- timeouts ----------------------------------------------------------------


async def test_a_job_over_its_timeout_is_stopped_and_ends_timed_out(
    ledger: jobledger.Ledger, clock: ManualClock
) -> None:
    job = await submit(ledger, "hang", timeout=5)
    await eventually(lambda: status_is(ledger, job.id, "running"))
    await advance_until(clock, lambda: status_is(ledger, job.id, "timed_out"))
    done = await ledger.get(job.id)
    assert done.error == "timed out after 5 s"
    assert types_of(await ledger.history(job.id))[-1] == "job.timed_out"


async def test_a_timed_out_attempt_is_retried_when_retries_are_left(
    ledger: jobledger.Ledger, clock: ManualClock
) -> None:
    job = await submit(ledger, "hang", "ok", timeout=5, max_retries=1)
    await advance_until(clock, lambda: status_is(ledger, job.id, "completed"))
    history = await ledger.history(job.id)
    retry = next(e for e in history if e.type == "job.retry_scheduled")
    assert retry.data.error_type == "Timeout"  # type: ignore[union-attr]
    assert (await ledger.get(job.id)).attempt == 2


# -- cancel --------------------------------------------------------------------


async def test_a_pending_job_is_cancelled_at_once(db_path: Path) -> None:
    async with jobledger.open(db_path) as ledger:
        job = await ledger.submit("nobody-runs-this", user="alice")
        cancelled = await ledger.cancel(job.id, user="alice", reason="changed my mind")
        assert cancelled.status == "cancelled" and cancelled.error == "changed my mind"
        assert types_of(await ledger.history(job.id)) == ["job.created", "job.cancelled"]


async def test_a_running_job_is_asked_to_stop_and_ends_cancelled(
    ledger: jobledger.Ledger, worker: Scripted
) -> None:
    job = await submit(ledger, "cooperate")
    await eventually(lambda: status_is(ledger, job.id, "running"))
    asked = await ledger.cancel(job.id, user="alice")
    assert asked.status == "running" and asked.cancel_requested
    done = await ledger.wait(job.id, timeout=10)
    assert done.status == "cancelled"
    kinds = types_of(await ledger.history(job.id))
    assert kinds[-1] == "job.cancelled"
    assert kinds.index("job.cancel_requested") < len(kinds) - 1


async def test_a_worker_that_ignores_the_request_is_stopped_after_the_grace(
    ledger: jobledger.Ledger, clock: ManualClock
) -> None:
    job = await submit(ledger, "ignore")
    await eventually(lambda: status_is(ledger, job.id, "running"))
    await ledger.cancel(job.id)
    await asyncio.sleep(0)
    assert (await ledger.get(job.id)).status == "running"  # still within the grace
    await advance_until(clock, lambda: status_is(ledger, job.id, "cancelled"))
    history = await ledger.history(job.id)
    requested = next(e for e in history if e.type == "job.cancel_requested")
    assert history[-1].time - requested.time >= timedelta(seconds=5)


# -- suspend / resume ----------------------------------------------------------


async def test_suspend_checkpoints_and_resume_continues_from_it(
    ledger: jobledger.Ledger, worker: Scripted
) -> None:
    job = await submit(ledger, "cooperate", "cooperate")

    async def at_first_step() -> bool:
        return (await ledger.get(job.id)).progress is not None

    await eventually(at_first_step)
    await ledger.suspend(job.id, user="alice")
    suspended = await ledger.wait(job.id, until=["suspended"], timeout=10)
    # The worker saves a checkpoint with each step and stops at the next one.
    assert suspended.progress is not None and suspended.progress.checkpoint == {"step": 1}
    assert suspended.lease is None
    resumed = await ledger.resume(job.id, user="alice")
    assert resumed.status == "pending" and resumed.progress == suspended.progress
    await eventually(lambda: len(worker.seen_checkpoints) == 2)
    assert worker.seen_checkpoints == [None, {"step": 1}]
    assert types_of(await ledger.history(job.id))[:7] == [
        "job.created",
        "job.started",
        "job.progressed",
        "job.suspend_requested",
        "job.progressed",  # the checkpoint it stopped at
        "job.suspended",
        "job.resumed",
    ]


async def test_a_pending_job_suspends_at_once_and_only_suspendable_types_do(
    db_path: Path,
) -> None:
    kinds = [JobType(name="s", suspendable=True), JobType(name="n")]
    async with jobledger.open(db_path, job_types=kinds) as ledger:
        job = await ledger.submit("s")
        assert (await ledger.suspend(job.id)).status == "suspended"
        assert (await ledger.resume(job.id)).status == "pending"
        other = await ledger.submit("n")
        with pytest.raises(jobledger.ValidationError, match="not suspendable"):
            await ledger.suspend(other.id)
        with pytest.raises(jobledger.InvalidTransition):
            await ledger.resume(other.id)


# -- skip and partial ----------------------------------------------------------


async def test_skip_and_partial_endings(ledger: jobledger.Ledger) -> None:
    skipped = await ledger.wait((await submit(ledger, "skip")).id, timeout=10)
    assert (skipped.status, skipped.error) == ("skipped", "not in English")
    partial = await ledger.wait((await submit(ledger, "partial")).id, timeout=10)
    assert partial.status == "partial"
    assert (partial.result, partial.error) == ({"done": 3}, "2 of 5 sources unreadable")
    assert types_of(await ledger.history(partial.id))[-1] == "job.partial"


# -- registry ------------------------------------------------------------------


class Resize(msgspec.Struct, forbid_unknown_fields=True):
    image: str
    width: int


async def test_params_are_validated_against_the_registered_type(db_path: Path) -> None:
    async with jobledger.open(db_path, job_types=[JobType(name="resize", params=Resize)]) as ledger:
        with pytest.raises(jobledger.ValidationError) as caught:
            await ledger.submit("resize", {"image": "a.png", "width": "wide"})
        assert caught.value.field == "params.width"
        with pytest.raises(jobledger.ValidationError) as caught:
            await ledger.submit("resize", {"image": "a.png"})
        assert caught.value.field == "params"
        assert await ledger.head() == 0
        job = await ledger.submit("resize", Resize(image="a.png", width=64))
        assert job.params == {"image": "a.png", "width": 64}
        with pytest.raises(jobledger.ValidationError):
            ledger.register(JobType(name="resize", params=None))


# -- queues, priorities, delays ------------------------------------------------


async def test_a_queue_caps_how_many_of_its_jobs_run_at_once(db_path: Path) -> None:
    running = 0
    most = 0
    gate = asyncio.Event()

    class Gpu(JobWorker):
        job_types = ("render",)
        concurrency = 3

        async def execute(self, job: Job, ctx: JobContext) -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await gate.wait()
            running -= 1

    kinds = [JobType(name="render", queue="gpu")]
    async with jobledger.open(
        db_path, workers=[Gpu(name="a"), Gpu(name="b")], job_types=kinds, queues={"gpu": 2}
    ) as ledger:
        jobs = [await ledger.submit("render") for _ in range(6)]
        await eventually(lambda: running == 2)
        for _ in range(20):
            await asyncio.sleep(0)
        assert running == 2
        gate.set()
        for job in jobs:
            assert (await ledger.wait(job.id, timeout=10)).status == "completed"
    assert most == 2


async def test_a_delayed_job_is_not_claimed_before_its_time(
    ledger: jobledger.Ledger, clock: ManualClock
) -> None:
    job = await submit(ledger, "ok", run_at=clock.now() + timedelta(seconds=30))
    clock.advance(29)
    for _ in range(50):
        await asyncio.sleep(0)
    assert (await ledger.get(job.id)).status == "pending"
    await advance_until(clock, lambda: status_is(ledger, job.id, "completed"))
    started = next(e for e in await ledger.history(job.id) if e.type == "job.started")
    assert started.time >= job.created_at + timedelta(seconds=30)


# -- idempotency ---------------------------------------------------------------


async def test_the_same_idempotency_key_returns_the_same_job_and_writes_nothing(
    db_path: Path,
) -> None:
    async with jobledger.open(db_path) as ledger:
        first = await ledger.submit("t", {"n": 1}, user="alice", idempotency_key="order-42")
        head = await ledger.head()
        again = await ledger.submit("t", {"n": 1}, user="alice", idempotency_key="order-42")
        assert again == first
        assert await ledger.head() == head
        both = await asyncio.gather(
            *(ledger.submit("t", user="alice", idempotency_key="k2") for _ in range(5))
        )
        assert len({j.id for j in both}) == 1
        other_user = await ledger.submit("t", user="bob", idempotency_key="order-42")
        assert other_user.id != first.id


# -- leases, heartbeats, fencing, recovery -------------------------------------


async def test_heartbeats_keep_a_long_job_alive(
    ledger: jobledger.Ledger, clock: ManualClock
) -> None:
    job = await submit(ledger, "cooperate")
    await eventually(lambda: status_is(ledger, job.id, "running"))
    await eventually(lambda: clock.sleepers >= 4)  # the poll, the sweep, the tail, the heartbeat
    for beat in range(1, 13):  # 120 s: four times the 30 s lease
        clock.advance(10)
        await eventually(lambda beat=beat: ledger.statistics().workers[0].heartbeats >= beat)
        await eventually(lambda: clock.sleepers >= 4)  # the next heartbeat is scheduled
    current = await ledger.get(job.id)
    assert current.status == "running" and current.attempt == 1
    assert current.lease is not None and current.lease.expires_at > clock.now()
    assert "job.lease_renewed" in types_of(await ledger.history(job.id))
    assert ledger.statistics().workers[0].heartbeats >= 3


async def test_one_heartbeat_renews_every_running_job_together(
    ledger: jobledger.Ledger, clock: ManualClock
) -> None:
    jobs = [await submit(ledger, "cooperate") for _ in range(3)]
    for job in jobs:
        await eventually(lambda job=job: status_is(ledger, job.id, "running"))
    # The poll, the sweep, the tail, one heartbeat task:
    await eventually(lambda: clock.sleepers >= 4)
    assert clock.sleepers == 4  # not one per job
    clock.advance(10)  # a third of the 30 s lease
    await eventually(lambda: ledger.statistics().workers[0].heartbeats == 3)
    renewals = [e async for e in ledger.events(types=["job.lease_renewed"])]
    assert sorted(e.stream for e in renewals) == sorted(j.id for j in jobs)
    # Sent together, they were committed together: consecutive seqs, one time.
    assert [e.seq for e in renewals] == list(range(renewals[0].seq, renewals[0].seq + 3))
    assert len({e.time for e in renewals}) == 1


async def test_a_lost_worker_loses_its_lease_and_its_late_report_is_fenced(
    db_path: Path, clock: ManualClock
) -> None:
    async with jobledger.open(db_path, clock=clock) as ledger:
        job = await ledger.submit("t", max_retries=1, retry=FAST_RETRY)
        # A worker elsewhere claims it, then dies (never heartbeats).
        await ledger.send(
            jobledger.core.JobStart(
                job_id=job.id, worker="ghost", expected_version=1, lease_seconds=30
            )
        )
        await advance_until(clock, lambda: status_is(ledger, job.id, "pending"))
        expired = (await ledger.history(job.id))[-1]
        assert expired.type == "job.lease_expired" and expired.actor == "system:sweeper"
        assert (await ledger.get(job.id)).error_type == "LeaseExpired"
        with pytest.raises(jobledger.InvalidTransition):
            await ledger.send(jobledger.core.JobComplete(job_id=job.id, attempt=1))
        clock.advance(2)
        await ledger.send(jobledger.core.JobStart(job_id=job.id, worker="w2", expected_version=3))
        with pytest.raises(jobledger.core.StaleAttempt):  # the ghost wakes up: fenced
            await ledger.send(jobledger.core.JobComplete(job_id=job.id, attempt=1))
        await ledger.send(jobledger.core.JobComplete(job_id=job.id, attempt=2))
        assert (await ledger.get(job.id)).status == "completed"


async def test_jobs_of_a_lost_worker_are_recovered_on_open(
    db_path: Path, clock: ManualClock
) -> None:
    async with jobledger.open(db_path, clock=clock, sweep_interval=3600) as ledger:
        ids = []
        for _ in range(3):
            job = await ledger.submit("t", max_retries=2)
            await ledger.send(
                jobledger.core.JobStart(
                    job_id=job.id, worker="ghost", expected_version=1, lease_seconds=30
                )
            )
            ids.append(job.id)
    clock.advance(60)  # the process was down past the leases
    async with jobledger.open(db_path, clock=clock, sweep_interval=3600) as ledger:
        for job_id in ids:  # recovered during open, before any sweep interval
            assert (await ledger.get(job_id)).status == "pending"
        assert ledger.statistics().sweeper.expired == 3


# -- ownership -----------------------------------------------------------------


async def test_no_control_or_read_path_shows_another_users_job(ledger: jobledger.Ledger) -> None:
    job = await submit(ledger, "ok")
    await ledger.wait(job.id, timeout=10)
    for call in (
        ledger.get(job.id, user="bob"),
        ledger.history(job.id, user="bob"),
        ledger.assets(job.id, user="bob"),
        ledger.cancel(job.id, user="bob"),
        ledger.suspend(job.id, user="bob"),
        ledger.resume(job.id, user="bob"),
        ledger.delete(job.id, user="bob"),
    ):
        with pytest.raises(jobledger.NotFound):
            await call
    bobs = [e async for e in ledger.events(user="bob")]
    alices = [e async for e in ledger.events(user="alice")]
    assert bobs == [] and {e.stream for e in alices} == {job.id}


# -- assets ----------------------------------------------------------------------


async def test_assets_are_recorded_per_job_and_paths_stay_inside_the_root(
    ledger: jobledger.Ledger,
) -> None:
    job = await submit(ledger, "assets")
    await ledger.wait(job.id, timeout=10)
    (asset,) = await ledger.assets(job.id, user="alice")
    assert (asset.asset_type, asset.storage_path, asset.size) == ("image/png", "thumbs/a.png", 1234)
    other = await submit(ledger, "hang")
    await eventually(lambda: status_is(ledger, other.id, "running"))
    head = await ledger.head()
    for bad in ("../etc/passwd", "/abs/path", "a/../../b", "a\x00b", "a//b", "C:/x", "a\\b"):
        with pytest.raises(jobledger.ValidationError) as caught:
            await ledger.send(
                jobledger.core.AssetCreate(
                    asset_id=f"asset-{len(bad)}",
                    job_id=other.id,
                    attempt=1,
                    asset_type="x",
                    storage_path=bad,
                    size=1,
                )
            )
        assert caught.value.field == "storage_path", bad
    assert await ledger.head() == head


# -- delete and cleanup ----------------------------------------------------------


async def test_delete_leaves_a_tombstone_and_keeps_the_history(ledger: jobledger.Ledger) -> None:
    job = await submit(ledger, "ok")
    await ledger.wait(job.id, timeout=10)
    await ledger.delete(job.id, user="alice")
    with pytest.raises(jobledger.NotFound):
        await ledger.get(job.id)
    assert job.id not in [j.id for j in await ledger.list()]
    assert types_of(await ledger.history(job.id, user="alice"))[-1] == "job.deleted"
    running = await submit(ledger, "hang")
    await eventually(lambda: status_is(ledger, running.id, "running"))
    with pytest.raises(jobledger.InvalidTransition):
        await ledger.delete(running.id)
    report = await ledger.verify()
    assert report.ok, report.problems


async def test_cleanup_deletes_finished_jobs_older_than_the_cutoff(
    ledger: jobledger.Ledger, clock: ManualClock
) -> None:
    old = [await submit(ledger, "ok") for _ in range(3)]
    for job in old:
        await ledger.wait(job.id, timeout=10)
    clock.advance(timedelta(days=2))
    fresh = await submit(ledger, "ok")
    await ledger.wait(fresh.id, timeout=10)
    pending = await ledger.submit("nobody-runs-this")
    assert await ledger.cleanup(timedelta(days=1)) == 3
    remaining = {j.id for j in await ledger.list()}
    assert remaining == {fresh.id, pending.id}


# -- progress ---------------------------------------------------------------------


async def test_progress_carries_items_stage_message_and_an_eta(
    db_path: Path, clock: ManualClock
) -> None:
    async with jobledger.open(db_path, clock=clock) as ledger:
        job = await claimed_elsewhere(ledger)
        clock.advance(10)
        await ledger.send(
            jobledger.core.JobProgress(
                job_id=job.id, attempt=1, processed=25, total=100, stage="s", message="m"
            )
        )
        progress = (await ledger.get(job.id)).progress
        assert progress is not None
        assert (progress.percent, progress.processed, progress.total) == (25.0, 25, 100)
        assert (progress.stage, progress.message) == ("s", "m")
        assert progress.eta == clock.now() + timedelta(seconds=30)  # 10 s for 25 %: 30 s to go


async def test_the_stower_coalesces_a_burst_of_progress_into_one_event(db_path: Path) -> None:
    async with jobledger.open(db_path) as ledger:
        job = await claimed_elsewhere(ledger)
        replies = await asyncio.gather(
            *(
                ledger.send(jobledger.core.JobProgress(job_id=job.id, attempt=1, percent=p))
                for p in range(1, 101)
            )
        )
        assert all(len(r) == 1 for r in replies)  # every sender is answered
        progressed = [e for e in await ledger.history(job.id) if e.type == "job.progressed"]
        assert len(progressed) < 100
        assert progressed[-1].data.percent == 100  # type: ignore[union-attr]
        assert ledger.statistics().stower.coalesced == 100 - len(progressed)


async def test_the_runner_throttles_progress_and_sends_the_last_one(
    db_path: Path, clock: ManualClock
) -> None:
    class Chatty(JobWorker):
        job_types = ("chatty",)
        progress_interval = 1.0

        async def execute(self, job: Job, ctx: JobContext) -> None:
            for i in range(1, 51):
                await ctx.progress(processed=i, total=50)

    async with jobledger.open(db_path, workers=[Chatty()], clock=clock) as ledger:
        job = await ledger.submit("chatty")
        done = await ledger.wait(job.id, timeout=10)
        progressed = [e for e in await ledger.history(job.id) if e.type == "job.progressed"]
        assert [e.data.processed for e in progressed] == [1, 50]  # type: ignore[union-attr]
        assert done.progress is not None and done.progress.percent == 100


# -- regressions -------------------------------------------------------------------


async def test_idempotency_keys_are_scoped_by_tenant_too(db_path: Path) -> None:
    async with jobledger.open(db_path) as ledger:
        one = jobledger.User(id="a", tenant="t1")
        two = jobledger.User(id="a", tenant="t2")
        first = await ledger.submit("t", {"secret": 1}, user=one, idempotency_key="k")
        second = await ledger.submit("t", {"secret": 2}, user=two, idempotency_key="k")
        assert second.id != first.id and second.params == {"secret": 2}
        assert (await ledger.submit("t", user=two, idempotency_key="k")).id == second.id


async def test_a_job_that_succeeds_after_failing_keeps_no_error(
    ledger: jobledger.Ledger, clock: ManualClock
) -> None:
    job = await submit(ledger, "fail", "ok", max_retries=1)
    await advance_until(clock, lambda: status_is(ledger, job.id, "completed"))
    done = await ledger.get(job.id)
    assert (done.error, done.error_type, done.failures) == (None, None, 1)


async def test_suspending_does_not_use_up_retries(
    ledger: jobledger.Ledger, clock: ManualClock
) -> None:
    job = await submit(ledger, "cooperate", "fail", "ok", max_retries=1)

    async def at_first_step() -> bool:
        return (await ledger.get(job.id)).progress is not None

    await eventually(at_first_step)
    await ledger.suspend(job.id)
    await ledger.wait(job.id, until=["suspended"], timeout=10)
    await ledger.resume(job.id)
    await advance_until(clock, lambda: status_is(ledger, job.id, "completed", "failed"))
    done = await ledger.get(job.id)
    assert (done.status, done.attempt, done.failures) == ("completed", 3, 1)


async def test_coalesced_progress_keeps_the_last_checkpoint(db_path: Path) -> None:
    async with jobledger.open(db_path) as ledger:
        job = await claimed_elsewhere(ledger)
        await asyncio.gather(
            *(
                ledger.send(
                    jobledger.core.JobProgress(
                        job_id=job.id,
                        attempt=1,
                        percent=p,
                        checkpoint={"next": p} if p == 50 else None,
                    )
                )
                for p in range(1, 101)
            )
        )
        progress = (await ledger.get(job.id)).progress
        assert progress is not None and progress.checkpoint == {"next": 50}
        assert (await ledger.verify()).ok


async def test_a_job_and_a_mark_cannot_share_an_id(db_path: Path) -> None:
    async with jobledger.open(db_path) as ledger:
        await ledger.send(
            jobledger.core.MarkCreate(mark_id="x", resource_id="doc", annotation=note("doc"))
        )
        with pytest.raises(jobledger.NotFound):
            await ledger.send(jobledger.core.JobCancel(job_id="x"))
        with pytest.raises(jobledger.ValidationError):
            await ledger.send(
                jobledger.core.JobCreate(job_id="x", job_type="t", user=jobledger.User(id="u"))
            )
        await ledger.send(jobledger.core.MarkDelete(mark_id="x"))
        assert await ledger.marks("doc") == []
        assert (await ledger.verify()).ok


class Thumbnail(msgspec.Struct):
    url: str
    width: int


async def test_a_result_must_fit_the_registered_result_type(db_path: Path) -> None:
    class Maker(JobWorker):
        job_types = ("thumb",)

        async def execute(self, job: Job, ctx: JobContext) -> Any:
            if job.params["good"]:
                return Thumbnail(url="https://x/t.png", width=64)
            return {"url": "https://x/t.png"}  # no width

    kinds = [JobType(name="thumb", result=Thumbnail)]
    async with jobledger.open(db_path, workers=[Maker()], job_types=kinds) as ledger:
        good = await ledger.wait((await ledger.submit("thumb", {"good": True})).id, timeout=10)
        bad = await ledger.wait((await ledger.submit("thumb", {"good": False})).id, timeout=10)
    assert good.result == {"url": "https://x/t.png", "width": 64}
    assert (bad.status, bad.error_type) == ("failed", "InvalidResult")
    assert "width" in (bad.error or "")


async def test_a_retry_runs_when_due_not_at_the_next_poll(
    db_path: Path, clock: ManualClock
) -> None:
    """Only the injected clock decides: the test moves it once, by the backoff,
    after the runner has set its timer, so how fast the machine is does not matter."""
    worker = Scripted()
    async with jobledger.open(
        db_path, workers=[worker], clock=clock, poll_interval=3600, sweep_interval=3600
    ) as ledger:
        job = await ledger.submit(
            "scripted", {"plan": ["fail", "ok"]}, max_retries=1, retry=FAST_RETRY
        )
        # The backoff is 1 s (no jitter); the poll interval an hour. The clock has
        # not moved: the runner must set a timer for the retry, 1 s from now.
        due = clock.monotonic() + FAST_RETRY.base_delay
        await eventually(lambda: due in clock.deadlines)
        assert clock.monotonic() == 0.0 and (await ledger.get(job.id)).status == "pending"
        clock.advance(FAST_RETRY.base_delay)
        done = await ledger.wait(job.id, timeout=10)
        history = await ledger.history(job.id)
    assert (done.status, done.attempt, done.result) == ("completed", 2, {"attempt": 2})
    assert types_of(history) == [
        "job.created",
        "job.started",
        "job.retry_scheduled",
        "job.started",
        "job.completed",
    ]
    retry = history[2].data
    assert isinstance(retry, jobledger.core.JobRetryScheduled)
    assert retry.run_at == history[2].time + timedelta(seconds=1)
    assert history[3].time == retry.run_at  # claimed when due, not an hour later


async def test_the_cancel_reason_is_kept_to_the_end(ledger: jobledger.Ledger) -> None:
    job = await submit(ledger, "cooperate")
    await eventually(lambda: status_is(ledger, job.id, "running"))
    await ledger.cancel(job.id, reason="the document was deleted")
    done = await ledger.wait(job.id, timeout=10)
    assert (done.status, done.error) == ("cancelled", "the document was deleted")


async def test_a_crawling_progress_does_not_stop_the_stower(
    db_path: Path, clock: ManualClock
) -> None:
    async with jobledger.open(db_path, clock=clock) as ledger:
        job = await claimed_elsewhere(ledger)
        clock.advance(2)
        await ledger.send(
            jobledger.core.JobProgress(job_id=job.id, attempt=1, processed=1, total=10**13)
        )
        progress = (await ledger.get(job.id)).progress
        assert progress is not None and progress.eta is None
        assert ledger.statistics().stower.running
        await ledger.submit("t")


async def test_stopping_the_ledger_cancels_the_work_it_gives_up_on(db_path: Path) -> None:
    outcome: list[str] = []

    class Slow(JobWorker):
        job_types = ("slow",)

        async def execute(self, job: Job, ctx: JobContext) -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise

    async with jobledger.open(db_path, workers=[Slow()], stop_timeout=0.01) as ledger:
        job = await ledger.submit("slow")
        await eventually(lambda: status_is(ledger, job.id, "running"))
    assert outcome == ["cancelled"]


async def test_wait_sees_a_job_finished_by_another_process(tmp_path: Path) -> None:
    class Quick(JobWorker):
        job_types = ("quick",)

        async def execute(self, job: Job, ctx: JobContext) -> dict[str, int]:
            return {"ok": 1}

    path = tmp_path / "shared.db"
    async with jobledger.open(path, poll_interval=0.01) as here:
        job = await here.submit("quick")
        async with jobledger.open(path, workers=[Quick()], poll_interval=0.01):
            done = await here.wait(job.id, timeout=10)
    assert done.status == "completed"


async def test_a_worker_waiting_for_queue_room_does_not_spin(
    db_path: Path, clock: ManualClock
) -> None:
    gate = asyncio.Event()

    class Gpu(JobWorker):
        job_types = ("render",)
        concurrency = 2

        async def execute(self, job: Job, ctx: JobContext) -> None:
            await gate.wait()

    kinds = [JobType(name="render", queue="gpu")]
    async with jobledger.open(
        db_path, workers=[Gpu()], job_types=kinds, queues={"gpu": 1}, clock=clock
    ) as ledger:
        first = await ledger.submit("render", run_at=clock.now())
        second = await ledger.submit("render", run_at=clock.now())
        await eventually(lambda: status_is(ledger, first.id, "running"))
        polls = ledger.statistics().workers[0].polls
        for _ in range(500):
            await asyncio.sleep(0)
        assert ledger.statistics().workers[0].polls - polls <= 2
        assert (await ledger.get(second.id)).status == "pending"
        gate.set()
        assert (await ledger.wait(second.id, timeout=10)).status == "completed"


async def test_an_empty_tenant_is_refused(db_path: Path) -> None:
    async with jobledger.open(db_path) as ledger:
        with pytest.raises(jobledger.ValidationError) as caught:
            await ledger.submit("t", user=jobledger.User(id="u", tenant=""))
        assert caught.value.field == "user.tenant"


async def test_a_cancel_asked_during_a_suspend_wins(db_path: Path) -> None:
    async with jobledger.open(db_path, job_types=[JobType(name="s", suspendable=True)]) as ledger:
        job = await ledger.submit("s")
        await ledger.send(jobledger.core.JobStart(job_id=job.id, worker="w", expected_version=1))
        await ledger.suspend(job.id)
        await ledger.cancel(job.id)
        await ledger.send(jobledger.core.JobSuspend(job_id=job.id, attempt=1))
        assert (await ledger.get(job.id)).status == "cancelled"


async def test_a_worker_that_lost_its_lease_stops_the_work(
    db_path: Path, clock: ManualClock
) -> None:
    outcome: list[str] = []

    class Stuck(JobWorker):
        job_types = ("stuck",)
        lease_seconds = 30.0

        async def execute(self, job: Job, ctx: JobContext) -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise

    async with jobledger.open(db_path, workers=[Stuck()], clock=clock) as ledger:
        job = await ledger.submit("stuck")
        await eventually(lambda: status_is(ledger, job.id, "running"))
        await eventually(lambda: clock.sleepers >= 3)  # the sweep, the tail, the heartbeat
        # The job is ended elsewhere (as by another process) behind the worker's back.
        await ledger.send(jobledger.core.JobCancel(job_id=job.id, attempt=1, reason="elsewhere"))
        clock.advance(10)  # the next heartbeat is refused: the lease is lost
        await eventually(lambda: outcome == ["cancelled"])
        assert (await ledger.get(job.id)).status == "cancelled"
