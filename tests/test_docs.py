"""Every Python block in the README and in docs/ (and its subfolders) runs, as a user
would run it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .postgres import Schemas, postgres_url

__all__ = ["postgres_url"]

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for number, match in enumerate(BLOCK.finditer(page.read_text()), start=1):
            found.append((f"{page.relative_to(ROOT)}#{number}", match.group(1)))
    return found


BLOCKS = _blocks()


def test_there_are_examples_to_run() -> None:
    assert any(name.startswith("README.md") for name, _ in BLOCKS)


@pytest.mark.parametrize(("name", "code"), BLOCKS, ids=[name for name, _ in BLOCKS])
def test_the_example_runs(
    name: str, code: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = dict(os.environ)
    schemas: Schemas | None = None
    if "postgresql://" in code:  # needs the server: skipped (failed under CI=true) without one
        schemas = Schemas(request.getfixturevalue("postgres_url"))
        schemas.made.extend(re.findall(r"schema=(\w+)", code))
        env["JOBLEDGER_TEST_POSTGRES_URL"] = schemas.url
    script = tmp_path / "example.py"
    script.write_text(code)
    try:
        done = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
            env=env,
        )
    finally:
        if schemas is not None:
            schemas.drop_all()
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
