"""Lay the repo out as the installed package, for tools that cannot follow
setuptools' ``package-dir`` mapping (mypy), and run them there.

Usage: ``python tests/typecheck.py`` (runs ``mypy --strict`` on the package).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("core", "eventbus", "store", "stower", "workers", "annotations", "cli", "testing")


def package_tree(into: Path) -> Path:
    """Build ``into/jobledger`` from symlinks to the repo's folders; return it."""
    package = into / "jobledger"
    package.mkdir()
    for item in (ROOT / "ledger").iterdir():
        if item.name != "__pycache__":
            (package / item.name).symlink_to(item)
    for part in PARTS:
        (package / part).symlink_to(ROOT / part, target_is_directory=True)
    return package


def run_mypy() -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as tmp:
        package_tree(Path(tmp))
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--strict",
                "--config-file",
                str(ROOT / "pyproject.toml"),
                "--cache-dir",
                str(Path(tmp) / ".mypy_cache"),
                "-p",
                "jobledger",
            ],
            cwd=tmp,
            capture_output=True,
            text=True,
            env={"MYPYPATH": tmp, "PATH": "", "HOME": tmp},
        )


if __name__ == "__main__":
    result = run_mypy()
    print(result.stdout, result.stderr, sep="")
    sys.exit(result.returncode)
