"""``submit``, ``cancel``, ``suspend``, ``resume`` and ``delete`` from the
command line, on a real SQLite file: what they print (a line, or the job's
JSON view), what they write, and their exit codes. Run in-process
(``main`` in a thread, as a second process's ledger would be)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import jobledger
from jobledger.cli import main
from jobledger.core import JobComplete, JobStart, JobType, ValidationError

TYPES = [JobType(name="t"), JobType(name="pausable", suspendable=True)]
VIEW_KEYS = {
    "id", "type", "status", "userId", "queue", "params", "result", "error", "progress",
    "attempt", "failures", "maxRetries", "maxRecoveries", "priority", "createdAt",
    "startedAt", "finishedAt", "runAt",
}  # fmt: skip


async def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.db"
    async with jobledger.open(path, job_types=TYPES):
        pass
    return path


async def test_submit_prints_the_id_and_writes_what_it_was_given(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["submit", "t", "--db", str(db), "--params", '{"image": "cat.png"}', "--user",
            "alice", "--priority", "7", "--idempotency-key", "k1",
            "--run-at", "2030-01-01T00:00:00Z"]  # fmt: skip
    code, out, err = await cli(capsys, *args)
    assert (code, err) == (0, "")
    job_id = out.strip()
    async with jobledger.open(db) as ledger:
        job = await ledger.get(job_id)
        assert (job.params, job.user.id, job.priority, job.idempotency_key) == (
            {"image": "cat.png"},
            "alice",
            7,
            "k1",
        )
        assert job.run_at is not None and job.run_at.year == 2030
        assert [e.actor for e in await ledger.history(job_id)] == ["alice"]
    code, again, _ = await cli(capsys, *args)  # the same key: the same job, nothing written
    assert (code, again) == (0, out)


async def test_submit_json_is_the_job_view_with_every_field(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await cli(capsys, "submit", "t", "--db", str(db), "--json")
    assert code == 0
    view: dict[str, Any] = json.loads(out)
    assert set(view) == VIEW_KEYS
    assert (view["type"], view["status"], view["userId"], view["queue"]) == (
        "t",
        "pending",
        "system",
        "default",
    )
    assert (view["params"], view["result"], view["progress"], view["startedAt"]) == (
        {},
        None,
        None,
        None,
    )
    assert view["id"].startswith("job_") and view["createdAt"].endswith("Z")


class Echo(jobledger.JobWorker):
    job_types = ("t",)

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> dict[str, Any]:
        if job.params.get("fail"):
            raise RuntimeError("asked to fail")
        await ctx.progress(50, stage="half", processed=1, total=2)
        return {"echo": job.params}


async def test_submit_wait_exits_0_only_when_the_job_completed(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with jobledger.open(db, workers=[Echo()], poll_interval=0.05):
        code, out, _ = await cli(capsys, "submit", "t", "--db", str(db), "--wait")
        assert code == 0 and out.endswith(" completed\n")
        code, out, _ = await cli(capsys, "submit", "t", "--db", str(db), "--wait", "--json")
        view = json.loads(out)
        assert (code, view["status"], view["result"]) == (0, "completed", {"echo": {}})
        assert view["progress"]["stage"] == "half"
        assert view["progress"]["itemsProcessed"] == 1 and view["progress"]["itemsTotal"] == 2
        code, out, _ = await cli(
            capsys, "submit", "t", "--db", str(db), "--params", '{"fail": true}', "--wait",
            "--json",
        )  # fmt: skip
        assert code == 1
        view = json.loads(out)
        assert (view["status"], view["error"]) == ("failed", "asked to fail")


async def test_cancel_then_cancel_again_is_an_illegal_transition(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with jobledger.open(db) as ledger:
        job = await ledger.submit("t")
    code, out, err = await cli(capsys, "cancel", job.id, "--db", str(db), "--reason", "dup")
    assert (code, out, err) == (0, f"{job.id} cancelled\n", "")
    code, out, err = await cli(capsys, "cancel", job.id, "--db", str(db))
    assert (code, out) == (4, "")
    assert err.startswith("jobledger: error: InvalidTransition") and "cancelled" in err
    assert err.count("\n") == 1
    code, out, err = await cli(capsys, "cancel", "job_NOPE", "--db", str(db))
    assert (code, out) == (3, "") and "not found" in err


async def test_suspend_resume_and_delete(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with jobledger.open(db, job_types=TYPES) as ledger:
        job = await ledger.submit("pausable")
        plain = await ledger.submit("t")
    code, out, _ = await cli(capsys, "suspend", job.id, "--db", str(db), "--json")
    assert (code, json.loads(out)["status"]) == (0, "suspended")
    code, out, _ = await cli(capsys, "resume", job.id, "--db", str(db))
    assert (code, out) == (0, f"{job.id} pending\n")
    code, _, err = await cli(capsys, "resume", job.id, "--db", str(db))
    assert code == 4 and "InvalidTransition" in err
    code, _, err = await cli(capsys, "suspend", plain.id, "--db", str(db))
    assert code == 2 and "suspendable" in err  # a ValidationError: bad input
    code, out, _ = await cli(capsys, "delete", plain.id, "--db", str(db), "--json")
    assert (code, json.loads(out)) == (0, {"id": plain.id, "deleted": True})
    code, _, _ = await cli(capsys, "show", plain.id, "--db", str(db))
    assert code == 3
    async with jobledger.open(db) as ledger:
        assert [e.type for e in await ledger.history(plain.id)][-1] == "job.deleted"
        assert (await ledger.verify()).ok


async def test_another_users_job_is_not_found_for_them(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with jobledger.open(db) as ledger:
        job = await ledger.submit("t", user="alice")
    code, _, err = await cli(capsys, "cancel", job.id, "--db", str(db), "--user", "bob")
    assert code == 3 and "not found" in err
    code, _, _ = await cli(capsys, "cancel", job.id, "--db", str(db), "--user", "alice")
    assert code == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--params", "{not json"], "not JSON"),
        (["--params", "[1, 2]"], "a JSON object"),
        (["--params", "{}", "--params-file", "p.json"], "not both"),
        (["--params-file", "nowhere.json"], "no file at nowhere.json"),
        (["--params", '{"x": NaN}'], "not JSON"),
        (["--priority", "1e9"], "not an integer"),
        (["--priority", "2000000"], "between"),
        (["--run-at", "2030-01-01T00:00:00"], "offset"),
        (["--run-at", "tomorrow"], "ISO 8601"),
        (["--user", "system:cleanup"], "system"),
    ],
)
async def test_bad_submit_input_is_exit_2_and_writes_nothing(
    db: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    async with jobledger.open(db) as ledger:
        head = await ledger.head()
    code, out, err = await cli(capsys, "submit", "t", "--db", str(db), *args)
    assert (code, out) == (2, "")
    assert says in err and "Traceback" not in err
    async with jobledger.open(db) as ledger:
        assert await ledger.head() == head


def test_a_missing_log_is_exit_2_and_not_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for args in (["submit", "t"], ["cancel", "job_x"], ["delete", "job_x"]):
        code = main([*args, "--db", str(tmp_path / "typo.db")])
        assert code == 2 and "no log file at" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


async def test_show_and_list_print_the_same_views_as_json(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with jobledger.open(db) as ledger:
        jobs = [await ledger.submit("t", {"n": n}, user="alice") for n in range(3)]
    code, out, _ = await cli(capsys, "show", jobs[0].id, "--db", str(db), "--json")
    shown = json.loads(out)
    assert (code, set(shown), shown["params"]) == (0, VIEW_KEYS, {"n": 0})
    code, out, _ = await cli(capsys, "list", "--db", str(db), "--json", "--limit", "2")
    page = json.loads(out)
    assert code == 0 and set(page) == {"items", "nextCursor"}
    assert [item["id"] for item in page["items"]] == [jobs[2].id, jobs[1].id]  # newest first
    assert page["nextCursor"] is not None
    assert all(set(item) == VIEW_KEYS for item in page["items"])
    code, out, _ = await cli(capsys, "list", "--db", str(db), "--json", "--user", "bob")
    assert json.loads(out) == {"items": [], "nextCursor": None}


async def test_cleanup_deletes_the_endings_asked_for_older_than_the_age(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with jobledger.open(db, job_types=TYPES) as ledger:
        done = await ledger.submit("t")
        await ledger.send(JobStart(job_id=done.id, worker="w", expected_version=1))
        await ledger.send(JobComplete(job_id=done.id, attempt=1))
        cancelled = await ledger.submit("t")
        await ledger.cancel(cancelled.id)
        waiting = await ledger.submit("t")
    code, out, _ = await cli(capsys, "cleanup", "--db", str(db), "--older-than", "1w")
    assert (code, out) == (0, "deleted 0 job(s)\n")  # none ended a week ago
    code, out, _ = await cli(
        capsys, "cleanup", "--db", str(db), "--older-than", "0s", "--status", "cancelled",
        "--json",
    )  # fmt: skip
    assert (code, json.loads(out)) == (0, {"deleted": 1})
    code, out, _ = await cli(capsys, "cleanup", "--db", str(db), "--older-than", "0s")
    assert (code, out) == (0, "deleted 1 job(s)\n")
    async with jobledger.open(db) as ledger:
        assert [j.id for j in await ledger.list()] == [waiting.id]  # pending: never cleaned
        for job in (done, cancelled):
            deleted = (await ledger.history(job.id))[-1]
            assert (deleted.type, deleted.actor) == ("job.deleted", "system:cleanup")
        assert (await ledger.verify()).ok
        with pytest.raises(ValidationError) as refused:
            await ledger.cleanup(timedelta(0), statuses=["running"])
        assert refused.value.field == "statuses"
        assert await ledger.cleanup(timedelta(0), statuses=[]) == 0


@pytest.mark.parametrize(
    "args",
    [["--older-than", "7"], ["--older-than", "-1d"], ["--older-than", "7y"],
     ["--older-than", "999999999w"], ["--older-than", "1d", "--status", "running"], []],
)  # fmt: skip
def test_bad_cleanup_arguments_are_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    assert main(["cleanup", "--db", str(tmp_path / "x.db"), *args]) == 2
    assert "Traceback" not in capsys.readouterr().err
