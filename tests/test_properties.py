"""Property tests: random command histories through the real bus, Stower and
store (MemoryLog and a fresh SQLite file per example), on a ManualClock moved
at random between commands, checking what every history must keep:

1. the read model equals a fresh replay of the log (jobs, marks, assets) and
   ``verify`` finds nothing;
2. a job once terminal never changes again: after each command it is
   byte-identical, until a ``job:delete`` removes it for good (and in the log,
   only ``job.deleted`` may follow its ending);
3. ``seq`` is exactly 1..N and every stream's versions are 1..n (one kind of
   entity per stream);
4. a job runs at most ``max_retries + 1`` attempts, not counting attempts a
   suspension ended (a resume is a new attempt, see ``Job``); it is retried at
   most ``max_retries`` times, and a retryable failure (``job:expire``,
   ``job:fail`` with ``retryable=True``) ends it only once those are spent;
5. a rejected command (``send`` raised) wrote nothing and raised a
   ``JobledgerError`` (never another type, never ``LedgerClosed``: the Stower
   must not crash, and never ``InternalError``: that is a crash inside
   ``decide`` or the batch, which the Stower survives but which is a bug).

Commands are drawn as *intents* (``Start(job=0, version="stale")``) made
concrete just before they are sent, from the read model of that moment: most
name a live job that suits them with its current version and attempt, some a
literal id (missing, deleted, or another kind's: ``"x"`` may name a job, a
mark and an asset), a stale attempt or version, or a value the command's
constraints refuse. Each example switches a random subset of the command
families on (swarm testing), and Hypothesis is steered towards many attempts
and many kinds of event, so jobs live long enough to retry, suspend and
resume. The concurrent test sends groups of commands at once and makes each
group one Stower batch.

Bugs found (each is an ``@example`` below; all fail at commit a393a50 and
pass from afdabcd on, which keys the Stower's cache and batch changes by
entity kind and counts retries by ``Job.failures``):

- ``MARK_ID_THEN_JOB_COMMAND``: the Stower's cache was keyed by bare id, so a
  job command naming a mark's id decided against the ``Mark`` and raised
  ``AttributeError`` to the sender;
- ``ASSET_ID_THEN_JOB_COMMAND``: the same for an asset's id crashed the Stower
  (``Asset`` has no ``version``): every later command got ``LedgerClosed``;
- ``JOB_LOOKUP_AND_MARK_CREATE_IN_ONE_BATCH``: a batch that looked an id up as
  a job and created a mark with it wrote the mark's event but not its SQLite
  row (the batch's changes were sorted by "is the id in the jobs dict");
- ``JOB_LOOKUP_AND_MARK_DELETE_IN_ONE_BATCH``: the same with a cached mark
  handed the ``Mark`` to the jobs table and crashed the Stower (SQLite);
- ``SUSPENDED_ATTEMPT_USES_UP_A_RETRY``: retries were counted by attempts, so
  a suspended and resumed job failed for good with retries left.

Hypothesis drives sync functions that run an async body with
``asyncio.run``; no example database is kept.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import msgspec
import pytest
from hypothesis import (
    HealthCheck,
    currently_in_test_context,
    example,
    given,
    settings,
    target,
)
from hypothesis import strategies as st

from jobledger import Job, JobledgerError, JobStatus, LedgerClosed, ManualClock, NotFound, User
from jobledger.core import (
    DEFAULT_MAX_RECOVERIES,
    TERMINAL,
    AssetCreate,
    Command,
    Envelope,
    InternalError,
    JobCancel,
    JobComplete,
    JobCreate,
    JobCreated,
    JobDelete,
    JobExpire,
    JobFail,
    JobFailed,
    JobHeartbeat,
    JobLeaseExpired,
    JobPartial,
    JobProgress,
    JobReleased,
    JobResume,
    JobSkip,
    JobStart,
    JobStarted,
    JobSuspend,
    JobSuspended,
    MarkCreate,
    MarkDelete,
)
from jobledger.eventbus import EventBus, Reply
from jobledger.store import EventLog, MemoryLog, SqliteLog, replay, verify
from jobledger.stower import Stower

from .conftest import note

# -- pools ---------------------------------------------------------------------

JOB_IDS = ("j1", "j2", "x")  # named by a str JobRef
CREATE_IDS = ("j1", "j2", "j3", "j4", "j5", "j6")  # fresh ids, in order
MARK_IDS = ("m1", "m2", "x")
ASSET_IDS = ("a1", "a2", "x")
JOB_TYPES = ("t", "etl.v2", "ns:resize")
USERS = ("alice", "bob")
TENANTS = (None, None, "t1")  # an idempotency key is scoped to a user in a tenant
KEYS = (None, None, None, "k1", "k2")
GOOD_PATHS = ("out/x.png", "a.txt")
BAD_PATHS = ("../x", "/abs", "a//b", "./a", "a\\b", "C:/x", "")
LEASES = (60.0, 1.0, 10.0)
TIMEOUTS = (None, None, 5.0, 1.0, 30.0)
RUN_IN = (None, None, -5.0, 3.0, 100.0)  # seconds from now


def mostly(good: Sequence[Any], bad: Sequence[Any]) -> st.SearchStrategy[Any]:
    """One of ``good`` (shrinking to the first), now and then one of ``bad``
    (a value the command's constraints or ``decide`` refuse)."""
    return st.sampled_from((*good, *good, *good, *bad))


AttemptChoice = Literal["current", "next", "previous", "zero"]
VersionChoice = Literal["current", "stale", "ahead"]


def _attempt(job: Job | None, choice: AttemptChoice) -> int:
    """The attempt a report names: usually the job's current one, sometimes not."""
    current = job.attempt if job is not None else 0
    return {
        "current": max(1, current),
        "next": current + 1,  # right after a start in the same batch
        "previous": max(1, current - 1),
        "zero": 0,  # out of range
    }[choice]


def _version(job: Job | None, choice: VersionChoice) -> int:
    current = job.version if job is not None else 1  # 1: created in the same batch
    return {"current": current, "stale": max(0, current - 1), "ahead": current + 1}[choice]


JobRef = int | str
"""Which job a command names. A ``str`` is that id, whatever it is (missing,
deleted, a mark's). An ``int`` n is the n-th (modulo) of the jobs the
command suits (due pending ones for a start, running ones for a report, …;
any job of the read model if none suits), oldest first: so most commands land."""


def _due(now: datetime) -> Callable[[Job], bool]:
    def due(job: Job) -> bool:
        return job.status is JobStatus.PENDING and (job.run_at is None or job.run_at <= now)

    return due


def _running(job: Job) -> bool:
    return job.status is JobStatus.RUNNING


def _live(job: Job) -> bool:
    return job.status not in TERMINAL


def _suspended(job: Job) -> bool:
    return job.status is JobStatus.SUSPENDED


def _idle(job: Job) -> bool:
    return job.status is not JobStatus.RUNNING


def _suspendable(job: Job) -> bool:
    return job.suspendable and job.status in (JobStatus.PENDING, JobStatus.RUNNING)


def _suspendable_running(job: Job) -> bool:
    return job.suspendable and job.status is JobStatus.RUNNING


async def _resolve(
    log: EventLog, ref: JobRef, suits: Callable[[Job], bool]
) -> tuple[str, Job | None]:
    """The job id ``ref`` names now, and that job as the read model has it."""
    if isinstance(ref, str):
        return ref, await log.get_job(ref)
    jobs = sorted(await log.list_jobs(limit=1000), key=lambda j: j.created_seq)
    candidates = [j for j in jobs if suits(j)] or jobs
    if not candidates:
        return JOB_IDS[0], None
    job = candidates[ref % len(candidates)]
    return job.id, job


# -- intents -------------------------------------------------------------------
# Each is a small frozen value (so Hypothesis prints and shrinks it readably)
# that turns into a concrete command against the read model of the moment.


@dataclass(frozen=True)
class Create:
    job_id: str | None = None  # None: the first id of CREATE_IDS no stream has yet
    job_type: str = "t"
    user: str = "alice"
    tenant: str | None = None
    max_retries: int = 0
    timeout: float | None = None
    suspendable: bool = False
    key: str | None = None
    priority: int = 0
    run_in: float | str | None = None  # seconds from now, or "naive"

    async def command(self, log: EventLog, clock: ManualClock) -> Command:
        run_at = None
        if self.run_in == "naive":
            run_at = clock.now().replace(tzinfo=None)
        elif isinstance(self.run_in, float):
            run_at = clock.now() + timedelta(seconds=self.run_in)
        job_id = self.job_id
        if job_id is None:
            used = [bool(await log.stream(i)) for i in CREATE_IDS]
            job_id = CREATE_IDS[used.index(False)] if False in used else CREATE_IDS[0]
        return JobCreate(
            job_id=job_id,
            job_type=self.job_type,
            user=User(id=self.user, tenant=self.tenant),
            actor=self.user,
            max_retries=self.max_retries,
            timeout=self.timeout,
            suspendable=self.suspendable,
            idempotency_key=self.key,
            priority=self.priority,
            run_at=run_at,
        )


@dataclass(frozen=True)
class Start:
    job: JobRef = 0
    version: VersionChoice = "current"
    lease: float = 60.0

    async def command(self, log: EventLog, clock: ManualClock) -> Command:
        job_id, job = await _resolve(log, self.job, _due(clock.now()))
        return JobStart(
            job_id=job_id,
            worker="w1",
            actor="worker:w1",
            expected_version=_version(job, self.version),
            lease_seconds=self.lease,
        )


@dataclass(frozen=True)
class Report:
    """A worker's report on an attempt: progress, heartbeat, or an ending."""

    kind: Literal["progress", "heartbeat", "complete", "fail", "partial", "skip", "expire"]
    job: JobRef = 0
    attempt: AttemptChoice = "current"
    percent: float | None = None
    lease: float = 60.0
    retryable: bool = True
    timed_out: bool = False
    reason: Literal["lease", "timeout"] = "lease"

    async def command(self, log: EventLog, clock: ManualClock) -> Command:
        job_id, job = await _resolve(log, self.job, _running)
        common: dict[str, Any] = {
            "job_id": job_id,
            "attempt": _attempt(job, self.attempt),
            "actor": "worker:w1",
        }
        match self.kind:
            case "progress":
                return JobProgress(**common, percent=self.percent, processed=3, total=4)
            case "heartbeat":
                return JobHeartbeat(**common, lease_seconds=self.lease)
            case "complete":
                return JobComplete(**common, result={"ok": True})
            case "fail":
                return JobFail(
                    **common, error="boom", retryable=self.retryable, timed_out=self.timed_out
                )
            case "partial":
                return JobPartial(**common, result={"half": 1}, error="half done")
            case "skip":
                return JobSkip(**common, reason="not applicable")
            case "expire":
                return JobExpire(**(common | {"actor": "system"}), reason=self.reason)


@dataclass(frozen=True)
class Control:
    """A user's lifecycle command; with an ``attempt``, a worker's confirmation."""

    kind: Literal["cancel", "suspend", "resume", "delete"]
    job: JobRef = 0
    attempt: AttemptChoice | None = None

    async def command(self, log: EventLog, clock: ManualClock) -> Command:
        confirm = self.attempt is not None
        suits = {
            "cancel": _running if confirm else _live,
            "suspend": _suspendable_running if confirm else _suspendable,
            "resume": _suspended,
            "delete": _idle,
        }
        job_id, job = await _resolve(log, self.job, suits[self.kind])
        attempt = None if self.attempt is None else _attempt(job, self.attempt)
        match self.kind:
            case "cancel":
                return JobCancel(job_id=job_id, attempt=attempt, reason="stop")
            case "suspend":
                return JobSuspend(job_id=job_id, attempt=attempt)
            case "resume":
                return JobResume(job_id=job_id)
            case "delete":
                return JobDelete(job_id=job_id)


@dataclass(frozen=True)
class NewAsset:
    asset_id: str
    job: JobRef = 0
    attempt: AttemptChoice = "current"
    path: str = "out/x.png"

    async def command(self, log: EventLog, clock: ManualClock) -> Command:
        job_id, job = await _resolve(log, self.job, _running)
        return AssetCreate(
            asset_id=self.asset_id,
            job_id=job_id,
            attempt=_attempt(job, self.attempt),
            asset_type="image",
            storage_path=self.path,
            size=10,
            actor="worker:w1",
        )


@dataclass(frozen=True)
class NewMark:
    mark_id: str
    resource_id: str = "r1"
    job: JobRef | None = None
    attempt: AttemptChoice = "current"

    async def command(self, log: EventLog, clock: ManualClock) -> Command:
        job_id = attempt = None
        if self.job is not None:
            job_id, job = await _resolve(log, self.job, _running)
            attempt = _attempt(job, self.attempt)
        return MarkCreate(
            mark_id=self.mark_id,
            resource_id=self.resource_id,
            annotation=note(self.resource_id),
            job_id=job_id,
            attempt=attempt,
        )


@dataclass(frozen=True)
class DropMark:
    mark_id: str

    async def command(self, log: EventLog, clock: ManualClock) -> Command:
        return MarkDelete(mark_id=self.mark_id)


Intent = Create | Start | Report | Control | NewAsset | NewMark | DropMark


@dataclass(frozen=True)
class Step:
    """Move the clock by ``advance`` seconds, then send ``intents`` (at once if several)."""

    advance: float
    intents: tuple[Intent, ...]


# -- strategies ----------------------------------------------------------------


def _job_ref(n: int) -> JobRef:
    # Three times in four "the n-th job this command suits", else a literal id.
    return n % 4 if n < 12 else JOB_IDS[n % len(JOB_IDS)]


job_refs: st.SearchStrategy[JobRef] = st.integers(0, 15).map(_job_ref)
attempts = mostly(("current", "current", "next", "previous"), ("zero",))
advances = st.one_of(
    st.sampled_from((0.0, 0.5, 2.0, 11.0, 61.0, 400.0)),
    st.floats(min_value=0.0, max_value=120.0, allow_nan=False),
)

creates = st.builds(
    Create,
    job_id=mostly((None, None), ("j1", "x")),  # literal ids may be taken
    job_type=mostly(JOB_TYPES, ("-bad",)),  # a name must start with a letter or digit
    user=st.sampled_from(USERS),
    tenant=st.sampled_from(TENANTS),
    max_retries=st.integers(0, 3),
    timeout=mostly(TIMEOUTS, (0.0,)),  # must be > 0
    suspendable=st.booleans(),
    key=st.sampled_from(KEYS),
    priority=mostly((0, 5, -1), (2**31,)),  # must fit 32 bits
    run_in=mostly(RUN_IN, ("naive",)),  # must be aware
)
starts = st.builds(
    Start,
    job=job_refs,
    version=mostly(("current", "current"), ("stale", "ahead")),
    lease=mostly(LEASES, (0.0,)),  # must be > 0
)


def reports(*kinds: str) -> st.SearchStrategy[Intent]:
    return st.builds(
        Report,
        kind=st.sampled_from(kinds),
        job=job_refs,
        attempt=attempts,
        percent=mostly((None, 50.0, 0.0, 100.0), (150.0,)),  # must be <= 100
        lease=mostly(LEASES, (0.0,)),
        retryable=st.booleans(),
        timed_out=st.booleans(),
        reason=st.sampled_from(("lease", "timeout")),
    )


def controls(kind: str) -> st.SearchStrategy[Intent]:
    return st.builds(Control, kind=st.just(kind), job=job_refs, attempt=st.none() | attempts)


new_assets = st.builds(
    NewAsset,
    asset_id=st.sampled_from(ASSET_IDS),
    job=job_refs,
    attempt=attempts,
    path=mostly(GOOD_PATHS, BAD_PATHS),
)
new_marks = st.builds(
    NewMark,
    mark_id=st.sampled_from(MARK_IDS),
    resource_id=st.sampled_from(("r1", "r2")),
    job=st.none() | job_refs,
    attempt=attempts,
)
drop_marks = st.builds(DropMark, mark_id=st.sampled_from(MARK_IDS))

FEATURES: dict[str, tuple[int, st.SearchStrategy[Intent]]] = {  # name: (weight, intents)
    "progress": (2, reports("progress", "heartbeat")),
    "finish": (2, reports("complete", "partial", "skip")),
    "fail": (2, reports("fail")),
    "expire": (2, reports("expire")),
    "cancel": (1, controls("cancel")),
    "suspend": (2, controls("suspend")),
    "resume": (2, controls("resume")),
    "delete": (1, controls("delete")),
    "assets": (2, new_assets),
    "marks": (2, new_marks | drop_marks),
}


def swarm(features: Sequence[str]) -> st.SearchStrategy[Intent]:
    """Creates and starts, and the intents of the ``features`` switched on.

    Each example draws its own set of features (swarm testing): a history
    without deletes or cancels lets jobs live long enough to retry, suspend
    and resume, which a mix of everything at once seldom does.
    """
    pool = [creates, starts, starts]
    for name in features:
        weight, strategy = FEATURES[name]
        pool += [strategy] * weight
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def histories(
    group: st.SearchStrategy[tuple[Intent, ...]], max_steps: int
) -> st.SearchStrategy[list[Step]]:
    """Lists of up to ``max_steps`` steps, about 25 on average (a flat ``st.lists``
    averages 5: too few for a job to live its life), that still shrink freely."""
    step = st.builds(Step, advance=advances, intents=group)
    chunks = st.lists(st.lists(step, max_size=10), max_size=10)
    return chunks.map(lambda parts: [s for part in parts for s in part][:max_steps])


features = st.fixed_dictionaries({name: st.booleans() for name in FEATURES}).map(
    lambda switches: [name for name, on in switches.items() if on]
)
sequential_steps = features.flatmap(lambda on: histories(st.tuples(swarm(on)), 40))
grouped_steps = features.flatmap(
    lambda on: histories(st.lists(swarm(on), min_size=1, max_size=5).map(tuple), 16)
)

SETTINGS = settings(
    max_examples=80,
    deadline=None,
    database=None,  # write nothing into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- the engine ----------------------------------------------------------------


@asynccontextmanager
async def make_log(backend: str) -> AsyncIterator[EventLog]:
    """A fresh, empty log of ``backend``, not yet open."""
    if backend == "memory":
        yield MemoryLog()
        return
    with tempfile.TemporaryDirectory() as folder:
        yield SqliteLog(Path(folder) / "p.db")


@asynccontextmanager
async def stower_on(
    log: EventLog, clock: ManualClock, crashes: list[BaseException]
) -> AsyncIterator[tuple[EventBus, Stower]]:
    """Open ``log`` and run the real Stower on it with ``clock`` (its crashes go
    to ``crashes``); stop and close after."""
    await log.open()
    bus = EventBus()
    stower = Stower(log, bus, clock=clock, on_crash=crashes.append)
    await stower.start()
    try:
        yield bus, stower
    finally:
        await stower.stop()
        await bus.aclose()
        await log.close()


async def send_together(
    log: EventLog, bus: EventBus, commands: Sequence[Command]
) -> list[Reply | BaseException]:
    """Send ``commands`` at once so the Stower decides them in one batch.

    A write transaction held open here (as another writer would) keeps the
    Stower waiting on a rejected blocker command while the group fills its
    mailbox; the whole group is then the next batch.
    """
    async with log.write():
        blocker = asyncio.ensure_future(bus.send(MarkDelete(mark_id="blocker")))
        await asyncio.sleep(0)  # one loop turn: the blocker is sent
        await bus.drain()  # it reaches the Stower, which takes it and waits for this lock
        sends = [asyncio.ensure_future(bus.send(c)) for c in commands]
        await asyncio.sleep(0)  # one loop turn: every command is sent
        await bus.drain()  # every command is in the mailbox
    with pytest.raises(NotFound):
        await blocker
    return list(await asyncio.gather(*sends, return_exceptions=True))


# -- the invariants ------------------------------------------------------------


def _encoded(values: dict[str, Any]) -> dict[str, str]:
    return {key: msgspec.json.encode(value).decode() for key, value in sorted(values.items())}


def _streams_of(command: Command) -> set[str]:
    ids = (getattr(command, name, None) for name in ("job_id", "mark_id", "asset_id"))
    return {i for i in ids if i is not None}


def check_answers(
    commands: Sequence[Command], answers: Sequence[Reply | BaseException], before: int, after: int
) -> None:
    """(5) Every rejected command raised a ``JobledgerError``: a refusal, not
    ``LedgerClosed`` (the Stower is up) nor ``InternalError`` (a bug the Stower
    caught: a crash inside ``decide`` is not a refusal); the accepted ones account for every
    new event, each in a stream the command names: so the rejected ones wrote
    nothing."""
    written: set[int] = set()
    for command, answer in zip(commands, answers, strict=True):
        if isinstance(answer, BaseException):
            assert isinstance(answer, JobledgerError), (
                f"{command!r} was rejected with {answer!r}, which is not a JobledgerError"
            )
            assert not isinstance(answer, LedgerClosed), f"{command!r} got {answer!r}"
            assert not isinstance(answer, InternalError), (
                f"{command!r} crashed jobledger: {answer!r} (caused by {answer.__cause__!r})"
            )
            continue
        for env in answer:
            assert env.stream in _streams_of(command), f"{command!r} wrote {env!r}"
            written.add(env.seq)
    new = set(range(before + 1, after + 1))
    assert written == new, (
        f"the head moved {before} -> {after}, but the accepted commands wrote "
        f"{sorted(written)}: {list(zip(commands, answers, strict=True))!r}"
    )


class Watch:
    """(2) as seen through the read model after each step: a job once terminal
    stays byte-identical until a ``job:delete`` removes it for good. Also: no
    two jobs hold one idempotency key."""

    def __init__(self) -> None:
        self.terminal: dict[str, str] = {}  # job id → its encoded state when first seen terminal
        self.deleted: set[str] = set()

    async def observe(self, log: EventLog, deleted_now: set[str]) -> None:
        jobs = (await log.snapshot()).jobs
        keys: dict[tuple[str, str | None, str], str] = {}
        for job in jobs.values():
            assert job.id not in self.deleted, f"deleted job {job.id!r} came back: {job!r}"
            encoded = msgspec.json.encode(job).decode()
            if job.id in self.terminal:
                assert encoded == self.terminal[job.id], (
                    f"terminal job {job.id!r} changed: {self.terminal[job.id]} -> {encoded}"
                )
            elif job.status in TERMINAL:
                self.terminal[job.id] = encoded
            if job.idempotency_key is not None:
                scope = (job.user.id, job.user.tenant, job.idempotency_key)
                assert scope not in keys, f"jobs {keys[scope]!r} and {job.id!r} share key {scope}"
                keys[scope] = job.id
        for job_id in list(self.terminal):
            if job_id not in jobs:
                assert job_id in deleted_now, f"terminal job {job_id!r} vanished without a delete"
                del self.terminal[job_id]
        self.deleted |= deleted_now


FAILURES = ("job.retry_scheduled", "job.failed", "job.timed_out")
ENDINGS = (
    "job.completed",
    "job.partial",
    "job.skipped",
    "job.cancelled",
    "job.failed",
    "job.timed_out",
)


@dataclass
class Life:
    """One job's history as the log tells it (folded here, not by jobledger)."""

    max_retries: int
    max_recoveries: int
    starts: int = 0
    suspended_attempts: int = 0
    failures: int = 0
    recoveries: int = 0
    released: int = 0
    ended: bool = False
    deleted: bool = False


def _at(env: Envelope, life: Life) -> str:
    return f"{env.type} at seq {env.seq} for job {env.stream!r}, then {life}"


async def check_log(log: EventLog, retryable: set[int]) -> list[Envelope]:
    """(1), (3), and (2) and (4) from the log itself; returns the log.

    ``retryable`` holds the ``seq`` of every event written by a retryable
    failure (``job:expire``, or ``job:fail`` with ``retryable=True``).
    """
    envelopes = [env async for env in log.scan()]
    # (3) seq is exactly 1..N; each stream's versions are 1..n, and it holds one kind.
    assert [env.seq for env in envelopes] == list(range(1, len(envelopes) + 1))
    assert (await log.head()).seq == len(envelopes)
    versions: dict[str, list[int]] = defaultdict(list)
    kinds: dict[str, set[str]] = defaultdict(set)
    for env in envelopes:
        versions[env.stream].append(env.version)
        kinds[env.stream].add(env.type.split(".", 1)[0])
    for stream, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), f"stream {stream!r} has versions {seen}"
        assert [env.version for env in await log.stream(stream)] == seen
        assert len(kinds[stream]) == 1, f"stream {stream!r} mixes {sorted(kinds[stream])}"
    lives: dict[str, Life] = {}
    for env in envelopes:
        event = env.data
        if isinstance(event, JobCreated):
            lives[env.stream] = Life(
                max_retries=event.max_retries,
                max_recoveries=event.max_recoveries
                if event.max_recoveries is not None
                else DEFAULT_MAX_RECOVERIES,
            )
            continue
        life = lives.get(env.stream)
        if life is None:
            continue
        # (2) after an ending only job.deleted; after that nothing.
        assert not life.deleted, f"{_at(env, life)}: after job.deleted"
        assert not life.ended or env.type == "job.deleted", f"{_at(env, life)}: the job had ended"
        life.deleted = env.type == "job.deleted"
        lease_lost = isinstance(event, JobLeaseExpired)
        life.ended = env.type in ENDINGS or (lease_lost and event.retry_at is None)
        # (4) at most max_retries + 1 attempts, not counting those a suspension
        # ended (a resume is a new attempt), a lost worker recovered (at most
        # max_recoveries) or a stopping worker released; at most max_retries
        # retries; and a retryable failure ends the job only once its retries
        # are spent. A lost worker spends a recovery, never a retry.
        if isinstance(event, JobStarted):
            life.starts += 1
            spent = life.starts - life.suspended_attempts - life.recoveries - life.released
            assert spent <= life.max_retries + 1, _at(env, life)
        if isinstance(event, JobSuspended) and event.attempt is not None:
            life.suspended_attempts += 1
        if isinstance(event, JobReleased):
            life.released += 1
        if lease_lost and event.recovery is not None:
            life.recoveries += 1
            assert event.recovery == life.recoveries <= life.max_recoveries, _at(env, life)
            continue
        if lease_lost and event.recovery is None:  # (a log from before recoveries)
            life.failures += 1
            continue
        if isinstance(event, JobFailed) and event.error_type == "LeaseExpired":
            # One lost worker past max_recoveries: a poison job, not a retry.
            assert life.recoveries == life.max_recoveries, _at(env, life)
            continue
        if env.type in FAILURES:
            life.failures += 1
            assert life.failures <= life.max_retries + 1, _at(env, life)
            if not life.ended:
                assert life.failures <= life.max_retries, f"{_at(env, life)}: one retry too many"
            elif env.seq in retryable:
                assert life.failures == life.max_retries + 1, f"{_at(env, life)}: retries left"
    # (1) the read model is a fresh replay of the log, and verify agrees.
    stored = await log.snapshot()
    model = await replay(log)
    assert _encoded(stored.jobs) == _encoded(model.jobs), "jobs differ from a replay"
    assert _encoded(stored.marks) == _encoded(model.marks), "marks differ from a replay"
    assert _encoded(stored.assets) == _encoded(model.assets), "assets differ from a replay"
    assert stored.seq == model.seq == len(envelopes)
    report = await verify(log)
    assert report.ok, report.problems
    return envelopes


def aim(envelopes: Sequence[Envelope]) -> None:
    """Steer Hypothesis towards long lives: many attempts, many kinds of event."""
    if not currently_in_test_context():
        return
    attempts = max((getattr(env.data, "attempt", None) or 0 for env in envelopes), default=0)
    target(float(attempts), label="highest attempt")
    target(float(len({env.type for env in envelopes})), label="kinds of event")


# -- the runs ------------------------------------------------------------------


async def run(backend: str, steps: Sequence[Step]) -> int:
    """Send ``steps`` through a fresh engine, checking as it goes; returns the
    largest batch the Stower committed."""
    clock = ManualClock()
    crashes: list[BaseException] = []
    async with make_log(backend) as log, stower_on(log, clock, crashes) as (bus, stower):
        watch = Watch()
        retryable: set[int] = set()
        for step in steps:
            clock.advance(step.advance)
            commands = [await intent.command(log, clock) for intent in step.intents]
            before = (await log.head()).seq
            if len(commands) == 1:
                answers: list[Reply | BaseException] = []
                try:
                    answers.append(await bus.send(commands[0]))
                except Exception as exc:
                    answers.append(exc)
            else:
                answers = await send_together(log, bus, commands)
            after = (await log.head()).seq
            assert not crashes, f"the Stower crashed: {crashes[0]!r}"
            check_answers(commands, answers, before, after)
            deleted_now: set[str] = set()
            for command, answer in zip(commands, answers, strict=True):
                if isinstance(answer, BaseException):
                    continue
                if isinstance(command, JobDelete):
                    deleted_now.add(command.job_id)
                if isinstance(command, JobExpire) or (
                    isinstance(command, JobFail) and command.retryable
                ):
                    retryable.update(env.seq for env in answer)
            await watch.observe(log, deleted_now)
        aim(await check_log(log, retryable))
        return stower.statistics().max_batch_seen


def one(*intents: Intent, advance: float = 0.0) -> Step:
    return Step(advance=advance, intents=intents)


BACKENDS = pytest.mark.parametrize("backend", ["memory", "sqlite"])

# Minimal histories of the bugs these properties found (see the module docstring).
MARK_ID_THEN_JOB_COMMAND = [one(NewMark("x")), one(Control("delete", "x"))]
ASSET_ID_THEN_JOB_COMMAND = [
    one(Create()),
    one(Start()),
    one(NewAsset("x")),
    one(Control("cancel", "x")),
]
SUSPENDED_ATTEMPT_USES_UP_A_RETRY = [
    one(Create(max_retries=1, suspendable=True)),
    one(Start()),
    one(Control("suspend", attempt="current")),
    one(Control("resume")),
    one(Start()),
    one(Report("fail")),
]
JOB_LOOKUP_AND_MARK_CREATE_IN_ONE_BATCH = [one(Start("x"), NewMark("x"))]
JOB_LOOKUP_AND_MARK_DELETE_IN_ONE_BATCH = [
    one(NewMark("x")),
    one(Control("delete", "x"), DropMark("x")),
]


@BACKENDS
@SETTINGS
@given(steps=sequential_steps)
@example(steps=MARK_ID_THEN_JOB_COMMAND)
@example(steps=ASSET_ID_THEN_JOB_COMMAND)
@example(steps=SUSPENDED_ATTEMPT_USES_UP_A_RETRY)
def test_sequential_commands_keep_every_invariant(backend: str, steps: list[Step]) -> None:
    asyncio.run(run(backend, steps))


@BACKENDS
@SETTINGS
@given(steps=grouped_steps)
@example(steps=JOB_LOOKUP_AND_MARK_CREATE_IN_ONE_BATCH)
@example(steps=JOB_LOOKUP_AND_MARK_DELETE_IN_ONE_BATCH)
def test_concurrent_batches_keep_every_invariant(backend: str, steps: list[Step]) -> None:
    asyncio.run(run(backend, steps))


@BACKENDS
def test_concurrent_groups_do_share_batches(backend: str) -> None:
    """The grouped runs above exercise group commit: a group is one batch."""
    step = one(Create(), Start(), Report("progress", attempt="next"), Create())
    assert asyncio.run(run(backend, [step])) == 4


def test_a_crash_inside_decide_is_not_a_valid_refusal() -> None:
    """The Stower answers a crash inside ``decide`` with ``InternalError`` (a
    ``JobledgerError``, so the sender gets a typed error); the properties must
    still count it as a failure, or they hide the crash."""
    command = JobResume(job_id="j1")
    crash = InternalError("deciding JobResume failed: AttributeError('x')")
    with pytest.raises(AssertionError, match="crashed jobledger"):
        check_answers([command], [crash], 0, 0)
    check_answers([command], [NotFound("job", "j1")], 0, 0)  # a refusal is fine
