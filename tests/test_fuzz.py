"""The fuzz test (issue 13): every public method of ``Ledger`` and every
command type sent raw on the bus, called well-typed with one argument (or one
field) changed to an extreme: huge, tiny, NaN, infinities, far and naive
dates, deep nesting, wrong types, control characters, empty and very long
strings, reserved user ids. Well-typed extremes are drawn most often, so the
inputs get past the first type check.

Each call is answered by a typed error of the tree (``InternalError`` counts
as a failure, not a refusal) with the log's head unchanged, or, where the
changed call is still valid, it succeeds. After each, the ledger still serves
and the unchanged (valid) call succeeds.

A fixed seed: 50 examples per method and per command type in the suite;
``JOBLEDGER_FUZZ=full`` runs 250 each (more than 10,000 in all), and
``JOBLEDGER_FUZZ_REPORT=PATH`` writes the figures as JSON::

    JOBLEDGER_FUZZ=full JOBLEDGER_FUZZ_REPORT=fuzz.json .venv/bin/pytest tests/test_fuzz.py -q

Adding a command type or an argument is one line in ``COMMANDS`` or ``CALLS``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import reprlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
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
    AssetCreate,
    BodyAdd,
    Command,
    InternalError,
    JobCancel,
    JobComplete,
    JobCreate,
    JobDelete,
    JobExpire,
    JobFail,
    JobHeartbeat,
    JobledgerError,
    JobPartial,
    JobProgress,
    JobRelease,
    JobResume,
    JobRetry,
    JobSkip,
    JobStart,
    JobSuspend,
    ManualClock,
    MarkCreate,
    MarkDelete,
    MarkUpdateBody,
    QueueConfigure,
    ResourceCreate,
    RetryPolicy,
    TextualBody,
    User,
    digest_of,
    this_holder,
)
from jobledger.store import Head

from .conftest import note

FULL = os.environ.get("JOBLEDGER_FUZZ") == "full"
EXAMPLES = 250 if FULL else 50
REPORT = os.environ.get("JOBLEDGER_FUZZ_REPORT")

# -- the extremes ------------------------------------------------------------


class Box(msgspec.Struct):
    inner: Any = None


def _deep_dict(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def _deep_struct(depth: int) -> Box:
    value = Box()
    for _ in range(depth):
        value = Box(inner=value)
    return value


HUGE_INTS = [0, -1, 1, 2**31, -(2**31) - 1, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), 2**70, -(2**70)]
ODD_FLOATS = [float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 5e-324, -0.0, 0.0, 1e-9]
FAR_DATES = [
    datetime.fromisoformat("9999-12-31T23:59:59-14:00"),  # year 10000 in UTC
    datetime.fromisoformat("0001-01-01T00:00:00+14:00"),  # year 0 in UTC
    datetime.max.replace(tzinfo=UTC),
    datetime.min.replace(tzinfo=UTC),
    datetime(9999, 12, 30, tzinfo=UTC),
    datetime(2026, 1, 1),  # naive
    datetime(1970, 1, 1, tzinfo=UTC),
]
ODD_DELTAS = [timedelta.max, timedelta.min, timedelta(0), timedelta(seconds=-1), timedelta(days=31)]
ODD_TEXT = [
    "", " ", "x" * 100_000, "\x00", "a\x00b", "\x1b[2J\x1b]0;owned\x07", "\u202egnp.exe", "\ud800",
    "[bold]x[/bold]", "'; DROP TABLE events; --", "../../etc/passwd", "system", "system:sweeper",
    "worker:w1", "📄" * 1000, "\r\n", "%s%n", "1:abc", "nan", "-1", "9" * 400,
]  # fmt: skip
WRONG_TYPES = [
    None, True, False, object(), b"bytes", bytearray(b"x"), {1, 2}, frozenset(), (), [], {},
    {1: "int key"}, [float("nan")], _deep_dict(10_000), _deep_struct(10_000), Box(inner={1}),
    User(id="system"), User(id=""), RetryPolicy(base_delay=1e300), jobledger.JobStatus.COMPLETED,
    Head(1, "abc"), Head(2**70, "0" * 64), lambda: None, Ellipsis, 1j,
]  # fmt: skip
GENERIC = [*HUGE_INTS, *ODD_FLOATS, *FAR_DATES, *ODD_DELTAS, *ODD_TEXT, *WRONG_TYPES]

_text = st.text(st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "L", "N", "P"]))
_ints = st.integers(-(2**80), 2**80)


def extremes_like(value: Any) -> st.SearchStrategy[Any]:
    """Extremes of ``value``'s own type (drawn most often), else of any type."""
    generic = st.sampled_from(GENERIC)
    typed: st.SearchStrategy[Any]
    if isinstance(value, bool):
        typed = st.sampled_from([0, 1, 2, None, "true"])
    elif isinstance(value, int):
        typed = st.one_of(st.sampled_from(HUGE_INTS), _ints)
    elif isinstance(value, float):
        typed = st.one_of(st.sampled_from(ODD_FLOATS), st.floats())
    elif isinstance(value, datetime):
        typed = st.one_of(st.sampled_from(FAR_DATES), st.datetimes())
    elif isinstance(value, timedelta):
        typed = st.one_of(st.sampled_from(ODD_DELTAS), st.timedeltas())
    elif isinstance(value, str):
        typed = st.one_of(st.sampled_from(ODD_TEXT), _text, st.sampled_from(["system", value * 50]))
    elif isinstance(value, msgspec.Struct) and value.__struct_fields__:
        typed = st.sampled_from(value.__struct_fields__).flatmap(
            lambda name: extremes_like(getattr(value, name)).map(
                lambda new: _replace(value, name, new)
            )
        )
    elif isinstance(value, dict):
        typed = st.one_of(
            st.sampled_from([_deep_dict(33), _deep_dict(10_000), {"x": float("nan")}]),
            st.dictionaries(_text, st.sampled_from(GENERIC), max_size=3),
            st.just({"x": "y" * (1 << 20)}),
        )
    elif isinstance(value, list | tuple):
        typed = st.one_of(st.just([]), st.lists(st.sampled_from(GENERIC), max_size=3))
    else:
        return generic
    return st.one_of(typed, typed, generic)


