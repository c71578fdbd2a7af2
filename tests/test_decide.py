"""What ``decide`` and the folds promise beyond the transition table: the
retry time and its backoff (never negative, even from an old policy), the
idempotency key, the progress a job keeps, the finish estimate's cap, a
mark's target and body, the resources a projection folds. Each test here
kills a mutant that the sampled mutation run (``tests/mutation.py``) found
alive: a change to the code that no test noticed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from jobledger.core import (
    DEFAULT_RETRY,
    AssetCreate,
    BodyAdd,
    Envelope,
    JobCreate,
    JobDelete,
    JobFail,
    JobLeaseExpired,
    JobProgress,
    JobRetryScheduled,
    JobStart,
    MarkCreate,
    MarkDelete,
    MarkUpdateBody,
    Projection,
    ResourceCreate,
    RetryPolicy,
    TextualBody,
    User,
    ValidationError,
    decide,
    retry_delay,
)
from jobledger.store import SqliteLog

from .conftest import create, note, running

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CAP = 100 * 365 * 24 * 3600.0  # the finish estimate's horizon (docs/lifecycle.md: 100 years)


def fold(model: Projection, command: object, *, now: datetime = NOW) -> list[Envelope]:
    """Decide ``command`` against ``model`` and fold its events in, as the Stower does."""
    envelopes = []
    for event in decide(command, model, now):  # type: ignore[arg-type]
        seq = model.seq + 1
        env = Envelope(
            seq=seq,
            event_id=f"evt_{seq}",
            stream=event.stream,
            version=model.version(event.stream) + 1,
            type=event.__struct_config__.tag,  # type: ignore[arg-type]
            time=now,
            actor="u",
            data=event,
            hash="",
        )
        model.apply(env)
        envelopes.append(env)
    return envelopes


def started(model: Projection, job_id: str = "j", **create: object) -> Projection:
    fold(model, JobCreate(job_id=job_id, job_type="t", user=User(id="u"), **create))  # type: ignore[arg-type]
    version = model.jobs[job_id].version
    fold(model, JobStart(job_id=job_id, worker="w", expected_version=version))
    return model


# -- retries -------------------------------------------------------------------


def test_a_retry_is_due_its_backoff_after_the_failure() -> None:
    policy = RetryPolicy(base_delay=3.0, factor=2.0, max_delay=60.0, jitter=False)
    model = started(Projection(), max_retries=2, retry=policy)
    (env,) = fold(model, JobFail(job_id="j", attempt=1, error="e"), now=NOW)
    assert isinstance(env.data, JobRetryScheduled)
    assert env.data.run_at == NOW + timedelta(seconds=3)
    later = NOW + timedelta(seconds=10)
    fold(
        model, JobStart(job_id="j", worker="w", expected_version=model.jobs["j"].version), now=later
    )
    (env,) = fold(model, JobFail(job_id="j", attempt=2, error="e"), now=later)
    assert isinstance(env.data, JobRetryScheduled)
    assert env.data.run_at == later + timedelta(seconds=6)  # doubled from the second failure
    assert model.jobs["j"].run_at == env.data.run_at


def test_the_backoff_grows_by_its_factor_up_to_its_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, factor=3.0, max_delay=20.0, jitter=False)
    assert [retry_delay(policy, n, "j") for n in (1, 2, 3, 4)] == [1.0, 3.0, 9.0, 20.0]


def test_a_jittered_backoff_is_uniform_under_its_ceiling_and_the_same_on_replay() -> None:
    policy = RetryPolicy(base_delay=8.0, factor=2.0, max_delay=300.0, jitter=True)
    delays = [retry_delay(policy, 1, f"job_{i}") for i in range(2000)]
    assert all(0.0 <= d <= 8.0 for d in delays)
    assert 3.6 < sum(delays) / len(delays) < 4.4  # uniform in [0, 8]: mean 4
    assert sum(d < 4.0 for d in delays) / len(delays) > 0.45
    assert [retry_delay(policy, 1, f"job_{i}") for i in range(2000)] == delays
    assert retry_delay(policy, 2, "job_0") != retry_delay(policy, 3, "job_0")
    assert DEFAULT_RETRY.jitter


def test_a_policy_written_before_the_limits_never_gives_a_negative_or_nan_delay() -> None:
    # Submits refuse such policies now (docs/api.md#limits), but a log may
    # hold one from before; its retries are due at once, never in the past.
    negative = RetryPolicy(base_delay=-5.0, jitter=False)
    nan = RetryPolicy(max_delay=float("nan"), jitter=True)
    assert [retry_delay(negative, 1, "j"), retry_delay(nan, 1, "j")] == [0.0, 0.0]
    assert retry_delay(RetryPolicy(base_delay=0.5, jitter=False), 1, "j") == 0.5  # under a second
    model = started(Projection(), max_retries=1, retry=negative)
    (env,) = fold(model, JobFail(job_id="j", attempt=1, error="e"))
    assert isinstance(env.data, JobRetryScheduled) and env.data.run_at == NOW


def test_a_run_at_without_a_time_zone_is_refused() -> None:
    naive = JobCreate(job_id="j", job_type="t", user=User(id="u"), run_at=datetime(2026, 1, 2))
    with pytest.raises(ValidationError, match="must be an aware datetime") as e:
        decide(naive, Projection(), NOW)
    assert e.value.field == "run_at"


# -- idempotency keys ------------------------------------------------------------


def test_a_repeated_key_writes_nothing_until_its_job_is_deleted() -> None:
    model = Projection()
    first = JobCreate(job_id="j1", job_type="t", user=User(id="u"), idempotency_key="k")
    assert [e.type for e in fold(model, first)] == ["job.created"]
    again = JobCreate(job_id="j2", job_type="t", user=User(id="u"), idempotency_key="k")
    assert fold(model, again) == []
    other = JobCreate(job_id="j3", job_type="t", user=User(id="v"), idempotency_key="k")
    assert [e.type for e in fold(model, other)] == ["job.created"]  # another user's key
    unkeyed = JobCreate(job_id="j4", job_type="t", user=User(id="u"))
    assert [e.type for e in fold(model, unkeyed)] == ["job.created"]
    fold(model, JobDelete(job_id="j1"))
    assert [e.type for e in fold(model, again)] == ["job.created"]
    assert model.job_by_key("u", None, "k") is model.jobs["j2"]


async def test_a_cold_stower_finds_keys_and_marks_in_the_file(db_path: Path) -> None:
    # A new Stower (a reopened ledger) has nothing cached: it must read the
    # key's job and the mark from the file, not take them as absent.
    async with running(SqliteLog(db_path)) as engine:
        [first] = await engine.bus.send(create("j1", idempotency_key="k"))
        await engine.bus.send(MarkCreate(mark_id="m", resource_id="doc", annotation=note("doc")))
    async with running(SqliteLog(db_path)) as engine:
        assert await engine.bus.send(create("j2", idempotency_key="k")) == ()  # the first stands
        [deleted] = await engine.bus.send(MarkDelete(mark_id="m"))
        assert (deleted.type, deleted.stream, deleted.version) == ("mark.deleted", "m", 2)
        assert [(e.stream, e.type) for e in await engine.log.read()] == [
            ("j1", "job.created"),
            ("m", "mark.created"),
            ("m", "mark.deleted"),
        ]
    assert first.seq == 1


# -- progress --------------------------------------------------------------------


def test_a_progress_without_a_checkpoint_keeps_the_last_one() -> None:
    model = started(Projection())
    fold(model, JobProgress(job_id="j", attempt=1, percent=10, checkpoint={"page": 3}))
    fold(model, JobProgress(job_id="j", attempt=1, percent=20))
    progress = model.jobs["j"].progress
    assert progress is not None and (progress.percent, progress.checkpoint) == (20, {"page": 3})
    fold(model, JobProgress(job_id="j", attempt=1, percent=30, checkpoint={"page": 9}))
    progress = model.jobs["j"].progress
    assert progress is not None and progress.checkpoint == {"page": 9}


def test_a_progress_counted_in_items_is_a_percent_of_the_total() -> None:
    model = started(Projection())

    def percent(**report: int) -> float:
        fold(model, JobProgress(job_id="j", attempt=1, **report))
        progress = model.jobs["j"].progress
        assert progress is not None
        return progress.percent

    assert percent(processed=3, total=4) == 75.0
    assert percent(processed=15, total=10) == 100.0  # more than announced: done, not 150 %
    assert percent(processed=5, total=0) == 100.0  # no total to divide by: the last percent
    fold(model, JobProgress(job_id="j", attempt=1, percent=40))
    assert percent(total=10) == 40.0  # a total alone says nothing new
    assert percent(processed=5, total=0) == 40.0


def test_the_finish_estimate_stops_at_a_hundred_years() -> None:
    model = started(Projection())  # started at NOW
    # Half done after ``elapsed`` seconds: as long again to go.
    near = NOW + timedelta(seconds=CAP - 1000)
    fold(model, JobProgress(job_id="j", attempt=1, percent=50), now=near)
    progress = model.jobs["j"].progress
    assert progress is not None and progress.eta == near + timedelta(seconds=CAP - 1000)
    far = NOW + timedelta(seconds=CAP + 1000)
    fold(model, JobProgress(job_id="j", attempt=1, percent=50), now=far)
    progress = model.jobs["j"].progress
    assert progress is not None and progress.eta is None


# -- marks ------------------------------------------------------------------------


def test_a_mark_must_target_its_own_resource() -> None:
    model = Projection()
    wrong = "targets 'other', not the mark's resource 'doc'"
    with pytest.raises(ValidationError, match=wrong) as e:
        decide(MarkCreate(mark_id="m", resource_id="doc", annotation=note("other")), model, NOW)
    assert e.value.field == "annotation.target.source"
    fold(model, MarkCreate(mark_id="m", resource_id="doc", annotation=note("doc")))
    assert model.marks["m"].annotation["target"] == {"source": "doc"}
    with pytest.raises(ValidationError, match="this id is already used") as e:
        decide(MarkCreate(mark_id="m", resource_id="doc", annotation=note("doc")), model, NOW)
    assert e.value.field == "mark_id"


def test_a_body_is_added_to_a_mark_unless_it_has_a_body_value() -> None:
    model = Projection()
    fold(model, MarkCreate(mark_id="m", resource_id="doc", annotation=note("doc", "one")))
    add = [BodyAdd(item=TextualBody(value="two"))]
    fold(model, MarkUpdateBody(mark_id="m", operations=add))
    body = model.marks["m"].annotation["body"]
    assert [item["value"] for item in body] == ["one", "two"]
    plain = {"target": "doc", "bodyValue": "Seen."}
    fold(model, MarkCreate(mark_id="v", resource_id="doc", annotation=plain))
    version = model.version("v")
    with pytest.raises(ValidationError, match="MUST NOT have both body and bodyValue") as e:
        decide(MarkUpdateBody(mark_id="v", operations=add), model, NOW)
    assert e.value.field == "operations"
    assert model.version("v") == version
    assert msgspec.to_builtins(model.marks["v"].annotation) == plain


# -- assets ---------------------------------------------------------------------


def test_an_asset_id_is_used_once() -> None:
    model = started(Projection())
    asset = AssetCreate(
        asset_id="a", job_id="j", attempt=1, asset_type="thumb", storage_path="t/a.png", size=3
    )
    [env] = fold(model, asset)
    assert (env.type, env.stream) == ("asset.created", "a")
    with pytest.raises(ValidationError, match="this id is already used") as e:
        decide(asset, model, NOW)
    assert e.value.field == "asset_id"


# -- resources -------------------------------------------------------------------


def test_a_resource_is_folded_into_the_projection() -> None:
    model = Projection()
    digest = "sha256:" + "cd" * 32
    command = ResourceCreate(
        resource_id="r", name="a.md", media_type="text/markdown", digest=digest, size=5
    )
    fold(model, command)
    resource = model.resources["r"]
    assert (resource.name, resource.digest, resource.size, resource.job_id) == (
        "a.md",
        digest,
        5,
        None,
    )


# -- found by the mutation run after the issue-14 splits ------------------------------


def test_an_asset_path_with_a_drive_letter_is_refused_as_absolute() -> None:
    model = started(Projection())
    for path in ("C:/x.png", "c:/dir/x.png"):
        with pytest.raises(ValidationError, match="is absolute") as refused:
            fold(
                model,
                AssetCreate(
                    asset_id=f"a-{path[0]}", job_id="j", attempt=1, asset_type="png",
                    storage_path=path, size=1,
                ),
            )  # fmt: skip
        assert refused.value.field == "storage_path"
    # A colon elsewhere is a name, not a drive.
    fold(model, AssetCreate(
        asset_id="a-ok", job_id="j", attempt=1, asset_type="png", storage_path="ab:/x.png", size=1
    ))  # fmt: skip
    assert "a-ok" in model.assets


def test_a_lease_expiry_written_before_recoveries_folds_as_a_failed_attempt() -> None:
    """A ``job.lease_expired`` without ``recovery`` (logs from before issue 13)
    keeps the meaning it was decided with: a failed attempt (``failures`` + 1),
    pending again from ``retry_at``, or failed for good without it."""
    for retry_at, status in ((NOW + timedelta(seconds=5), "pending"), (None, "failed")):
        model = started(Projection(), max_retries=1)
        model.apply(
            Envelope(
                seq=model.seq + 1, event_id="evt_old", stream="j", version=model.version("j") + 1,
                type="job.lease_expired", time=NOW, actor="system:sweeper",
                data=JobLeaseExpired(job_id="j", attempt=1, retry_at=retry_at), hash="",
            )
        )  # fmt: skip
        job = model.jobs["j"]
        assert (job.status, job.failures, job.recoveries) == (status, 1, 0)
        assert job.error == "the worker's lease expired during attempt 1"
        assert job.run_at == retry_at if status == "pending" else job.finished_at == NOW
