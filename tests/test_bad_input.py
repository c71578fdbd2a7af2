"""Bad input (issue 6, item 5): malformed commands on the bus get a typed
error, write nothing, and the next valid command succeeds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jobledger
from jobledger.core import (
    COMMAND_TYPES,
    MAX_COMMAND_BYTES,
    MAX_DEPTH,
    MAX_RETRY_DELAY,
    AssetCreate,
    BodyAdd,
    Command,
    Envelope,
    InvalidTransition,
    JobComplete,
    JobCreate,
    JobCreated,
    JobFail,
    JobledgerError,
    JobProgress,
    JobStart,
    JobType,
    NotFound,
    RetryPolicy,
    TextualBody,
    User,
    ValidationError,
    chain_hash,
    encode_event,
    evolve_job,
    retry_delay,
)
from jobledger.store import Changes, MemoryLog, Record, SqliteLog

from .conftest import create, note, running

NOW = datetime(2026, 1, 1, tzinfo=UTC)

# A well-formed value for every field a command may have: the base that a
# fuzzed command changes some fields of.
PLAUSIBLE: dict[str, Any] = {
    "job_id": "j1", "job_type": "t", "params": {"a": 1}, "user": User(id="u"), "priority": 0,
    "run_at": None, "max_retries": 0, "timeout": None, "idempotency_key": None,
    "queue": "default", "suspendable": False, "retry": None, "worker": "w",
    "expected_version": 1, "lease_seconds": 60.0, "attempt": 1, "percent": 50.0,
    "stage": "s", "message": "m", "processed": 1, "total": 2, "checkpoint": {"at": 1},
    "result": {"ok": True}, "error": "e", "error_type": "E", "retryable": True,
    "timed_out": False, "reason": "lease", "asset_id": "a1", "asset_type": "image",
    "url": None, "storage_path": "thumbs/a.png", "size": 1, "mark_id": "m1",
    "resource_id": "doc", "annotation": note("doc"), "actor": "system",
    "correlation_id": None, "causation_id": None, "name": "a.md", "media_type": "text/markdown",
    "digest": "sha256:" + "0" * 64,
    "operations": [BodyAdd(item=TextualBody(value="more", purpose="commenting"))],
    "max_recoveries": 3, "holder": None, "capacity": 2,
}  # fmt: skip


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


surrogates = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    surrogates,
    st.binary(max_size=8),
    st.sampled_from(["'; DROP TABLE events; --", "../../etc/passwd", "/abs", "a\x00b", ""]),
    st.lists(st.integers(), max_size=3),
    st.frozensets(st.integers(), max_size=3),
    st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), st.integers(), max_size=3),
    st.builds(nested, st.integers(MAX_DEPTH, MAX_DEPTH + 3)),
    st.just("x" * (MAX_COMMAND_BYTES + 1)),
    st.just(nested(5_000)),
)


@st.composite
def malformed_commands(draw: st.DrawFn) -> Command:
    """A command of any type with some of its fields replaced by junk."""
    cls = draw(st.sampled_from(sorted(COMMAND_TYPES.values(), key=lambda c: c.__name__)))
    fields = {name: PLAUSIBLE[name] for name in cls.__struct_fields__}
    for name in draw(st.sets(st.sampled_from(cls.__struct_fields__), min_size=1)):
        fields[name] = draw(junk)
    return cls(**fields)


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(command=malformed_commands())
def test_a_malformed_command_is_refused_typed_and_writes_nothing(command: Command) -> None:
    async def check() -> None:
        async with running(MemoryLog()) as engine:
            await engine.bus.send(create("before"))
            head = await engine.log.head()
            try:
                await engine.bus.send(command)
            except JobledgerError:
                assert await engine.log.head() == head  # nothing written
            # (accepted: the junk happened to be valid, or was decided as plain data)
            assert engine.stower.running
            reply = await engine.bus.send(create("after"))
            assert [env.type for env in reply] == ["job.created"]

    asyncio.run(check())


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"x": float("nan")}, "params.x"),
        ({"x": [1.0, float("inf")]}, "params.x[1]"),
        ({"x": b"bytes"}, "params.x"),
        ({"x": {1, 2}}, "params.x"),
        ({1: "not a string key"}, "params"),
        ({"x": "\ud800"}, None),
        (nested(MAX_DEPTH + 1), "params" + ".a" * MAX_DEPTH),
        (nested(100_000), "params" + ".a" * MAX_DEPTH),
    ],
)
async def test_what_json_cannot_carry_unchanged_is_refused(
    db_path: Path, params: dict[Any, Any], field: str | None
) -> None:
    """Before, NaN became null, bytes base64 and sets lists, silently; deep
    nesting raised a RecursionError that stopped the Stower."""
    async with running(SqliteLog(db_path)) as engine:
        command = JobCreate(job_id="j", job_type="t", user=User(id="u"), params=params)
        with pytest.raises(ValidationError) as refused:
            await engine.bus.send(command)
        assert refused.value.field == field
        assert (await engine.log.head()).seq == 0
        assert engine.stower.running
        # MAX_DEPTH containers deep, the params mapping included: still fine.
        (env,) = await engine.bus.send(create("fine", params=nested(MAX_DEPTH - 1)))
        assert env.seq == 1


async def test_sql_metacharacters_and_odd_text_are_plain_data(db_path: Path) -> None:
    odd = {"sql": "'; DROP TABLE events; --", "nul": "a\x00b", "emoji": "📄", "big": 2**70}
    async with running(SqliteLog(db_path)) as engine:
        await engine.bus.send(create("j", params=odd))
        job = await engine.log.get_job("j")
        assert job is not None and job.params == odd
        assert msgspec.json.encode(job.params) == msgspec.json.encode(odd)


@pytest.mark.parametrize("path", ["../up", "/abs", "a/../../b", "a//b", "a\x00b", "a\\b"])
async def test_an_asset_path_cannot_leave_the_asset_root(db_path: Path, path: str) -> None:
    from jobledger.core import JobStart

    async with running(SqliteLog(db_path)) as engine:
        await engine.bus.send(create("j"))
        await engine.bus.send(JobStart(job_id="j", worker="w", expected_version=1))
        head = await engine.log.head()
        with pytest.raises(ValidationError) as refused:
            await engine.bus.send(
                AssetCreate(
                    asset_id="a", job_id="j", attempt=1, asset_type="file",
                    storage_path=path, size=1,
                )
            )  # fmt: skip
        assert refused.value.field == "storage_path"
        assert await engine.log.head() == head


# -- issue 13: one user's input never stops another's work -------------------

FAR_RUN_AT = datetime.fromisoformat("9999-12-31T23:59:59-14:00")  # year 10000 in UTC


class Echo(jobledger.JobWorker):
    job_types = ("t",)

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> Any:
        return {"echo": job.params}


async def _legacy_create(log: SqliteLog, job_id: str, **fields: Any) -> None:
    """Append a ``job.created`` as an older jobledger, which checked less,
    could have written it: straight through the log's write transaction."""
    async with log.write() as writer:
        head = await writer.head()
        event = JobCreated(job_id=job_id, job_type="t", params={}, user=User(id="u"), **fields)
        data = encode_event(event)
        unsigned = Envelope(
            seq=head.seq + 1, event_id=f"evt_{job_id}", stream=job_id, version=1,
            type="job.created", time=NOW, actor="u", correlation_id=None,
            causation_id=None, data=event, hash="",
        )  # fmt: skip
        env = msgspec.structs.replace(unsigned, hash=chain_hash(head.hash, unsigned, data))
        job = evolve_job(None, env)
        assert job is not None
        await writer.append([Record(env, data)], Changes(jobs=[job]))