def _show(value: Any, limit: int = 200) -> str:
    """A short repr, also of values too deep to repr."""
    try:
        return (
            reprlib.repr(value)[:limit]
            if not isinstance(value, msgspec.Struct)
            else (f"{type(value).__name__}({', '.join(value.__struct_fields__)})")
        )
    except RecursionError:
        return f"<{type(value).__name__} too deep to show>"


def _replace(value: msgspec.Struct, name: str, new: Any) -> Any:
    """``value`` with field ``name`` set to ``new`` (unchecked, as Python allows)."""
    fields = {f: getattr(value, f) for f in value.__struct_fields__}
    fields[name] = new
    return type(value)(**fields)


# -- what is being called ----------------------------------------------------


@dataclass
class Fixture:
    """A ledger on a real SQLite file, on a manual clock, and what a base call needs."""

    ledger: jobledger.Ledger
    clock: ManualClock
    counter: Iterator[int] = field(default_factory=lambda: iter(range(1, 10**9)))

    def fresh(self, prefix: str) -> str:
        return f"{prefix}{next(self.counter)}"

    async def job(self, status: str = "pending", **kw: Any) -> jobledger.Job:
        """A fresh job of alice's, brought to ``status``."""
        job = await self.ledger.submit("t", {"n": 1}, user="alice", **kw)
        if status in ("running", "completed"):
            await self.ledger.send(JobStart(job_id=job.id, worker="w", expected_version=1))
        if status == "completed":
            await self.ledger.send(JobComplete(job_id=job.id, attempt=1))
        if status == "suspended":
            await self.ledger.suspend(job.id, user="alice")
        if status == "cancelled":
            await self.ledger.cancel(job.id, user="alice")
        return await self.ledger.get(job.id)

    async def mark(self) -> str:
        mark = await self.ledger.create_mark("doc", note("doc"))
        return mark.id


