"""Smoke test of the benchmark harness: it runs and reports every scenario.

Not a timed test: nothing here is about speed, and it passes without huey.
"""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run.py"
SCENARIOS = ("P1", "P1a", "P1b", "P2", "P3", "P4", "P5", "P6", "P7", "P8")


def test_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in SCENARIOS:
        assert name in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["mode"] == "smoke"
    assert set(SCENARIOS) <= set(doc["results"])
    results = doc["results"]
    # Issue 15: P1a/P1b on four plain workers, their targets, P1a's counters, P8's parts.
    assert results["P1a"]["target"] == "≥ 5× huey"
    assert results["P1b"]["target"] == "≥ 1× huey"
    for name in ("P1a", "P1b"):
        extra = results[name]["extra"]
        assert extra["workers"] == 4
        assert all(r["events_per_job"] == 4 and r["verify_ok"] for r in extra["round_details"])
        assert extra["commits_per_job"] > 0
        assert extra["wasted_claims_per_job"] >= 0
    for row in ("P1a commits/job", "P1a wasted claims/job", "P8 idle CPU"):
        assert row in proc.stdout
    p8 = results["P8"]
    assert p8["target"] == "p50 ≤ 10 ms, p99 ≤ 50 ms"
    assert p8["extra"]["p50_ms"] >= 0 and p8["extra"]["p99_ms"] >= p8["extra"]["p50_ms"]
    assert p8["extra"]["idle_cpu_pct"] >= 0