async def test_a_far_future_run_at_is_refused_at_submit(db_path: Path) -> None:
    async with jobledger.open(db_path) as ledger:
        for run_at in (FAR_RUN_AT, datetime(9999, 12, 31, tzinfo=UTC),
                       datetime.fromisoformat("0001-01-01T00:00:00+14:00")):  # fmt: skip
            with pytest.raises(ValidationError) as refused:
                await ledger.submit("t", {}, run_at=run_at)
            assert refused.value.field == "run_at"
            with pytest.raises(ValidationError) as refused:  # raw, on the bus
                await ledger.send(create("raw", run_at=run_at))
            assert refused.value.field == "run_at"
        assert await ledger.head() == 0
        last = datetime(9999, 12, 30, tzinfo=UTC)
        assert (await ledger.submit("t", {}, run_at=last)).run_at == last


async def test_the_dispatcher_survives_a_far_future_run_at_already_in_the_log(
    db_path: Path,
) -> None:
    """Before, the worker's dispatcher died converting the due time of the
    year-10000 job, and no other job ran again."""
    log = SqliteLog(db_path)
    await log.open()
    await _legacy_create(log, "far", run_at=FAR_RUN_AT)
    await log.close()
    async with jobledger.open(db_path, workers=[Echo()], poll_interval=0.05) as ledger:
        job = await ledger.submit("t", {"n": 1})
        done = await ledger.wait(job.id, timeout=10)
        assert done.status == "completed"
        assert (await ledger.get("far")).status == "pending"
        assert all(w.running for w in ledger.statistics().workers)


