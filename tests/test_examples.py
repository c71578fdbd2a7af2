"""The embedding examples run as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import jobledger

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))
# The examples use a model server when the environment names one: not here.
OFFLINE = {
    k: v for k, v in os.environ.items() if k not in ("JOBLEDGER_MODEL_URL", "OPENAI_BASE_URL")
}


def run(example: Path, db: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(example), str(db)],
        capture_output=True,
        text=True,
        cwd=db.parent,
        env=OFFLINE,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_the_example_runs(example: Path, tmp_path: Path) -> None:
    assert "log verified: True" in run(example, tmp_path / "example.db")


async def test_the_knowledge_base_annotates_its_documents_and_links_a_page(
    tmp_path: Path,
) -> None:
    db = tmp_path / "kb.db"
    out = run(next(e for e in EXAMPLES if e.name == "knowledge_base.py"), db)
    assert "client: jobledger-offline (offline)" in out
    assert "20% analyzing: category 1 of 4: Claim" in out  # live progress, printed
    async with jobledger.open(db) as ledger:
        jobs = await ledger.list(user="alice", limit=100)
        assert sorted(j.job_type for j in jobs) == sorted(
            ["comment-annotation", "assessment-annotation", "reference-annotation"]
            + ["highlight-annotation"] * 2
            + ["tag-annotation"] * 3
            + ["generation"]
        )
        assert {j.status for j in jobs} == {jobledger.JobStatus.COMPLETED}
        marks = await ledger.marks("ada-lovelace")
        assert {m.motivation for m in marks} == {
            "highlighting",
            "commenting",
            "assessing",
            "tagging",
            "linking",
        }
        for document in ("river-case", "sleep-study"):
            assert {m.motivation for m in await ledger.marks(document)} == {"tagging"}
        [page] = await ledger.resources()
        generation = next(j for j in jobs if j.job_type == "generation")
        assert page.job_id == generation.id
        assert (await ledger.content(page.id)).decode().startswith(f"# {page.name}\n")
        [linked] = [
            m for m in marks if m.motivation == "linking" and len(m.annotation["body"]) == 2
        ]
        assert linked.annotation["body"][1]["source"] == page.id
        assert linked.exact == page.name
        assert [m.motivation for m in await ledger.marks(page.id)] == ["highlighting"]
        for job in jobs:  # every job's marks are in the log before its completion
            events = [e async for e in ledger.events() if e.correlation_id == job.id]
            assert events[-1].type == "job.completed"
        assert (await ledger.verify()).ok
