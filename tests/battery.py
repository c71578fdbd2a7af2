"""The reliability battery (issue 6), in full: more iterations than the test
suite's quick subset. Run from the repository root::

    python tests/battery.py                      # the default counts
    python tests/battery.py --hits 1,2,3,5,8,13 --kills 50 --flips 1000 --seed 7 \
        --pauses 20 --races 10 --load-jobs 300 --skews=-3600,-60,60,3600 \
        --power-copies 100 --power-jobs 800 --full-rounds 60 --tmpfs --wal-held 1000

Prints a table and writes the figures as JSON (``--json``). Exits 1 if any
invariant fails (the failing check is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import faults
import storage_faults
from rich.console import Console
from rich.table import Table

from jobledger.core.faults import CRASH_EXIT_CODE, CRASH_POINTS
from jobledger.store.sqlite import WAL_SIZE_LIMIT


async def crash_sweep(hits: list[int]) -> dict[str, Any]:
    """Every crash point at each of ``hits``; the invariants after each, then more work."""
    runs = crashed = 0
    for point in CRASH_POINTS:
        for hit in hits:
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                db = work / "crash.db"
                result = faults.run_child(db, work, crash=f"{point}:{hit}")
                runs += 1
                if result.returncode == CRASH_EXIT_CODE:
                    crashed += 1
                elif result.returncode != 0:
                    raise RuntimeError(f"{point}:{hit}: the child failed\n{result.stderr}")
                await faults.check_invariants(db, *faults.records(work))
                after = faults.run_child(db, work, jobs=4)
                if after.returncode != 0:
                    raise RuntimeError(f"{point}:{hit}: no work after recovery\n{after.stderr}")
                await faults.check_invariants(db, *faults.records(work))
    return {"points": len(CRASH_POINTS), "hits": hits, "runs": runs, "crashed": crashed}


async def soak(kills: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        return await faults.kill_soak(Path(tmp) / "soak.db", Path(tmp), kills, seed)


async def flips(count: int, seed: int) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        return await faults.flip_many(Path(tmp), count, seed)


async def pauses(count: int) -> dict[str, Any]:
    """Item 6: a worker paused past its lease ``count`` times, resumed while
    the new attempt runs and after it ended, in turn."""
    refused: dict[str, int] = {}
    late = 0
    for n in range(count):
        with tempfile.TemporaryDirectory() as tmp:
            figures = await faults.pause_past_the_lease(
                Path(tmp) / "f.db", successor_done=n % 2 == 1
            )
        late += figures["late"]
        refused[figures["refusal"]] = refused.get(figures["refusal"], 0) + figures["late"]
    return {"pauses": count, "late_commands": late, "refused": refused}


async def races(rounds: int) -> dict[str, Any]:
    """Item 6: ``rounds`` claim races, 4 processes × 8 tasks for 50 jobs each."""
    totals = {"claims": 0, "wins": 0, "conflicts": 0, "rounds_won_by_several": 0}
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            figures = await faults.claim_race(Path(tmp) / "r.db", processes=4, tasks=8, jobs=50)
        for key in ("claims", "wins", "conflicts"):
            totals[key] += figures[key]
        totals["rounds_won_by_several"] += figures["winning_processes"] > 1
    return {"rounds": rounds, **totals}


async def loads(jobs: int, skews: list[int]) -> dict[str, Any]:
    """Item 7 (and 9): 3 submitters × ``jobs`` jobs, 3 workers, 2 subscribers;
    once with every clock right, once with the workers' and submitters'
    clocks off by ``skews`` seconds in turn."""
    runs = {}
    for name, offsets in (("clocks agree", []), ("clocks off", skews)):
        with tempfile.TemporaryDirectory() as tmp:
            runs[name] = await faults.load(
                Path(tmp) / "l.db", Path(tmp), submitters=3, jobs=jobs, workers=3, offsets=offsets
            )
    return runs


async def skews(offsets: list[int]) -> list[dict[str, Any]]:
    """Item 9: a live worker with its clock off by each of ``offsets``
    seconds keeps its lease; a dead one (ahead by at most 3 s, to keep the
    wait short) is recovered once its recorded expiry has passed here."""
    runs = [
        await _skewed(offset, dies=False) for offset in offsets
    ]  # fmt: skip
    runs += [await _skewed(offset, dies=True) for offset in (-3600.0, 1.0, 3.0)]
    return runs


async def _skewed(offset: float, *, dies: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        return await faults.skewed_worker(Path(tmp) / "s.db", offset, dies=dies, lease=1.0)


def process_rows(table: Table, figures: dict[str, Any]) -> None:
    """The rows of items 6, 7 and 9."""
    paused, raced = figures["pauses"], figures["races"]
    table.add_row(
        "paused past the lease",
        f"{paused['pauses']} SIGSTOP/SIGCONT: {paused['late_commands']} late commands, "
        f"refused {paused['refused']}; none wrote anything; each job ended as its "
        "new attempt made it",
    )
    table.add_row(
        "claim races",
        f"{raced['rounds']} rounds, {raced['claims']} claims: {raced['wins']} won (one per job), "
        f"{raced['conflicts']} ConcurrencyConflict; {raced['rounds_won_by_several']} rounds won "
        "by several processes",
    )
    for name, run in figures["loads"].items():
        table.add_row(
            f"processes under load ({name})",
            f"{run['processes']} processes, {run['jobs']} jobs, {run['events']} events in "
            f"{run['seconds']} s; each subscriber saw all once in seq order; claims per worker "
            f"{run['claims_per_worker']}; recorded times went back {run['times_going_back']} times",
        )
    for run in figures["skews"]:
        fate = "dead, recovered" if run["dies"] else f"alive, {run['renewals']} renewals"
        table.add_row(f"clock {run['offset']:+g} s", f"{fate} after {run['seconds']} s")


async def storage(args: argparse.Namespace) -> dict[str, Any]:
    """Items 3, 4 and 12: power-cut copies, a full disk, the WAL under a long
    reader. The full disk on a small tmpfs only with ``--tmpfs`` (it mounts
    one: root only; reported as skipped where that fails)."""
    figures: dict[str, Any] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        figures["power_cuts"] = await storage_faults.power_cuts(
            Path(tmp), args.power_copies, args.seed, jobs=args.power_jobs, jitter=args.jitter
        )
    with tempfile.TemporaryDirectory() as tmp:
        figures["disk_full"] = await storage_faults.disk_full(
            Path(tmp), rounds=args.full_rounds, step=args.full_step
        )
    if args.tmpfs:
        figures["disk_full_tmpfs"] = await _on_a_tmpfs(args)
    with tempfile.TemporaryDirectory() as tmp:
        figures["wal"] = await storage_faults.wal_under_a_long_reader(
            Path(tmp) / "wal.db",
            held=args.wal_held,
            after=5,
            wal_size_limit=WAL_SIZE_LIMIT,
        )
    figures["seconds"] = round(time.perf_counter() - started, 1)
    return figures


async def _run(*command: str) -> int:
    proc = await asyncio.create_subprocess_exec(*command)
    return await proc.wait()


async def _on_a_tmpfs(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        mount = Path(tmp) / "small"
        mount.mkdir()
        if await _run("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)):
            return {"skipped": "cannot mount a tmpfs here"}
        try:
            return await storage_faults.disk_full(
                Path(tmp), rounds=args.full_rounds, step=args.full_step, small_fs=mount
            )
        finally:
            await _run("umount", str(mount))


def storage_rows(table: Table, figures: dict[str, Any]) -> None:
    power, wal = figures["power_cuts"], figures["wal"]
    table.add_row(
        "power cuts",
        f"{power['copies']} copies of a frozen writer ({power['wal_generations']} WAL "
        f"generations), cuts {power['cuts']}; nothing acknowledged lost from a whole WAL or "
        f"one cut past the last commit; {power['lost_in_synced_cuts']} acknowledged submits "
        "lost to cuts among synced frames, always a suffix; never corrupt",
    )
    for key, name in (
        ("disk_full", "disk full (RLIMIT_FSIZE)"),
        ("disk_full_tmpfs", "disk full (tmpfs)"),
    ):
        part = figures.get(key)
        if part is None:
            continue
        if "skipped" in part:
            table.add_row(name, f"skipped: {part['skipped']}")
            continue
        table.add_row(
            name,
            f"{part['rounds']} rounds: errors {part['errors']} (each a StorageError), "
            f"{part['under_limit']} submits fitted first; the Stower served after each; "
            f"{part['acked']} acknowledged, all ended; every invariant held",
        )
    table.add_row(
        "WAL, long reader",
        f"{wal['while_held'] / 2**20:.1f} MiB while held, "
        f"{wal['after_release'] / 2**20:.1f} MiB after release, {wal['after_close']} after close",
    )


async def main(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    started = time.perf_counter()
    figures["crash_sweep"] = await crash_sweep(args.hits)
    figures["kill_soak"] = await soak(args.kills, args.seed)
    figures["flips"] = await flips(args.flips, args.seed)
    figures["pauses"] = await pauses(args.pauses)
    figures["races"] = await races(args.races)
    figures["loads"] = await loads(args.load_jobs, args.skews)
    figures["skews"] = await skews(args.skews)
    figures["storage"] = await storage(args)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    table = Table(title="jobledger reliability battery")
    table.add_column("part")
    table.add_column("figures")
    sweep, kill = figures["crash_sweep"], figures["kill_soak"]
    table.add_row(
        "crash-point sweep",
        f"{sweep['points']} points × hits {sweep['hits']}: {sweep['runs']} runs, "
        f"{sweep['crashed']} died at their point; every invariant held after each",
    )
    table.add_row(
        "kill -9 soak",
        f"{kill['kills']} kills, {kill['jobs']} jobs all ended, {kill['executions']} executions "
        f"({kill['extra']} repeated after a kill); every invariant held after each kill",
    )
    outcomes = ", ".join(f"{n} {what}" for what, n in sorted(figures["flips"].items()))
    table.add_row(
        "flipped bytes",
        f"{sum(figures['flips'].values())} flips: {outcomes}; none read silently wrong",
    )
    process_rows(table, figures)
    storage_rows(table, figures["storage"])
    console.print(table)
    console.print(f"total {figures['seconds']} s")
    return figures


def _counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=_counts, default=[1, 2, 3, 5, 8])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--flips", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pauses", type=int, default=6)
    parser.add_argument("--races", type=int, default=3)
    parser.add_argument("--load-jobs", type=int, default=100)
    parser.add_argument("--skews", type=_counts, default=[-3600, 3600])
    parser.add_argument("--power-copies", type=int, default=30)
    parser.add_argument("--power-jobs", type=int, default=400)
    parser.add_argument("--jitter", type=float, default=0.005, help="seconds, at most")
    parser.add_argument("--full-rounds", type=int, default=40)
    parser.add_argument("--full-step", type=int, default=4096, help="bytes more each round")
    parser.add_argument("--tmpfs", action="store_true", help="also fill a 64 MiB tmpfs (root)")
    parser.add_argument("--wal-held", type=int, default=400, help="submits under a long reader")
    parser.add_argument("--json", type=Path, default=Path(tempfile.gettempdir()) / "battery.json")
    arguments = parser.parse_args()
    console = Console()
    try:
        result = asyncio.run(main(arguments, console))
    except (AssertionError, RuntimeError) as failure:
        console.print(f"[red]an invariant failed:[/] {failure!r}")
        sys.exit(1)
    arguments.json.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {arguments.json}")
