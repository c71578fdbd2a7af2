"""Authorization: every public path of the Ledger that reads or controls a
job, found by walking the class (so a new one cannot be forgotten), refuses
another user exactly as it refuses a job that does not exist."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import reactivex
from reactivex import operators as ops

import jobledger
from jobledger import Ledger, NotFound, User

ALICE = User(id="alice", tenant="acme")
BOB = User(id="bob", tenant="acme")
ALICE_ELSEWHERE = User(id="alice", tenant="other")  # the same id in another tenant

# Each path given a job id and a user: it must raise NotFound for a job that is
# not that user's, with the same message as for a missing job.
JobPath = Callable[[Ledger, str, User], Awaitable[Any]]
JOB_PATHS: dict[str, JobPath] = {
    "get": lambda ledger, job_id, user: ledger.get(job_id, user=user),
    "wait": lambda ledger, job_id, user: ledger.wait(job_id, user=user, timeout=5),
    "history": lambda ledger, job_id, user: ledger.history(job_id, user=user),
    "assets": lambda ledger, job_id, user: ledger.assets(job_id, user=user),
    "cancel": lambda ledger, job_id, user: ledger.cancel(job_id, user=user),
    "suspend": lambda ledger, job_id, user: ledger.suspend(job_id, user=user),
    "resume": lambda ledger, job_id, user: ledger.resume(job_id, user=user),
    "retry": lambda ledger, job_id, user: ledger.retry(job_id, user=user),
    "delete": lambda ledger, job_id, user: ledger.delete(job_id, user=user),
}
# Paths that list or stream: with a user, they show only that user's jobs.
SCOPED_PATHS = {"list", "events", "observe"}
# Paths that create: the job belongs to the user given (submit_many: each
# NewJob's own user).
OWNING_PATHS = {"submit", "submit_many"}
# The embedding application's own paths: no user, trusted to see everything
# (docs/architecture.md, decision c). Resources and their marks are the
# application's to guard (docs/marks.md).
APPLICATION_PATHS = {
    "aclose", "cleanup", "digest", "export_log", "head", "import_log", "job_types", "marks",
    "rebuild", "register", "replay", "send", "start", "statistics", "verify", "health",
    "mark", "annotations", "create_mark", "update_mark_body", "delete_mark",
    "create_resource", "resource", "resources", "content",
    "register_queue", "set_capacity", "queues", "wait_closed", "end_grace",
}  # fmt: skip
PROPERTIES = {"bus", "clock", "path"}


def test_every_public_path_is_classified() -> None:
    public = {name for name in dir(Ledger) if not name.startswith("_")}
    classified = set(JOB_PATHS) | SCOPED_PATHS | OWNING_PATHS | APPLICATION_PATHS | PROPERTIES
    assert public == classified, "classify the new public name for authorization"
    for name in set(JOB_PATHS) | SCOPED_PATHS:
        assert "user" in inspect.signature(getattr(Ledger, name)).parameters, name
    for name in APPLICATION_PATHS:
        member = getattr(Ledger, name)
        assert "user" not in inspect.signature(member).parameters, name


@pytest.fixture
async def ledger(db_path: Path) -> Any:
    async with jobledger.open(db_path) as opened:
        yield opened


@pytest.mark.parametrize("path", sorted(JOB_PATHS))
async def test_another_users_job_is_not_found_like_a_missing_one(ledger: Ledger, path: str) -> None:
    job = await ledger.submit("t", {"secret": 1}, user=ALICE)
    head = await ledger.head()
    missing = "job_00000000000000000000000000"
    with pytest.raises(NotFound) as absent:
        await JOB_PATHS[path](ledger, missing, BOB)
    for stranger in (BOB, ALICE_ELSEWHERE):
        with pytest.raises(NotFound) as refused:
            await JOB_PATHS[path](ledger, job.id, stranger)
        assert str(refused.value) == str(absent.value).replace(missing, job.id)
    assert await ledger.head() == head  # nothing was written
    assert (await ledger.get(job.id, user=ALICE)).status == "pending"


async def test_listing_and_streaming_show_only_the_users_jobs(ledger: Ledger) -> None:
    mine = await ledger.submit("t", user=ALICE)
    theirs = await ledger.submit("t", user=BOB)
    elsewhere = await ledger.submit("t", user=ALICE_ELSEWHERE)
    assert [j.id for j in await ledger.list(user=BOB)] == [theirs.id]
    assert [j.id for j in await ledger.list(user=ALICE)] == [mine.id]
    assert {e.stream async for e in ledger.events(user=BOB)} == {theirs.id}
    assert {e.stream async for e in ledger.events(user=ALICE_ELSEWHERE)} == {elsewhere.id}
    # Live, too: bob's subscription never carries alice's events.
    seen: list[str] = []
    done = asyncio.Event()
    bobs = ledger.observe(after=0, user=BOB).pipe(ops.map(lambda env: env.stream))

    def on_next(stream: str) -> None:
        seen.append(stream)
        if len(seen) == 2:
            done.set()

    disposable = bobs.subscribe(on_next)
    await ledger.cancel(mine.id, user=ALICE)
    await ledger.cancel(theirs.id, user=BOB)
    await asyncio.wait_for(done.wait(), 10)
    disposable.dispose()
    assert seen == [theirs.id, theirs.id]
    assert isinstance(bobs, reactivex.Observable)