@pytest.mark.parametrize(
    ("retry", "field"),
    [
        (RetryPolicy(base_delay=1e300, max_delay=1e308), "retry.base_delay"),
        (RetryPolicy(base_delay=1, max_delay=86_401), "retry.max_delay"),
        (RetryPolicy(base_delay=1, factor=1e300), "retry.factor"),
        (RetryPolicy(base_delay=float("nan")), "retry.base_delay"),
        (RetryPolicy(max_delay=float("inf")), "retry.max_delay"),
        (RetryPolicy(base_delay=-1), "retry.base_delay"),
        (RetryPolicy(factor=0.5), "retry.factor"),
    ],
)
async def test_retry_delays_are_bounded_at_submit(
    db_path: Path, retry: RetryPolicy, field: str
) -> None:
    async with jobledger.open(db_path) as ledger:
        with pytest.raises(ValidationError) as refused:
            await ledger.submit("t", {}, max_retries=3, retry=retry)
        assert refused.value.field == field
        assert await ledger.head() == 0


@pytest.mark.parametrize("max_retries", [2**70, 10_001, -1])
async def test_max_retries_is_bounded(db_path: Path, max_retries: int) -> None:
    async with jobledger.open(db_path) as ledger:
        with pytest.raises(ValidationError) as refused:
            await ledger.submit("t", {}, max_retries=max_retries)
        assert refused.value.field == "max_retries"
        assert await ledger.head() == 0


async def test_a_huge_retry_policy_already_in_the_log_never_overflows(db_path: Path) -> None:
    """Before, deciding the failure raised OverflowError: the job stayed
    running for ever and the sweeper logged an error on every pass."""
    log = SqliteLog(db_path)
    await log.open()
    huge = RetryPolicy(base_delay=1e300, max_delay=1e308, factor=1e300, jitter=False)
    await _legacy_create(log, "huge", max_retries=5, retry=huge)
    await log.close()
    async with jobledger.open(db_path) as ledger:
        for job_id in ("huge",):
            await ledger.send(JobStart(job_id=job_id, worker="w", expected_version=1))
            await ledger.send(JobFail(job_id=job_id, attempt=1, error="boom"))
            job = await ledger.get(job_id)
            assert job.status == "pending" and job.run_at is not None
            assert job.run_at - NOW <= timedelta(days=1) + (job.updated_at - NOW)
    assert retry_delay(huge, 3, "j") == MAX_RETRY_DELAY
    for policy in (RetryPolicy(base_delay=float("nan")), RetryPolicy(max_delay=float("nan"))):
        assert 0.0 <= retry_delay(policy, 1, "j") <= MAX_RETRY_DELAY