Args = dict[str, Any]
Builder = Callable[[Fixture], Awaitable[Args]]


async def _none(fx: Fixture) -> Args:
    return {}


@dataclass
class Call:
    """A public Ledger method: its well-typed arguments (``build``), how the
    call's outcome is awaited (``run``), and whether those arguments are
    valid by themselves (then the unchanged call must succeed)."""

    build: Builder
    run: Callable[[jobledger.Ledger, Args], Awaitable[Any]] | None = None
    valid: bool = True


async def _drain(agen: Any, limit: int = 10_000) -> int:
    count = 0
    async for _ in agen:
        count += 1
        if count >= limit:
            break
    await agen.aclose()
    return count


async def _observe(ledger: jobledger.Ledger, args: Args) -> None:
    """Subscribe, and take the first envelope or error (or a short quiet)."""
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def settle(value: Any) -> None:
        if not got.done():
            got.set_result(value)

    subscription = ledger.observe(**args).subscribe(
        on_next=settle, on_error=settle, on_completed=lambda: settle(None)
    )
    try:
        result = await asyncio.wait_for(asyncio.shield(got), 0.05)
    except TimeoutError:
        result = None
    finally:
        subscription.dispose()
    if isinstance(result, BaseException):
        raise result


async def _job_id(fx: Fixture, status: str = "pending") -> Args:
    return {"job_id": (await fx.job(status)).id, "user": "alice"}


def _method(name: str) -> Callable[[jobledger.Ledger, Args], Awaitable[Any]]:
    async def run(ledger: jobledger.Ledger, args: Args) -> Any:
        result = getattr(ledger, name)(**args)
        if inspect.isasyncgen(result):
            return await _drain(result)
        if inspect.isawaitable(result):
            return await result
        return result

    return run


async def _submit(fx: Fixture) -> Args:
    return {
        "job_type": "t", "params": {"text": "hello", "n": 1}, "user": "alice",
        "idempotency_key": fx.fresh("key"), "priority": 5,
        "run_at": fx.clock.now() + timedelta(hours=1), "max_retries": 2, "max_recoveries": 1,
        "timeout": 30.0,
        "retry": RetryPolicy(base_delay=1.0, max_delay=60.0, factor=2.0),
        "correlation_id": fx.fresh("corr"),
    }  # fmt: skip


async def _events(fx: Fixture) -> Args:
    return {"after": 0, "job_id": (await fx.job()).id, "job_type": "t",
            "types": ["job.created"], "user": "alice", "buffer": 100}  # fmt: skip


async def _observe_args(fx: Fixture) -> Args:
    return {"after": 0, "job_id": (await fx.job()).id, "job_type": "t",
            "types": ["job.created"], "user": "alice"}  # fmt: skip


async def _create_mark(fx: Fixture) -> Args:
    return {"resource_id": "doc", "annotation": note("doc"), "actor": "app",
            "mark_id": fx.fresh("mark")}  # fmt: skip


async def _update_mark(fx: Fixture) -> Args:
    ops = [BodyAdd(item=TextualBody(value="more", purpose="commenting"))]
    return {"mark_id": await fx.mark(), "operations": ops, "actor": "app"}


async def _create_resource(fx: Fixture) -> Args:
    return {"name": "a.md", "content": "# hello", "media_type": "text/markdown",
            "actor": "app", "resource_id": fx.fresh("res")}  # fmt: skip


async def _cleanup(fx: Fixture) -> Args:
    await fx.job("completed")
    return {"older_than": timedelta(days=1), "batch": 10}


async def _verify(fx: Fixture) -> Args:
    return {"digest": await fx.ledger.digest()}


async def _replay(fx: Fixture) -> Args:
    return {"until_seq": await fx.ledger.head(), "until": fx.clock.now()}


async def _wait(fx: Fixture) -> Args:
    return {**(await _job_id(fx, "completed")), "timeout": 5.0, "until": ["completed"]}


async def _list(fx: Fixture) -> Args:
    await fx.job()
    return {"user": "alice", "status": "pending", "job_type": "t", "limit": 5, "cursor": None}


