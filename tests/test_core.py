"""The pure core: decide, evolve, the transition table, ids, validation, hashes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from jobledger.core import (
    GENESIS_HASH,
    RETRYABLE,
    TERMINAL,
    TRANSITIONS,
    ConcurrencyConflict,
    Envelope,
    IdFactory,
    InvalidTransition,
    JobComplete,
    JobCreate,
    JobFail,
    JobHeartbeat,
    JobProgress,
    JobStart,
    JobStatus,
    JobSuspend,
    ManualClock,
    MarkCreate,
    MarkDelete,
    NotFound,
    Projection,
    StaleAttempt,
    User,
    ValidationError,
    chain_hash,
    decide,
    encode_event,
    validate_command,
)

from .conftest import note

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def fold(model: Projection, command: object, *, now: datetime = NOW) -> list[Envelope]:
    """Decide ``command`` against ``model`` and fold the result in, as the Stower does."""
    assert isinstance(
        command,
        JobCreate
        | JobStart
        | JobProgress
        | JobComplete
        | JobFail
        | MarkCreate
        | MarkDelete
        | JobHeartbeat
        | JobSuspend,
    )
    envelopes = []
    for event in decide(command, model, now):
        seq = model.seq + 1
        env = Envelope(
            seq=seq,
            event_id=f"evt_{seq}",
            stream=event.stream,
            version=model.version(event.stream) + 1,
            type=event.__struct_config__.tag,  # type: ignore[arg-type]
            time=now,
            actor=command.actor,
            data=event,
            hash="",
        )
        model.apply(env)
        envelopes.append(env)
    return envelopes


def started(model: Projection, job_id: str = "j1") -> Projection:
    fold(model, JobCreate(job_id=job_id, job_type="t", user=User(id="u")))
    fold(model, JobStart(job_id=job_id, worker="w", expected_version=1))
    return model


def test_transition_table_has_every_status_and_terminal_ones_accept_only_a_retry() -> None:
    assert set(TRANSITIONS) == set(JobStatus)
    assert {
        JobStatus.COMPLETED,
        JobStatus.PARTIAL,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.SKIPPED,
        JobStatus.TIMED_OUT,
    } == TERMINAL
    for status in TERMINAL:  # (job:retry: failed, timed out and cancelled jobs run again)
        expected = {JobStatus.PENDING} if status in RETRYABLE else set()
        assert TRANSITIONS[status] == expected
    assert JobStatus.COMPLETED == "completed"


def test_a_job_goes_created_started_progressed_completed() -> None:
    model = started(Projection())
    fold(model, JobProgress(job_id="j1", attempt=1, processed=2, total=8, stage="s"))
    job = model.jobs["j1"]
    assert job.status is JobStatus.RUNNING
    assert job.attempt == 1
    assert job.lease is not None and job.lease.worker == "w"
    assert job.lease.expires_at == NOW + timedelta(seconds=60)
    assert job.progress is not None and job.progress.percent == 25.0
    fold(model, JobComplete(job_id="j1", attempt=1, result={"n": 3}))
    job = model.jobs["j1"]
    assert job.status is JobStatus.COMPLETED
    assert job.result == {"n": 3}
    assert job.lease is None
    assert job.version == 4
    assert job.finished_at == NOW


def test_progress_without_percent_keeps_the_last_one() -> None:
    model = started(Projection())
    fold(model, JobProgress(job_id="j1", attempt=1, percent=40))
    fold(model, JobProgress(job_id="j1", attempt=1, message="still going"))
    assert model.jobs["j1"].progress is not None
    assert model.jobs["j1"].progress.percent == 40
    assert model.jobs["j1"].progress.message == "still going"


def test_a_claim_with_a_stale_version_is_a_conflict() -> None:
    model = started(Projection())
    with pytest.raises(ConcurrencyConflict) as caught:
        decide(JobStart(job_id="j1", worker="w2", expected_version=1), model, NOW)
    assert (caught.value.expected, caught.value.actual) == (1, 2)


def test_a_claim_of_a_finished_job_is_an_invalid_transition() -> None:
    model = started(Projection())
    fold(model, JobComplete(job_id="j1", attempt=1))
    with pytest.raises(InvalidTransition) as caught:
        decide(JobStart(job_id="j1", worker="w", expected_version=3), model, NOW)
    assert (caught.value.current, caught.value.target) == ("completed", "running")


@pytest.mark.parametrize(
    "command",
    [
        JobProgress(job_id="j1", attempt=1, percent=5),
        JobComplete(job_id="j1", attempt=1),
        JobFail(job_id="j1", attempt=1, error="x"),
    ],
)
def test_reports_for_a_job_that_is_not_running_are_refused(command: object) -> None:
    model = Projection()
    fold(model, JobCreate(job_id="j1", job_type="t", user=User(id="u")))
    with pytest.raises(InvalidTransition) as caught:
        decide(command, model, NOW)  # type: ignore[arg-type]
    assert caught.value.current == "pending"


def test_a_report_for_another_attempt_is_fenced() -> None:
    model = started(Projection())
    with pytest.raises(StaleAttempt) as caught:
        decide(JobComplete(job_id="j1", attempt=7), model, NOW)
    assert isinstance(caught.value, ConcurrencyConflict)
    assert (caught.value.expected, caught.value.actual) == (7, 1)


def test_unknown_jobs_and_marks_are_not_found() -> None:
    with pytest.raises(NotFound):
        decide(JobStart(job_id="nope", worker="w", expected_version=1), Projection(), NOW)
    with pytest.raises(NotFound):
        decide(MarkDelete(mark_id="nope"), Projection(), NOW)


def test_ids_are_never_reused_even_after_a_delete() -> None:
    model = started(Projection())
    with pytest.raises(ValidationError) as caught:
        decide(JobCreate(job_id="j1", job_type="t", user=User(id="u")), model, NOW)
    assert caught.value.field == "job_id"
    fold(model, MarkCreate(mark_id="m1", resource_id="doc", annotation=note("doc")))
    fold(model, MarkDelete(mark_id="m1"))
    assert "m1" not in model.marks
    with pytest.raises(ValidationError):
        decide(MarkCreate(mark_id="m1", resource_id="doc", annotation=note("doc")), model, NOW)


def test_a_mark_made_by_a_job_needs_its_current_attempt() -> None:
    model = started(Projection())
    with pytest.raises(ValidationError):
        decide(
            MarkCreate(mark_id="m", resource_id="d", annotation=note("d"), job_id="j1"), model, NOW
        )
    with pytest.raises(StaleAttempt):
        decide(
            MarkCreate(mark_id="m", resource_id="d", annotation=note("d"), job_id="j1", attempt=2),
            model,
            NOW,
        )
    fold(
        model,
        MarkCreate(mark_id="m", resource_id="d", annotation=note("d"), job_id="j1", attempt=1),
    )
    assert [m.id for m in model.marks_of("d")] == ["m"]


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (JobProgress(job_id="j", attempt=1, percent=101), "percent"),
        (JobProgress(job_id="j", attempt=0), "attempt"),
        (JobCreate(job_id="", job_type="t", user=User(id="u")), "job_id"),
        (JobCreate(job_id="j", job_type="bad type!", user=User(id="u")), "job_type"),
        (JobCreate(job_id="j", job_type="t", user=User(id="u"), max_retries=-1), "max_retries"),
        (JobCreate(job_id="j", job_type="t", user=User(id="u"), timeout=0), "timeout"),
        (JobStart(job_id="j", worker="w", expected_version=-1), "expected_version"),
    ],
)
def test_validation_names_the_field(command: object, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_command(command)
    assert caught.value.field == field


def test_validation_refuses_what_is_not_a_command_and_oversized_commands() -> None:
    with pytest.raises(ValidationError):
        validate_command({"type": "job:create"})
    big = JobCreate(job_id="j", job_type="t", user=User(id="u"), params={"x": "a" * (1 << 20)})
    with pytest.raises(ValidationError, match="limit"):
        validate_command(big)


def test_ids_sort_in_creation_order_even_within_one_millisecond_or_backwards() -> None:
    ids = IdFactory()
    made = [ids.make("job", 1000) for _ in range(50)] + [ids.make("job", 999)]
    made += [ids.make("job", 1001)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert all(i.startswith("job_") and len(i) == 30 for i in made)


def test_ids_carry_their_millisecond_as_a_ulid_does() -> None:
    # The ULID specification's example: 1469918176385 ms is "01ARYZ6S41".
    made = IdFactory().make("evt", 1469918176385)
    assert made[4:14] == "01ARYZ6S41"
    assert set(made[4:]) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(NOW)
    assert clock.now() == NOW
    clock.advance(5)
    assert clock.now() == NOW + timedelta(seconds=5)
    assert clock.monotonic() == 5.0
    clock.set(NOW)  # wall clock steps back; monotonic does not
    assert clock.now() == NOW and clock.monotonic() == 5.0
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_the_hash_covers_every_field_but_itself() -> None:
    model = Projection()
    (env,) = fold(model, JobCreate(job_id="j1", job_type="t", user=User(id="u")))
    data = encode_event(env.data)
    base = chain_hash(GENESIS_HASH, env, data)
    assert len(base) == 64
    assert chain_hash("1" * 64, env, data) != base
    assert chain_hash(GENESIS_HASH, msgspec.structs.replace(env, hash="x"), data) == base
    assert chain_hash(GENESIS_HASH, env, data + b" ") != base
    changes = dict(
        seq=2,
        event_id="other",
        stream="s",
        version=9,
        type="job.failed",
        time=NOW + timedelta(microseconds=1),
        actor="mallory",
        correlation_id="c",
        causation_id="c",
    )
    for key, value in changes.items():
        changed = msgspec.structs.replace(env, **{key: value})
        assert chain_hash(GENESIS_HASH, changed, data) != base, key


def test_an_old_event_is_upcast_to_the_current_shape() -> None:
    from jobledger.core import EVENT_SCHEMAS, EventSchemas, JobStarted, decode_event

    # Today every type is at version 1 and decodes straight.
    assert set(EVENT_SCHEMAS.versions.values()) == {1}
    started = JobStarted(job_id="j", worker="w", attempt=1, lease_expires_at=NOW)
    assert decode_event(msgspec.json.encode(started)) == started
    # A later jobledger in which job.started is at version 2 (its lease field
    # was once called ``lease_until``): entries written at version 1 still decode.
    later = EventSchemas({**EVENT_SCHEMAS.versions, "job.started": 2})

    def rename_lease(obj: dict[str, Any]) -> dict[str, Any]:
        obj["lease_expires_at"] = obj.pop("lease_until")
        return obj

    later.register("job.started", 1, rename_lease)
    old = b'{"type":"job.started","job_id":"j","worker":"w","attempt":1,"lease_until":"%s"}' % (
        NOW.isoformat().encode()
    )
    assert later.decode(old) == started
    assert later.decode(old.replace(b"{", b'{"v":1,', 1)) == started
    with pytest.raises(ValueError, match="not one this jobledger knows"):
        later.decode(old.replace(b"{", b'{"v":3,', 1))
    with pytest.raises(ValueError, match="no upcaster"):
        EventSchemas({**EVENT_SCHEMAS.versions, "job.started": 2}).decode(old)
    with pytest.raises(ValueError):
        later.register("job.started", 2, rename_lease)  # 2 is current: no step from it
    with pytest.raises(msgspec.ValidationError):
        decode_event(old)  # today's schemas: version 1 has no lease_until


def test_a_lease_keeps_when_it_was_granted_whatever_comes_after() -> None:
    """The sweeper judges a lease's length as ``expires_at - granted_at``: a
    later event on the job (a suspend request from a process whose clock runs
    ahead) must not shorten it."""
    model = Projection()
    fold(model, JobCreate(job_id="j1", job_type="t", user=User(id="u"), suspendable=True))
    fold(model, JobStart(job_id="j1", worker="w", expected_version=1))
    lease = model.jobs["j1"].lease
    assert lease is not None and lease.granted_at == NOW
    assert lease.expires_at - lease.granted_at == timedelta(seconds=60)
    ahead = NOW + timedelta(seconds=50)
    fold(model, JobSuspend(job_id="j1"), now=ahead)
    job = model.jobs["j1"]
    assert job.suspend_requested and job.updated_at == ahead
    assert job.lease == lease
    later = NOW + timedelta(seconds=20)
    fold(model, JobHeartbeat(job_id="j1", attempt=1, lease_seconds=60), now=later)
    renewed = model.jobs["j1"].lease
    assert renewed is not None and renewed.granted_at == later
    assert renewed.expires_at == later + timedelta(seconds=60)
