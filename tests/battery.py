"""The reliability battery (issue 6), in full: more iterations than the test
suite's quick subset. Run from the repository root::

    python tests/battery.py                      # the default counts
    python tests/battery.py --hits 1,2,3,5,8,13 --kills 50 --flips 1000 --seed 7

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
from rich.console import Console
from rich.table import Table

from jobledger.core.faults import CRASH_EXIT_CODE, CRASH_POINTS


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


async def main(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    started = time.perf_counter()
    figures["crash_sweep"] = await crash_sweep(args.hits)
    figures["kill_soak"] = await soak(args.kills, args.seed)
    figures["flips"] = await flips(args.flips, args.seed)
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