@pytest.mark.parametrize(
    "timeout", [float("nan"), float("-inf"), float("inf"), 0, -1, 30 * 86_400 + 1, True, "5"]
)
async def test_a_timeout_must_be_finite_positive_and_at_most_30_days(
    db_path: Path, timeout: Any
) -> None:
    """Before, NaN and -inf were stored as "no timeout"."""
    async with jobledger.open(db_path) as ledger:
        with pytest.raises(ValidationError) as refused:
            await ledger.submit("t", {}, timeout=timeout)
        assert refused.value.field == "timeout"
        with pytest.raises(ValidationError) as refused:
            await ledger.submit("t", {}, timeout=timedelta(days=31))
        assert refused.value.field == "timeout"
        assert await ledger.head() == 0
        assert (await ledger.submit("t", {}, timeout=timedelta(days=30))).timeout == 30 * 86_400


async def test_a_nan_progress_is_refused_not_stored_as_none(db_path: Path) -> None:
    async with jobledger.open(db_path) as ledger:
        job = await ledger.submit("t", {})
        await ledger.send(JobStart(job_id=job.id, worker="w", expected_version=1))
        head = await ledger.head()
        with pytest.raises(ValidationError) as refused:
            await ledger.send(JobProgress(job_id=job.id, attempt=1, percent=float("nan")))
        assert refused.value.field == "percent"
        assert await ledger.head() == head


@pytest.mark.parametrize("timeout", [-1, -0.001, float("nan"), float("inf"), "1", True])
async def test_a_bad_wait_timeout_is_refused(db_path: Path, timeout: Any) -> None:
    async with jobledger.open(db_path) as ledger:
        job = await ledger.submit("t", {})
        with pytest.raises(ValidationError) as refused:
            await ledger.wait(job.id, timeout=timeout)
        assert refused.value.field == "timeout"


async def test_wait_with_timeout_zero_returns_a_job_already_done(db_path: Path) -> None:
    """Before, on a reopened file the read itself ran out of the zero timeout."""
    async with jobledger.open(db_path) as ledger:
        job = await ledger.submit("t", {})
        await ledger.send(JobStart(job_id=job.id, worker="w", expected_version=1))
        await ledger.send(JobComplete(job_id=job.id, attempt=1))
    async with jobledger.open(db_path) as ledger:
        assert (await ledger.wait(job.id, timeout=0)).status == "completed"
        other = await ledger.submit("t", {})
        with pytest.raises(jobledger.WaitTimeout):
            await ledger.wait(other.id, timeout=0)


class Inner(msgspec.Struct):
    x: Any = None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (Inner(x={1, 2}), "params.x"),
        (Inner(x=b"ab"), "params.x"),
        (Inner(x=[float("nan")]), "params.x[0]"),
        ({"a": Inner(x=frozenset())}, "params.a.x"),
    ],
)
async def test_struct_params_are_json_values_or_refused(
    db_path: Path, params: Any, field: str
) -> None:
    """Before, sets became lists and bytes base64 text, silently."""
    async with jobledger.open(db_path) as ledger:
        with pytest.raises(ValidationError) as refused:
            await ledger.submit("t", params)
        assert refused.value.field == field
        assert await ledger.head() == 0


async def test_deeply_nested_struct_params_are_refused(db_path: Path) -> None:
    """Before, a Struct 10,000 deep raised RecursionError from deep inside."""
    deep = Inner()
    for _ in range(10_000):
        deep = Inner(x=deep)
    async with jobledger.open(db_path) as ledger:
        with pytest.raises(ValidationError) as refused:
            await ledger.submit("t", deep)
        assert refused.value.field is not None and refused.value.field.startswith("params.x.x")
        assert await ledger.head() == 0
        shallow = Inner(x=Inner(x=[1, "a", None]))
        assert (await ledger.submit("t", shallow)).params == {"x": {"x": [1, "a", None]}}


async def _register(ledger: jobledger.Ledger, job_type: JobType) -> None:
    ledger.register(job_type)


