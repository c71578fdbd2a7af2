"""submit_many: many jobs in one batch and one commit, each as if submitted
alone; on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import jobledger
from jobledger import NewJob


@pytest.fixture(params=["memory://", "sqlite-file", "postgresql"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite-file":
        yield str(tmp_path / "many.db")
    elif request.param == "postgresql":
        schemas = request.getfixturevalue("pg_schemas")
        yield f"{schemas.url}?schema={schemas.new()}"
    else:
        yield request.param


from .postgres import pg_schemas, postgres_url  # noqa: E402

__all__ = ["pg_schemas", "postgres_url"]


async def test_many_jobs_are_one_batch_and_one_commit_in_order(url: str) -> None:
    async with jobledger.open(url) as ledger:
        before = ledger.statistics().stower.batches
        jobs = await ledger.submit_many(
            [NewJob("report", {"i": i}, priority=i % 3) for i in range(500)]
        )
        assert ledger.statistics().stower.batches - before == 1
        assert [j.params for j in jobs] == [{"i": i} for i in range(500)]
        assert {j.status for j in jobs} == {"pending"}
        assert [j.created_seq for j in jobs] == sorted(j.created_seq for j in jobs)
        assert await ledger.head() == 500
        assert (await ledger.get(jobs[-1].id)).priority == 499 % 3
        assert (await ledger.verify()).ok


async def test_each_job_keeps_its_own_idempotency_key(url: str) -> None:
    async with jobledger.open(url) as ledger:
        first = await ledger.submit("report", {"n": 0}, idempotency_key="k1")
        again = await ledger.submit_many(
            [
                NewJob("report", {"n": 1}, idempotency_key="k1"),  # held: the same job back
                NewJob("report", {"n": 2}, idempotency_key="k2"),
                NewJob("report", {"n": 3}, idempotency_key="k2", user="bob"),  # bob's own k2
            ]
        )
        assert again[0].id == first.id and again[0].params == {"n": 0}
        assert again[1].id != again[2].id
        assert (again[1].user.id, again[2].user.id) == ("system", "bob")
        assert await ledger.head() == 3


@pytest.mark.parametrize(
    ("jobs", "field"),
    [
        ([NewJob("ok"), NewJob("bad", {"x": float("nan")})], "jobs[1].params.x"),
        ([NewJob("ok"), NewJob(123)], "jobs[1].job_type"),  # type: ignore[arg-type]
        ([NewJob("ok"), {"job_type": "x"}], "jobs[1]"),
        ([NewJob("ok", run_at="tomorrow")], "jobs[0].run_at"),  # type: ignore[arg-type]
        ("report", "jobs"),
    ],
)
async def test_a_bad_job_is_refused_by_its_place_and_nothing_is_written(
    jobs: Any, field: str
) -> None:
    async with jobledger.open("memory://") as ledger:
        with pytest.raises(jobledger.ValidationError) as caught:
            await ledger.submit_many(jobs)
        assert caught.value.field == field
        assert await ledger.head() == 0


async def test_an_empty_list_submits_nothing() -> None:
    async with jobledger.open("memory://") as ledger:
        assert await ledger.submit_many([]) == []
        assert await ledger.head() == 0
