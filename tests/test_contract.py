"""The backend contract (jobledger.testing), run here against every backend
this project ships: the memory backend, SQLite in memory and SQLite on a file."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree

import pytest

from jobledger.store import MEMORY, Backend, MemoryLog, SqliteLog
from jobledger.testing import BackendContract


class TestMemoryLog(BackendContract):
    @pytest.fixture
    def new_backend(self) -> Callable[[], Backend]:
        return MemoryLog


class TestSqliteInMemory(BackendContract):
    @pytest.fixture
    def new_backend(self) -> Callable[[], Backend]:
        return lambda: SqliteLog(MEMORY)


class TestSqliteFile(BackendContract):
    @pytest.fixture
    def new_backend(self, tmp_path: Path) -> Callable[[], Backend]:
        numbers = itertools.count()
        return lambda: SqliteLog(tmp_path / f"log-{next(numbers)}.db")

    @pytest.fixture
    def same_storage(self) -> Callable[[Backend], Backend]:
        return lambda log: SqliteLog(log.path)


# -- the contract catches a backend that breaks it -------------------------------

_BROKEN_SUITE = """
import sys

import pytest

sys.path.insert(0, {tests!r})
from broken_backends import BROKEN  # noqa: E402

from jobledger.store import MemoryLog  # noqa: E402
from jobledger.testing import BackendContract  # noqa: E402


def _suite(kind):
    class Suite(BackendContract):
        @pytest.fixture
        def new_backend(self):
            return kind

    return Suite


TestIntact = _suite(MemoryLog)
for _name, (_kind, _) in BROKEN.items():
    globals()["Test" + _name] = _suite(_kind)
"""


def test_a_backend_that_breaks_a_promise_fails_the_test_named_for_it(tmp_path: Path) -> None:
    from .broken_backends import BROKEN

    suite = tmp_path / "test_broken.py"
    suite.write_text(_BROKEN_SUITE.format(tests=str(Path(__file__).parent)))
    report = tmp_path / "report.xml"
    # A separate pytest, as a backend's own suite runs the contract: from the
    # installed package, in a folder of its own.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(suite),
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "-o",
            "asyncio_mode=strict",
            f"--junitxml={report}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    failed: dict[str, set[str]] = {}
    passed: dict[str, set[str]] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        suite_name = case.get("classname", "").rsplit(".", 1)[-1]
        outcome = (
            failed if case.find("failure") is not None or case.find("error") is not None else passed
        )
        outcome.setdefault(suite_name, set()).add(case.get("name", ""))
    assert "TestIntact" not in failed, result.stdout[-3000:]
    assert len(passed["TestIntact"]) == len(
        [n for n in dir(BackendContract) if n.startswith("test_")]
    )
    for name, (_, promise) in BROKEN.items():
        assert promise in failed.get(f"Test{name}", set()), (name, failed.get(f"Test{name}"))