BAD_CALLS: list[tuple[str, Callable[[jobledger.Ledger, str], Awaitable[Any]], str]] = [
    ("wait until not a status", lambda lg, j: lg.wait(j, until=["nope"], timeout=1), "until"),
    ("wait until not iterable", lambda lg, j: lg.wait(j, until=5, timeout=1), "until"),
    ("wait job id not text", lambda lg, j: lg.wait(5, timeout=1), "job_id"),
    ("list cursor 2**70", lambda lg, j: lg.list(cursor=2**70), "cursor"),
    ("list cursor text", lambda lg, j: lg.list(cursor="5"), "cursor"),
    ("list cursor negative", lambda lg, j: lg.list(cursor=-1), "cursor"),
    ("list limit text", lambda lg, j: lg.list(limit="5"), "limit"),
    ("list limit bool", lambda lg, j: lg.list(limit=True), "limit"),
    ("list job type", lambda lg, j: lg.list(job_type=5), "job_type"),
    ("list status", lambda lg, j: lg.list(status=["pending"]), "status"),
    ("cleanup huge age", lambda lg, j: lg.cleanup(timedelta(days=999_999_999)), "older_than"),
    ("cleanup negative age", lambda lg, j: lg.cleanup(timedelta(days=-1)), "older_than"),
    ("cleanup int", lambda lg, j: lg.cleanup(5), "older_than"),
    ("cleanup naive", lambda lg, j: lg.cleanup(datetime(2026, 1, 1)), "older_than"),
    ("cleanup batch", lambda lg, j: lg.cleanup(timedelta(days=1), batch=0), "batch"),
    ("verify digest text", lambda lg, j: lg.verify(digest="1:abc"), "digest"),
    ("verify digest int", lambda lg, j: lg.verify(digest=5), "digest"),
    ("resources limit text", lambda lg, j: lg.resources(limit="5"), "limit"),
    ("resources after 2**70", lambda lg, j: lg.resources(after_seq=2**70), "after_seq"),
    ("replay until_seq text", lambda lg, j: lg.replay(until_seq="5"), "until_seq"),
    ("replay until_seq 2**70", lambda lg, j: lg.replay(until_seq=2**70), "until_seq"),
    ("events after 2**70", lambda lg, j: lg.events(after=2**70).__anext__(), "after"),
    ("events buffer", lambda lg, j: lg.events(buffer=0).__anext__(), "buffer"),
    ("events types", lambda lg, j: lg.events(types=5).__anext__(), "types"),
    ("export after text", lambda lg, j: lg.export_log(after="x").__anext__(), "after"),
    ("get job id", lambda lg, j: lg.get(["x"]), "job_id"),
    ("get long job id", lambda lg, j: lg.get("x" * 10_000), "job_id"),
    ("history job id", lambda lg, j: lg.history(5), "job_id"),
    ("cancel reason", lambda lg, j: lg.cancel(j, reason=5), "reason"),
    ("submit job type list", lambda lg, j: lg.submit(["t"], {}), "job_type"),
    ("submit priority 2**70", lambda lg, j: lg.submit("t", {}, priority=2**70), "priority"),
    ("submit key", lambda lg, j: lg.submit("t", {}, idempotency_key=5), "idempotency_key"),
    ("submit retry", lambda lg, j: lg.submit("t", {}, retry={"base_delay": 1}), "retry"),
    ("mark id", lambda lg, j: lg.mark(5), "mark_id"),
    ("lone surrogate id", lambda lg, j: lg.assets("\ud800"), "job_id"),
    ("events types bytes", lambda lg, j: lg.events(types=[bytearray(b"x")]).__anext__(), "types"),
    ("deep until", lambda lg, j: lg.wait(j, until=[nested(5_000)], timeout=1), "until"),
    ("deep status", lambda lg, j: lg.list(status=nested(5_000)), "status"),
    ("register name", lambda lg, j: _register(lg, JobType(name=["t"])), "job_type"),  # type: ignore[arg-type]
    ("register timeout", lambda lg, j: _register(lg, JobType(name="t", timeout=-1)), "timeout"),
    (
        "mark id not text",
        lambda lg, j: lg.create_mark("doc", note("doc"), mark_id=timedelta(1)),
        "mark_id",
    ),  # type: ignore[arg-type]
    ("marks resource id", lambda lg, j: lg.marks(["r"]), "resource_id"),
]


@pytest.mark.parametrize(("call", "field"), [(c, f) for _, c, f in BAD_CALLS],
                         ids=[n for n, _, _ in BAD_CALLS])  # fmt: skip
