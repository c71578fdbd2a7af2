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
