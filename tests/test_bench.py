"""Smoke test of the benchmark harness: it runs and reports every scenario.

Not a timed test: nothing here is about speed, and it passes without huey.
"""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run.py"
SCENARIOS = ("P1", "P2", "P3", "P4", "P5", "P6", "P7")


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
