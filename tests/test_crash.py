"""Crash-point sweep (issue 6, item 1), the quick subset: a child process dies
hard (``os._exit``) at the k-th hit of each crash point; the file it leaves
keeps every invariant after recovery, and takes more work.

The full sweep, with more hits per point, is ``python tests/battery.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jobledger.core.faults import CRASH_EXIT_CODE, CRASH_POINTS

from .faults import check_invariants, kill_soak, records, run_child


@pytest.mark.parametrize("point", CRASH_POINTS)
@pytest.mark.parametrize("hit", [1, 3])
async def test_a_crash_at_any_point_keeps_every_invariant(
    tmp_path: Path, point: str, hit: int
) -> None:
    db = tmp_path / "crash.db"
    crashed = run_child(db, tmp_path, crash=f"{point}:{hit}")
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr
    sent, acked = records(tmp_path)
    assert sent
    await check_invariants(db, sent, acked)
    # The recovered file goes on taking work, to the end.
    after = run_child(db, tmp_path, jobs=4)
    assert after.returncode == 0, after.stderr
    sent, acked = records(tmp_path)
    await check_invariants(db, sent, acked)


async def test_the_invariants_catch_a_lost_acknowledgement_and_a_stray_job(
    tmp_path: Path,
) -> None:
    db = tmp_path / "clean.db"
    assert run_child(db, tmp_path, jobs=4).returncode == 0
    sent, acked = records(tmp_path)
    assert len(acked) == 4
    await check_invariants(db, sent, acked)
    with pytest.raises(AssertionError, match="acknowledged submits missing"):
        await check_invariants(db, sent, {**acked, "never-written": "job_x"})
    with pytest.raises(AssertionError, match="never sent"):
        await check_invariants(db, sent - {next(iter(acked))}, acked)


async def test_kill_9_at_random_moments_loses_nothing_and_every_job_ends(tmp_path: Path) -> None:
    """kill -9 soak (issue 6, item 2), the quick subset: three kills."""
    figures = await kill_soak(tmp_path / "soak.db", tmp_path, kills=3, seed=6)
    assert figures["kills"] == 3 and figures["jobs"] >= 3
    assert figures["executions"] >= figures["jobs"] - figures["extra"]
