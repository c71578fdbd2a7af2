"""Several processes on one file (issue 6, items 6, 7 and 9), the quick
subset: a worker paused past its lease is fenced off; claims raced by many
tasks in several processes; submitters, workers and subscribers in separate
processes under load; processes whose wall clocks disagree.

The full runs, with more iterations, are parts of ``python tests/battery.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from . import faults


@pytest.mark.parametrize("successor_done", [False, True], ids=["while-rerun", "after-rerun"])
async def test_a_worker_paused_past_its_lease_cannot_change_the_job_it_lost(
    tmp_path: Path, successor_done: bool
) -> None:
    """Item 6: SIGSTOP past the lease, the job expired and claimed again by
    another process, SIGCONT: every late command is refused, nothing written."""
    figures = await faults.pause_past_the_lease(
        tmp_path / "fenced.db", successor_done=successor_done
    )
    assert figures["late"] == len(faults.LATE_COMMANDS)


async def test_claims_raced_by_many_tasks_in_several_processes_win_once_each(
    tmp_path: Path,
) -> None:
    """Item 6: three processes, eight tasks each, claim the same 20 jobs at once."""
    figures = await faults.claim_race(tmp_path / "race.db", processes=3, tasks=8, jobs=20)
    assert figures["wins"] == 20 and figures["conflicts"] == 3 * 8 * 20 - 20


async def test_subscribers_in_other_processes_see_every_event_once_in_order_under_load(
    tmp_path: Path,
) -> None:
    """Item 7: two submitter, two worker and two subscriber processes on one file."""
    figures = await faults.load(tmp_path / "load.db", tmp_path, submitters=2, jobs=40, workers=2)
    assert figures["jobs"] == 80 and figures["observed"] > 0
