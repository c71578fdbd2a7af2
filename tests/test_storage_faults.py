"""Storage faults (issue 6, items 3, 4 and 12), the quick subset: power cuts
with a torn WAL, a full disk, a WAL under a long reader, a forked child.

The full runs are ``python tests/battery.py`` (``--power-copies``,
``--full-rounds``, ``--tmpfs``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from . import storage_faults
from .storage_faults import disk_full, power_cuts, wal_under_a_long_reader


async def test_a_power_cut_loses_nothing_acknowledged_and_a_torn_wal_leaves_a_prefix(
    tmp_path: Path,
) -> None:
    # check_cut asserts inside: integrity, the invariants, nothing acknowledged
    # lost from a whole WAL, a prefix from one cut among synced frames.
    figures = await power_cuts(tmp_path, copies=4, seed=3, jobs=80)
    assert figures["copies"] == 4
    assert figures["cuts"]["whole"] == 4
    assert figures["cuts"]["synced"] >= 1 and figures["lost_in_synced_cuts"] >= 1
    assert figures["acked"] >= 16


async def test_a_full_disk_is_a_storage_error_and_the_stower_serves_again(
    tmp_path: Path,
) -> None:
    """RLIMIT_FSIZE in a child: every failed submit is exactly ``StorageError``,
    a failed command leaves the Stower's cache as the file is, the next
    submits succeed once the limit is raised, every acknowledged job ends
    (a claim that failed used to stop the worker for good), and the file
    keeps every invariant."""
    figures = await disk_full(tmp_path, rounds=4, step=16_000)
    assert figures["errors"] == {"disk I/O error": 16}  # each round's first group: 4
    assert figures["acked"] >= 4 * 3 + 4  # two groups a round, and the probes


async def test_a_claim_proposed_in_a_batch_the_full_disk_rolls_back_frees_its_slot(
    tmp_path: Path,
) -> None:
    """Many rounds, a small step: some batches that fail carry claims the
    Stower proposed for a runner (its next job, with its last report). Each
    is withdrawn and its slot is free again; every acknowledged job ends. (A
    runner whose every slot a withdrawn claim had held waited for a job of its
    own to end, which never came: the battery found it.)"""
    figures = await disk_full(tmp_path, rounds=15, step=4096)
    assert figures["errors"] == {"disk I/O error": 60}
    assert figures["acked"] >= 15 * 3


async def test_the_wal_shrinks_after_a_long_reader_lets_go_and_is_truncated_on_close(
    tmp_path: Path,
) -> None:
    limit = 512 * 1024
    sizes = await wal_under_a_long_reader(
        tmp_path / "wal.db", held=150, after=5, wal_size_limit=limit
    )
    assert sizes["while_held"] > 4 * limit  # the reader's snapshot pins every frame
    assert sizes["after_release"] <= limit  # checkpointed, started over, cut back
    assert sizes["after_close"] == 0  # another connection is open: truncated, not deleted


def test_a_forked_child_gets_typed_errors_from_the_parents_ledger_and_opens_its_own(
    tmp_path: Path,
) -> None:
    # In a process of its own: this test process never forks.
    result = subprocess.run(
        [sys.executable, storage_faults.__file__, "fork", str(tmp_path / "fork.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome == {
        "get": "LedgerClosed",
        "submit": "LedgerClosed",
        "log.get_job": "StorageError",
        "child_verify": True,
        "child_status": 0,
        "parent_head": 42,  # 1 + 20 of the parent + 20 of the child + 1
        "parent_verify": True,
        "reopened_head": 42,
        "reopened_verify": True,
    }