async def _import(fx: Fixture) -> Args:
    lines = [line async for line in fx.ledger.export_log()]
    return {"lines": lines}


CALLS: dict[str, Call] = {
    "submit": Call(_submit),
    # submit_many's items carry submit's arguments: each is fuzzed inside a NewJob.
    "submit_many": Call(
        _submit, run=lambda ledger, args: ledger.submit_many([jobledger.NewJob(**args)])
    ),
    "get": Call(_job_id),
    "list": Call(_list),
    "history": Call(_job_id),
    "assets": Call(_job_id),
    "wait": Call(_wait),
    "cancel": Call(lambda fx: _job_id(fx)),
    "suspend": Call(lambda fx: _job_id(fx)),
    "resume": Call(lambda fx: _job_id(fx, "suspended")),
    "retry": Call(lambda fx: _job_id(fx, "cancelled")),
    "delete": Call(_job_id),
    "cleanup": Call(_cleanup),
    "events": Call(_events),
    "observe": Call(_observe_args, run=_observe),
    "replay": Call(_replay),
    "verify": Call(_verify),
    "digest": Call(_none),
    "head": Call(_none),
    "rebuild": Call(_none),
    "statistics": Call(_none),
    "health": Call(_none),
    "job_types": Call(_none),
    "register": Call(lambda fx: _const({"job_type": jobledger.JobType(name="t2", max_retries=1)})),
    "export_log": Call(lambda fx: _const({"after": 0})),
    "import_log": Call(_import, valid=False),  # the log is not empty: always refused
    "send": Call(lambda fx: _const({"command": JobCreate(
        job_id=fx.fresh("sent"), job_type="t", user=User(id="alice"), actor="alice")})),
    "marks": Call(lambda fx: _const({"resource_id": "doc"})),
    "mark": Call(lambda fx: _mark_id(fx)),
    "annotations": Call(lambda fx: _const({"resource_id": "doc", "base_iri": "https://kb.example/"})),
    "create_mark": Call(_create_mark),
    "update_mark_body": Call(_update_mark),
    "delete_mark": Call(lambda fx: _mark_id(fx)),
    "create_resource": Call(_create_resource),
    "resource": Call(lambda fx: _const({"resource_id": "doc"})),
    "resources": Call(lambda fx: _const({"after_seq": 0, "limit": 5})),
    "content": Call(lambda fx: _const({"resource_id": "doc"})),
    "register_queue": Call(lambda fx: _const({"name": fx.fresh("queue"), "capacity": 2,
                                               "actor": "ops"})),
    "set_capacity": Call(lambda fx: _const({"name": "q", "capacity": 3, "actor": "ops"})),
    "queues": Call(_none),
}  # fmt: skip
"""Every public method of Ledger, with well-typed arguments."""

# opening and closing: not calls on a serving ledger
LIFECYCLE = {"start", "aclose", "wait_closed", "end_grace"}


async def _const(args: Args) -> Args:
    return args


async def _mark_id(fx: Fixture) -> Args:
    return {"mark_id": await fx.mark()}


# -- the commands on the bus -------------------------------------------------


async def _running(fx: Fixture, **kw: Any) -> str:
    return (await fx.job("running", **kw)).id


def _text_body() -> list[Any]:
    return [BodyAdd(item=TextualBody(value="more", purpose="commenting"))]


