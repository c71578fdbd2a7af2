"""The transition table is what ``decide`` enforces.

``jobledger.core.TRANSITIONS`` is the one list of status moves. Here every
command is tried against a job in every status: it is accepted exactly when
the table allows the move it asks for (and the job is where the command acts:
a report for an attempt needs a running job, a resume a suspended one), and
a refusal is an ``InvalidTransition`` naming the job, its status, the status
asked for and the command. Then each move of the table is taken out in turn:
the commands that make it must be refused, which proves ``decide`` consults
the table rather than a copy of it. Last, the endings that a mutation run
found untested (a failure after a cancel request, a lease lost while a
suspend is pending, a timeout expiry that comes too soon) through a real
ledger on a SQLite file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import msgspec
import pytest

import jobledger
import jobledger.core
from jobledger.core import (
    RETRYABLE,
    TERMINAL,
    TRANSITIONS,
    AssetCreate,
    Command,
    Envelope,
    InvalidTransition,
    Job,
    JobCancel,
    JobComplete,
    JobCreate,
    JobDelete,
    JobExpire,
    JobFail,
    JobHeartbeat,
    JobPartial,
    JobProgress,
    JobRelease,
    JobResume,
    JobRetry,
    JobSkip,
    JobStart,
    JobStatus,
    JobSuspend,
    ManualClock,
    MarkCreate,
    MarkDelete,
    Projection,
    ResourceCreate,
    StaleAttempt,
    User,
    ValidationError,
    can_transition,
    decide,
)
from jobledger.core import status as status_module

from .conftest import note

S = JobStatus
NOW = datetime(2026, 1, 1, tzinfo=UTC)
LEASE = 60.0
TIMEOUT = 10.0
LATER = NOW + timedelta(seconds=LEASE + 1)  # past the lease and the timeout of a job started NOW
DIGEST = "sha256:" + "ab" * 32


def fold(model: Projection, command: Command, *, now: datetime = NOW) -> list[Envelope]:
    """Decide ``command`` against ``model`` and fold its events in, as the Stower does."""
    envelopes = []
    for event in decide(command, model, now):
        seq = model.seq + 1
        env = Envelope(
            seq=seq,
            event_id=f"evt_{seq}",
            stream=event.stream,
            version=model.version(event.stream) + 1,
            type=event.__struct_config__.tag,
            time=now,
            actor=command.actor,
            data=event,
            hash="",
        )
        model.apply(env)
        envelopes.append(env)
    return envelopes


def job_in(status: JobStatus, *, retries: int = 1, timeout: float | None = TIMEOUT) -> Projection:
    """A model holding job ``j`` (suspendable, with ``retries`` retries) in ``status``,
    reached by real commands; a running or ended job was claimed at NOW, and a
    mark ``m`` without a job exists beside it."""
    model = Projection()
    fold(model, MarkCreate(mark_id="m", resource_id="r", annotation=note("r")))
    fold(
        model,
        JobCreate(
            job_id="j",
            job_type="t",
            user=User(id="u"),
            suspendable=True,
            max_retries=retries,
            timeout=timeout,
        ),
    )
    if status is S.SUSPENDED:
        fold(model, JobSuspend(job_id="j"))
    elif status is S.CANCELLED:
        fold(model, JobCancel(job_id="j"))
    elif status is not S.PENDING:
        fold(model, JobStart(job_id="j", worker="w", expected_version=1, lease_seconds=LEASE))
        ending: dict[JobStatus, Command] = {
            S.COMPLETED: JobComplete(job_id="j", attempt=1),
            S.PARTIAL: JobPartial(job_id="j", attempt=1, error="half"),
            S.SKIPPED: JobSkip(job_id="j", attempt=1, reason="n/a"),
            S.FAILED: JobFail(job_id="j", attempt=1, error="boom", retryable=False),
            S.TIMED_OUT: JobFail(
                job_id="j", attempt=1, error="slow", retryable=False, timed_out=True
            ),
        }
        if status in ending:
            fold(model, ending[status])
    assert model.jobs["j"].status is status
    return model


# -- every command against every status ----------------------------------------

ATTEMPT = frozenset({S.RUNNING})  # an attempt exists only while the job runs


@dataclass(frozen=True)
class Case:
    """A command and the move it asks for.

    ``target`` is the status it asks the job to go to (``RUNNING`` for a
    report that keeps a running job running; ``None`` for ``job:delete``,
    which leaves no status). ``moves``: whether that is a move the table must
    allow. ``acts_on``: the statuses it can act on at all (``None``: any the
    table allows the move from). ``request``: on a running job it only asks
    (the job stays running until the worker confirms).
    """

    name: str
    make: Callable[[Job], Command]
    target: JobStatus | None
    moves: bool = True
    acts_on: frozenset[JobStatus] | None = None
    request: bool = False
    retries: int = 1
    timeout: float | None = TIMEOUT

    def accepts(self, status: JobStatus) -> bool:
        """Whether the table (and where the command acts) lets it act on a job in ``status``."""
        if self.acts_on is not None and status not in self.acts_on:
            return False
        if self.target is None:
            return True
        return not self.moves or can_transition(status, self.target)


def _attempt(job: Job) -> int:
    return max(1, job.attempt)


CASES = [
    Case(
        "job:start",
        lambda j: JobStart(job_id=j.id, worker="w2", expected_version=j.version),
        S.RUNNING,
    ),
    Case(
        "job:progress",
        lambda j: JobProgress(job_id=j.id, attempt=_attempt(j), percent=5),
        S.RUNNING,
        moves=False,
        acts_on=ATTEMPT,
    ),
    Case(
        "job:heartbeat",
        lambda j: JobHeartbeat(job_id=j.id, attempt=_attempt(j)),
        S.RUNNING,
        moves=False,
        acts_on=ATTEMPT,
    ),
    Case(
        "asset:create",
        lambda j: AssetCreate(
            asset_id="a",
            job_id=j.id,
            attempt=_attempt(j),
            asset_type="png",
            storage_path="a.png",
            size=1,
        ),
        S.RUNNING,
        moves=False,
        acts_on=ATTEMPT,
    ),
    Case(
        "mark:create",
        lambda j: MarkCreate(
            mark_id="m2", resource_id="r", annotation=note("r"), job_id=j.id, attempt=_attempt(j)
        ),
        S.RUNNING,
        moves=False,
        acts_on=ATTEMPT,
    ),
    Case(
        "mark:delete",
        lambda j: MarkDelete(mark_id="m", job_id=j.id, attempt=_attempt(j)),
        S.RUNNING,
        moves=False,
        acts_on=ATTEMPT,
    ),
    Case(
        "resource:create",
        lambda j: ResourceCreate(
            resource_id="r2",
            name="n",
            media_type="text/plain",
            digest=DIGEST,
            size=1,
            job_id=j.id,
            attempt=_attempt(j),
        ),
        S.RUNNING,
        moves=False,
        acts_on=ATTEMPT,
    ),
    Case(
        "job:complete",
        lambda j: JobComplete(job_id=j.id, attempt=_attempt(j)),
        S.COMPLETED,
        acts_on=ATTEMPT,
    ),
    Case(
        "job:partial",
        lambda j: JobPartial(job_id=j.id, attempt=_attempt(j), error="half"),
        S.PARTIAL,
        acts_on=ATTEMPT,
    ),
    Case(
        "job:skip",
        lambda j: JobSkip(job_id=j.id, attempt=_attempt(j), reason="n/a"),
        S.SKIPPED,
        acts_on=ATTEMPT,
    ),
    Case(
        "job:fail",
        lambda j: JobFail(job_id=j.id, attempt=_attempt(j), error="e", retryable=False),
        S.FAILED,
        acts_on=ATTEMPT,
    ),
    Case(
        "job:fail timed_out",
        lambda j: JobFail(
            job_id=j.id, attempt=_attempt(j), error="e", retryable=False, timed_out=True
        ),
        S.TIMED_OUT,
        acts_on=ATTEMPT,
    ),
    Case(
        "job:expire lease",
        lambda j: JobExpire(job_id=j.id, attempt=_attempt(j), reason="lease"),
        S.PENDING,
        acts_on=ATTEMPT,
    ),
    Case(
        "job:expire timeout",
        lambda j: JobExpire(job_id=j.id, attempt=_attempt(j), reason="timeout"),
        S.TIMED_OUT,
        acts_on=ATTEMPT,
        retries=0,
    ),
    Case(
        "job:release",
        lambda j: JobRelease(job_id=j.id, attempt=_attempt(j)),
        S.PENDING,
        acts_on=ATTEMPT,
    ),
    Case("job:cancel", lambda j: JobCancel(job_id=j.id), S.CANCELLED, request=True),
    Case("job:cancel attempt", lambda j: JobCancel(job_id=j.id, attempt=_attempt(j)), S.CANCELLED),
    Case("job:suspend", lambda j: JobSuspend(job_id=j.id), S.SUSPENDED, request=True),
    Case(
        "job:suspend attempt", lambda j: JobSuspend(job_id=j.id, attempt=_attempt(j)), S.SUSPENDED
    ),
    Case(
        "job:resume", lambda j: JobResume(job_id=j.id), S.PENDING, acts_on=frozenset({S.SUSPENDED})
    ),
    Case("job:delete", lambda j: JobDelete(job_id=j.id), None, acts_on=frozenset(S) - {S.RUNNING}),
    Case("job:retry", lambda j: JobRetry(job_id=j.id), S.PENDING, acts_on=RETRYABLE),
]


def test_the_cases_cover_every_command_a_job_status_matters_to() -> None:
    named = {case.name.split()[0] for case in CASES}
    # (a queue's capacity and a mark's body do not depend on any job's status)
    no_job_status = {"job:create", "mark:update-body", "queue:configure"}
    assert named == set(jobledger.core.COMMAND_TYPES) - no_job_status


@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_command_is_accepted_exactly_when_the_table_allows_its_move(
    case: Case, status: JobStatus
) -> None:
    model = job_in(status, retries=case.retries, timeout=case.timeout)
    job = model.jobs["j"]
    command = case.make(job)
    if not case.accepts(status):
        with pytest.raises(InvalidTransition) as caught:
            decide(command, model, LATER)
        refused = caught.value
        target = "deleted" if case.target is None else case.target.value
        assert (refused.job_id, refused.current, refused.target, refused.command) == (
            "j",
            status.value,
            target,
            case.name.split()[0],
        )
        assert f"from {status.value!r} to {target!r}" in str(refused)
        return
    fold(model, command, now=LATER)
    after = model.jobs.get("j")
    if case.target is None:
        assert after is None  # deleted
        return
    assert after is not None
    if case.request and status is S.RUNNING:  # asked; the worker confirms later
        assert after.status is S.RUNNING
        assert after.cancel_requested or after.suspend_requested
    else:
        assert after.status is case.target
        assert (after.cancel_requested, after.suspend_requested) == (False, False)


@pytest.mark.parametrize("case", [c for c in CASES if c.acts_on == ATTEMPT], ids=lambda c: c.name)
def test_a_report_for_another_attempt_is_stale_not_a_transition(case: Case) -> None:
    model = job_in(S.RUNNING, retries=case.retries)
    job = model.jobs["j"]
    command = case.make(msgspec.structs.replace(job, attempt=2))
    with pytest.raises(StaleAttempt) as caught:
        decide(command, model, LATER)
    assert (caught.value.stream, caught.value.expected, caught.value.actual) == ("j", 2, 1)


# -- every move of the table, and what happens without it ----------------------


@dataclass(frozen=True)
class Move:
    """One way a job makes the move ``source`` → ``target``: the steps that
    bring it to the point (after ``job_in(source)``), then the command."""

    source: JobStatus
    target: JobStatus
    name: str
    command: Command
    before: tuple[Command, ...] = ()
    retries: int = 1


MOVES = [
    Move(S.FAILED, S.PENDING, "a retry by hand", JobRetry(job_id="j")),
    Move(S.TIMED_OUT, S.PENDING, "a timed-out job retried by hand", JobRetry(job_id="j")),
    Move(S.CANCELLED, S.PENDING, "a cancelled job retried by hand", JobRetry(job_id="j")),
    Move(S.PENDING, S.RUNNING, "a claim", JobStart(job_id="j", worker="w", expected_version=1)),
    Move(S.PENDING, S.SUSPENDED, "a suspend", JobSuspend(job_id="j")),
    Move(S.PENDING, S.CANCELLED, "a cancel", JobCancel(job_id="j")),
    Move(S.RUNNING, S.PENDING, "a retry", JobFail(job_id="j", attempt=1, error="e")),
    Move(
        S.RUNNING,
        S.PENDING,
        "a timeout's retry",
        JobExpire(job_id="j", attempt=1, reason="timeout"),
    ),
    Move(S.RUNNING, S.PENDING, "a lost lease", JobExpire(job_id="j", attempt=1, reason="lease")),
    Move(S.RUNNING, S.PENDING, "a release", JobRelease(job_id="j", attempt=1)),
    Move(
        S.RUNNING,
        S.SUSPENDED,
        "a release while a suspend is asked",
        JobRelease(job_id="j", attempt=1),
        (JobSuspend(job_id="j"),),
    ),
    Move(
        S.RUNNING,
        S.CANCELLED,
        "a release after a cancel request",
        JobRelease(job_id="j", attempt=1),
        (JobCancel(job_id="j"),),
    ),
    Move(
        S.RUNNING,
        S.SUSPENDED,
        "a confirmed suspend",
        JobSuspend(job_id="j", attempt=1),
        (JobSuspend(job_id="j"),),
    ),
    Move(
        S.RUNNING,
        S.SUSPENDED,
        "a lease lost while a suspend is asked",
        JobExpire(job_id="j", attempt=1, reason="lease"),
        (JobSuspend(job_id="j"),),
    ),
    Move(S.RUNNING, S.COMPLETED, "a completion", JobComplete(job_id="j", attempt=1)),
    Move(S.RUNNING, S.PARTIAL, "a partial result", JobPartial(job_id="j", attempt=1, error="half")),
    Move(S.RUNNING, S.SKIPPED, "a skip", JobSkip(job_id="j", attempt=1, reason="n/a")),
    Move(
        S.RUNNING, S.FAILED, "a final failure", JobFail(job_id="j", attempt=1, error="e"), retries=0
    ),
    Move(
        S.RUNNING,
        S.FAILED,
        "a non-retryable failure",
        JobFail(job_id="j", attempt=1, error="e", retryable=False),
    ),
    Move(
        S.RUNNING,
        S.TIMED_OUT,
        "a timeout",
        JobExpire(job_id="j", attempt=1, reason="timeout"),
        retries=0,
    ),
    Move(
        S.RUNNING,
        S.TIMED_OUT,
        "a timeout reported",
        JobFail(job_id="j", attempt=1, error="e", timed_out=True),
        retries=0,
    ),
    Move(
        S.RUNNING,
        S.CANCELLED,
        "a confirmed cancel",
        JobCancel(job_id="j", attempt=1),
        (JobCancel(job_id="j"),),
    ),
    Move(
        S.RUNNING,
        S.CANCELLED,
        "a failure after a cancel request",
        JobFail(job_id="j", attempt=1, error="e"),
        (JobCancel(job_id="j"),),
    ),
    Move(
        S.RUNNING,
        S.CANCELLED,
        "a timeout after a cancel request",
        JobExpire(job_id="j", attempt=1, reason="timeout"),
        (JobCancel(job_id="j"),),
    ),
    Move(
        S.RUNNING,
        S.CANCELLED,
        "a lease lost after a cancel request",
        JobExpire(job_id="j", attempt=1, reason="lease"),
        (JobCancel(job_id="j"),),
    ),
    Move(
        S.RUNNING,
        S.CANCELLED,
        "a suspend confirmed after a cancel request",
        JobSuspend(job_id="j", attempt=1),
        (JobSuspend(job_id="j"), JobCancel(job_id="j")),
    ),
    Move(S.SUSPENDED, S.PENDING, "a resume", JobResume(job_id="j")),
    Move(S.SUSPENDED, S.CANCELLED, "a cancel", JobCancel(job_id="j")),
]


def test_every_move_of_the_table_is_made_by_some_command() -> None:
    table = {(s, t) for s, targets in TRANSITIONS.items() for t in targets}
    assert {(m.source, m.target) for m in MOVES} == table


def _ready(move: Move) -> Projection:
    model = job_in(move.source, retries=move.retries)
    for command in move.before:
        fold(model, command)
    return model


@pytest.mark.parametrize("move", MOVES, ids=lambda m: f"{m.source}->{m.target} by {m.name}")
def test_each_move_is_made_while_the_table_has_it(move: Move) -> None:
    model = _ready(move)
    fold(model, move.command, now=LATER)
    assert model.jobs["j"].status is move.target


@pytest.mark.parametrize("move", MOVES, ids=lambda m: f"{m.source}->{m.target} by {m.name}")
def test_each_move_is_refused_once_the_table_drops_it(
    move: Move, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _ready(move)
    head = model.seq
    without = {
        s: targets - {move.target} if s is move.source else targets
        for s, targets in TRANSITIONS.items()
    }
    monkeypatch.setattr(status_module, "TRANSITIONS", MappingProxyType(without))
    with pytest.raises(InvalidTransition) as caught:
        decide(move.command, model, LATER)
    refused = caught.value
    assert (refused.current, refused.target, refused.command) == (
        move.source.value,
        move.target.value,
        move.command.__struct_config__.tag,
    )
    assert model.seq == head and model.jobs["j"].status is move.source


def test_terminal_statuses_lead_nowhere_but_back_to_pending_by_hand() -> None:
    """The endings leave only by ``job:retry`` (to pending), and only the
    retryable ones; the table leads nowhere from the others."""
    assert {s for s, targets in TRANSITIONS.items() if not targets} == TERMINAL - RETRYABLE
    for status in RETRYABLE:
        assert TRANSITIONS[status] == frozenset({S.PENDING})


# -- endings a mutation run found untested, through a real ledger ---------------


async def _claimed(ledger: jobledger.Ledger, **submit: object) -> jobledger.Job:
    """A job submitted, then claimed by hand (a worker outside this ledger) at the clock's now."""
    job = await ledger.submit("t", **submit)  # type: ignore[arg-type]
    await ledger.send(JobStart(job_id=job.id, worker="w", expected_version=1, lease_seconds=30))
    return job