async def test_a_bad_argument_gets_a_validation_error_naming_it(
    db_path: Path, call: Callable[[jobledger.Ledger, str], Awaitable[Any]], field: str
) -> None:
    """Before, these raised ValueError, OverflowError, TypeError or
    AttributeError from deep inside."""
    async with jobledger.open(db_path) as ledger:
        job = await ledger.submit("t", {})
        head = await ledger.head()
        with pytest.raises(ValidationError) as refused:
            await call(ledger, job.id)
        assert refused.value.field == field
        assert await ledger.head() == head
        assert (await ledger.submit("t", {})).status == "pending"


async def test_control_racing_a_delete_is_not_found_or_a_transition(db_path: Path) -> None:
    """Before, a cancel, suspend or resume whose job was deleted between its
    command and its read raised a bare AssertionError."""
    kinds = [JobType(name="s", suspendable=True)]
    async with jobledger.open(db_path, job_types=kinds) as ledger:
        outcomes: set[str] = set()
        for action in ("cancel", "suspend", "resume"):
            for _ in range(5):
                job = await ledger.submit("s", {}, user="alice")
                if action == "resume":
                    await ledger.suspend(job.id, user="alice")
                control = getattr(ledger, action)(job.id, user="alice")
                results = await asyncio.gather(
                    control, ledger.delete(job.id, user="alice"), return_exceptions=True
                )
                first = results[0]
                assert isinstance(first, jobledger.Job | NotFound | InvalidTransition), first
                outcomes.add(type(first).__name__)
        assert await ledger.verify()


@pytest.mark.parametrize(
    "user", ["system", "system:sweeper", "worker:w1", User(id="system"), User(id="worker:x"), ""]
)
async def test_reserved_user_ids_are_refused_everywhere(db_path: Path, user: Any) -> None:
    """Before, the user ``system`` saw every job submitted without a user, and
    ``system:sweeper`` could not be told from the engine's own actor."""
    async with jobledger.open(db_path) as ledger:
        anonymous = await ledger.submit("t", {})
        calls = [
            ledger.submit("t", {}, user=user), ledger.list(user=user),
            ledger.get(anonymous.id, user=user), ledger.history(anonymous.id, user=user),
            ledger.cancel(anonymous.id, user=user), ledger.wait(anonymous.id, user=user),
            ledger.assets(anonymous.id, user=user), ledger.delete(anonymous.id, user=user),
        ]  # fmt: skip
        for call in calls:
            with pytest.raises(ValidationError) as refused:
                await call
            assert refused.value.field == "user"
        assert await ledger.head() == 1
        assert [j.id for j in await ledger.list()] == [anonymous.id]
        assert [j.id for j in await ledger.list(user="alice")] == []


@pytest.mark.parametrize("actor", ["system:sweeper", "system:", "worker:w1", "", 7])
async def test_an_application_cannot_act_as_one_of_the_engines_actors(
    db_path: Path, actor: Any
) -> None:
    """The ``actor`` of a mark or resource the application makes is its own
    (``system``) or a user's: never ``system:*`` or ``worker:*``."""
    async with jobledger.open(db_path) as ledger:
        mark = await ledger.create_mark("doc", note("doc"), actor="alice")
        assert mark.created_by == "alice"
        head = await ledger.head()
        calls = [
            ledger.create_mark("doc", note("doc"), actor=actor),
            ledger.update_mark_body(
                mark.id, [BodyAdd(item=TextualBody(value="x", purpose="commenting"))], actor=actor
            ),
            ledger.delete_mark(mark.id, actor=actor),
            ledger.create_resource("a.md", "text", actor=actor),
        ]
        for call in calls:
            with pytest.raises(ValidationError) as refused:
                await call
            assert refused.value.field == "actor"
        assert await ledger.head() == head


def test_the_cli_refuses_a_reserved_user(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jobledger.cli import main

    async def make() -> None:
        async with jobledger.open(db_path) as ledger:
            await ledger.submit("t", {})

    asyncio.run(make())
    for user in ("system", "system:cleanup", "worker:w1"):
        assert main(["list", "--db", str(db_path), "--user", user]) == 2
        assert "--user" in capsys.readouterr().err
    assert main(["list", "--db", str(db_path), "--user", "alice"]) == 0