COMMANDS: dict[str, Callable[[Fixture], Awaitable[Command]]] = {
    "job:create": lambda fx: _cmd(JobCreate(
        job_id=fx.fresh("job"), job_type="t", params={"a": [1, "b"]}, user=User(id="alice"),
        priority=1, run_at=datetime(2030, 1, 1, tzinfo=UTC), max_retries=3, max_recoveries=2,
        timeout=60.0,
        idempotency_key=fx.fresh("k"), queue="q", suspendable=True,
        retry=RetryPolicy(base_delay=1, max_delay=10), actor="alice",
        correlation_id=fx.fresh("c"), causation_id=fx.fresh("c"))),
    "job:start": lambda fx: _with_job(fx, "pending", lambda j: JobStart(
        job_id=j, worker="w", expected_version=1, lease_seconds=30.0, actor="worker:w",
        holder=this_holder())),
    "job:progress": lambda fx: _with_job(fx, "running", lambda j: JobProgress(
        job_id=j, attempt=1, percent=50.0, stage="s", message="m", processed=1, total=2,
        checkpoint={"at": 1}, actor="worker:w")),
    "job:heartbeat": lambda fx: _with_job(fx, "running", lambda j: JobHeartbeat(
        job_id=j, attempt=1, lease_seconds=30.0)),
    "job:complete": lambda fx: _with_job(fx, "running", lambda j: JobComplete(
        job_id=j, attempt=1, result={"ok": True})),
    "job:fail": lambda fx: _with_job(fx, "running", lambda j: JobFail(
        job_id=j, attempt=1, error="boom", error_type="E", retryable=True, timed_out=False)),
    "job:partial": lambda fx: _with_job(fx, "running", lambda j: JobPartial(
        job_id=j, attempt=1, result={"ok": 1}, error="half")),
    "job:skip": lambda fx: _with_job(fx, "running", lambda j: JobSkip(
        job_id=j, attempt=1, reason="n/a")),
    "job:cancel": lambda fx: _with_job(fx, "pending", lambda j: JobCancel(
        job_id=j, reason="no longer needed", actor="alice")),
    "job:suspend": lambda fx: _with_job(fx, "pending", lambda j: JobSuspend(job_id=j)),
    "job:resume": lambda fx: _with_job(fx, "suspended", lambda j: JobResume(job_id=j)),
    "job:retry": lambda fx: _with_job(fx, "cancelled", lambda j: JobRetry(job_id=j, reason="r")),
    "job:delete": lambda fx: _with_job(fx, "pending", lambda j: JobDelete(job_id=j)),
    "job:expire": lambda fx: _expired(fx),
    "job:release": lambda fx: _with_job(fx, "running", lambda j: JobRelease(
        job_id=j, attempt=1, reason="shutting down", actor="worker:w")),
    "asset:create": lambda fx: _with_job(fx, "running", lambda j: AssetCreate(
        asset_id=fx.fresh("asset"), job_id=j, attempt=1, asset_type="image",
        url="https://example.org/a.png", storage_path="thumbs/a.png", size=10)),
    "mark:create": lambda fx: _cmd(MarkCreate(
        mark_id=fx.fresh("mark"), resource_id="doc", annotation=note("doc"))),
    "mark:delete": lambda fx: _with_mark(fx, lambda m: MarkDelete(mark_id=m)),
    "mark:update-body": lambda fx: _with_mark(fx, lambda m: MarkUpdateBody(
        mark_id=m, operations=_text_body())),
    "resource:create": lambda fx: _cmd(ResourceCreate(
        resource_id=fx.fresh("res"), name="b.md", media_type="text/markdown",
        digest=DOC_DIGEST, size=len(DOC))),
    "queue:configure": lambda fx: _cmd(QueueConfigure(queue=fx.fresh("queue"), capacity=2)),
}  # fmt: skip
"""Every command type, as a valid command on the fixture's state."""

DOC = b"# A document\n\nSome text to mark.\n"
DOC_DIGEST = digest_of(DOC)


async def _cmd(command: Command) -> Command:
    return command


async def _with_job(fx: Fixture, status: str, make: Callable[[str], Command]) -> Command:
    return make((await fx.job(status)).id)


async def _with_mark(fx: Fixture, make: Callable[[str], Command]) -> Command:
    return make(await fx.mark())


async def _expired(fx: Fixture) -> Command:
    job_id = await _running(fx)
    fx.clock.set(fx.clock.now() + timedelta(seconds=61))  # past the lease (wall clock only)
    return JobExpire(job_id=job_id, attempt=1, reason="lease")


# -- the property -------------------------------------------------------------

FIGURES: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    if REPORT:
        Path(REPORT).write_text(json.dumps(dict(sorted(FIGURES.items())), indent=2) + "\n")


@dataclass
class Outcome:
    refused: JobledgerError | None = None