def _types(history: list[Envelope]) -> list[str]:
    return [env.type for env in history]


@pytest.mark.parametrize(("retryable", "timed_out"), [(True, False), (False, False), (True, True)])
async def test_a_failure_reported_after_a_cancel_request_ends_the_job_cancelled(
    db_path: Path, retryable: bool, timed_out: bool
) -> None:
    async with jobledger.open(db_path, clock=ManualClock(), sweep_interval=3600) as ledger:
        job = await _claimed(ledger, max_retries=2)  # retries left: without the cancel, a retry
        await ledger.cancel(job.id, reason="no longer needed")
        reply = await ledger.send(
            JobFail(
                job_id=job.id,
                attempt=1,
                error="boom",
                error_type="RuntimeError",
                retryable=retryable,
                timed_out=timed_out,
            )
        )
        assert [env.type for env in reply] == ["job.cancelled"]
        history = await ledger.history(job.id)
        assert _types(history) == [
            "job.created",
            "job.started",
            "job.cancel_requested",
            "job.cancelled",
        ]
        cancelled = history[-1].data
        assert isinstance(cancelled, jobledger.core.JobCancelled)
        assert (cancelled.attempt, cancelled.reason) == (1, "cancelled; boom")
        done = await ledger.get(job.id)
        assert (done.status, done.error, done.error_type) == (
            "cancelled",
            "cancelled; boom",
            "Cancelled",
        )
        assert (done.failures, done.lease, done.cancel_requested) == (0, None, False)


