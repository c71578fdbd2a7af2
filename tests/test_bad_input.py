"""Bad input (issue 6, item 5): malformed commands on the bus get a typed
error, write nothing, and the next valid command succeeds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobledger.core import (
    COMMAND_TYPES,
    MAX_COMMAND_BYTES,
    MAX_DEPTH,
    AssetCreate,
    BodyAdd,
    Command,
    JobCreate,
    JobledgerError,
    TextualBody,
    User,
    ValidationError,
)
from jobledger.store import MemoryLog, SqliteLog

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
    "max_recoveries": 3, "holder": None,
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