async def _attempt(ledger: jobledger.Ledger, act: Awaitable[Any], what: str) -> Outcome:
    """Run one changed call: a typed refusal writes nothing; success is fine;
    anything else fails the test."""
    head = await ledger.head()
    FIGURES["inputs"] += 1
    try:
        async with asyncio.timeout(30):
            await act
    except InternalError as exc:
        raise AssertionError(f"{what}: InternalError (a crash inside): {exc!r}") from exc
    except JobledgerError as exc:
        FIGURES[f"refused:{type(exc).__name__}"] += 1
        refused: JobledgerError | None = exc
    except Exception as exc:
        raise AssertionError(f"{what}: untyped {type(exc).__name__}: {exc!r}") from exc
    else:
        FIGURES["accepted"] += 1
        return Outcome()
    written = await ledger.head() - head
    FIGURES["events written by refusals"] += written
    if written:
        raise AssertionError(f"{what}: refused with {refused!r} but wrote {written} events")
    return Outcome(refused)


SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def fixture_runner(tmp_path: Path) -> Iterator[tuple[asyncio.Runner, Fixture]]:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    with asyncio.Runner() as runner:
        opened = jobledger.open(
            tmp_path / "fuzz.db", clock=clock, synchronous="NORMAL", sweep_interval=10**7,
            job_types=[jobledger.JobType(name="t", suspendable=True)],
        )  # fmt: skip
        ledger = runner.run(opened.__aenter__())
        runner.run(ledger.create_resource("doc.md", DOC, resource_id="doc"))
        try:
            yield runner, Fixture(ledger, clock)
        finally:
            runner.run(opened.__aexit__(None, None, None))


def test_every_public_method_and_command_type_is_fuzzed() -> None:
    public = {
        name
        for name, _ in inspect.getmembers(jobledger.Ledger)
        if not name.startswith("_") and not isinstance(getattr(jobledger.Ledger, name), property)
    }
    assert public - LIFECYCLE == set(CALLS)
    assert set(COMMAND_TYPES) == set(COMMANDS)


@pytest.mark.parametrize("method", sorted(CALLS))
def test_a_changed_call_is_refused_typed_or_succeeds(
    method: str, fixture_runner: tuple[asyncio.Runner, Fixture]
) -> None:
    runner, fx = fixture_runner
    entry = CALLS[method]
    run = entry.run or _method(method)
    FIGURES[f"method:{method}"] += 0

    @SETTINGS
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        async def one() -> None:
            args = await entry.build(fx)
            FIGURES[f"method:{method}"] += 1
            if args:
                name = data.draw(st.sampled_from(sorted(args)), label="argument")
                value = data.draw(extremes_like(args[name]), label="value")
                what = f"{method}({name}={_show(value)})"
                await _attempt(fx.ledger, run(fx.ledger, {**args, name: value}), what)
            else:  # it takes no argument: it must simply work, whatever came before
                await run(fx.ledger, args)
            # Still serving: the unchanged call (with fresh state) is fine.
            valid = await entry.build(fx)
            if entry.valid:
                await run(fx.ledger, valid)
            await fx.ledger.submit("t", {"after": True})

        runner.run(one())

    fuzz()


@pytest.mark.parametrize("tag", sorted(COMMANDS))
def test_a_changed_command_is_refused_typed_or_succeeds(
    tag: str, fixture_runner: tuple[asyncio.Runner, Fixture]
) -> None:
    runner, fx = fixture_runner
    FIGURES[f"command:{tag}"] += 0

    @SETTINGS
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        async def one() -> None:
            command = await COMMANDS[tag](fx)
            name = data.draw(st.sampled_from(command.__struct_fields__), label="field")
            value = data.draw(extremes_like(getattr(command, name)), label="value")
            changed = _replace(command, name, value)
            FIGURES[f"command:{tag}"] += 1
            await _attempt(fx.ledger, fx.ledger.bus.send(changed), f"{tag} {name}={_show(value)}")
            # Still serving: a valid command of the same type is fine.
            await fx.ledger.bus.send(await COMMANDS[tag](fx))

        runner.run(one())

    fuzz()