async def test_a_lease_lost_while_a_suspend_is_pending_suspends_the_job(db_path: Path) -> None:
    clock = ManualClock()
    kinds = [jobledger.JobType(name="t", suspendable=True)]
    async with jobledger.open(db_path, clock=clock, sweep_interval=3600, job_types=kinds) as ledger:
        job = await _claimed(ledger, max_retries=1)
        await ledger.suspend(job.id)
        clock.advance(31)  # the 30 s lease has run out
        reply = await ledger.send(JobExpire(job_id=job.id, attempt=1, reason="lease"))
        assert [env.type for env in reply] == ["job.suspended"]
        history = await ledger.history(job.id)
        assert _types(history) == [
            "job.created",
            "job.started",
            "job.suspend_requested",
            "job.suspended",
        ]
        suspended = history[-1].data
        assert isinstance(suspended, jobledger.core.JobSuspended)
        assert suspended.attempt == 1
        paused = await ledger.get(job.id)
        assert (paused.status, paused.lease, paused.suspend_requested) == ("suspended", None, False)
        assert (paused.failures, paused.retries_left) == (0, 1)
        resumed = await ledger.resume(job.id)
        assert resumed.status == "pending"


@pytest.mark.parametrize(
    ("timeout", "after"),
    [(10.0, 9.999), (10.0, 0.0), (None, 10.0**6)],
    ids=["before-the-deadline", "at-the-start", "without-a-timeout"],
)
async def test_a_timeout_expiry_that_comes_too_soon_is_refused_and_writes_nothing(
    db_path: Path, timeout: float | None, after: float
) -> None:
    clock = ManualClock()
    async with jobledger.open(db_path, clock=clock, sweep_interval=10**7) as ledger:
        job = await _claimed(ledger, timeout=timeout)
        await ledger.send(JobHeartbeat(job_id=job.id, attempt=1, lease_seconds=10**6))
        head = [env.seq async for env in ledger.events(after=0)][-1]
        clock.advance(after)
        with pytest.raises(ValidationError) as caught:
            await ledger.send(JobExpire(job_id=job.id, attempt=1, reason="timeout"))
        assert type(caught.value) is ValidationError
        assert caught.value.field == "reason"
        assert "has not timed out" in str(caught.value)
        assert [env.seq async for env in ledger.events(after=0)][-1] == head  # nothing written
        assert (await ledger.get(job.id)).status == "running"


async def test_a_timeout_expiry_at_the_deadline_times_the_job_out(db_path: Path) -> None:
    clock = ManualClock()
    async with jobledger.open(db_path, clock=clock, sweep_interval=10**7) as ledger:
        job = await _claimed(ledger, timeout=10.0)
        await ledger.send(JobHeartbeat(job_id=job.id, attempt=1, lease_seconds=3600))
        clock.advance(10.0)
        reply = await ledger.send(JobExpire(job_id=job.id, attempt=1, reason="timeout"))
        assert [env.type for env in reply] == ["job.timed_out"]
        done = await ledger.get(job.id)
        assert (done.status, done.error, done.error_type) == (
            "timed_out",
            "timed out after 10 s",
            "Timeout",
        )
