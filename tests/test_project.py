"""The project's shape: what the wheel holds, which way imports point, what
is exported, and that the code passes the type checker and the linter."""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import jobledger
from jobledger.testing import BackendContract

ROOT = Path(__file__).resolve().parent.parent
PARTS = {
    "core": "jobledger.core",
    "eventbus": "jobledger.eventbus",
    "store": "jobledger.store",
    "stower": "jobledger.stower",
    "workers": "jobledger.workers",
    "ledger": "jobledger",
    "annotations": "jobledger.annotations",
    "cli": "jobledger.cli",
    "testing": "jobledger.testing",
}
# The engine: every part but the application and the command line above it.
ENGINE = ("core", "eventbus", "store", "stower", "workers", "ledger")
# What each part may import of ours: arrows point down only.
ALLOWED = {
    "core": set(),
    "store": {"core"},
    "eventbus": {"core"},
    "stower": {"core", "eventbus", "store"},
    "workers": {"core", "eventbus"},
    "ledger": {"core", "eventbus", "store", "stower", "workers"},
    # Above the face, using the engine as any application would.
    "annotations": {"core", "store", "workers", "ledger"},
    "cli": {"core", "store", "workers", "ledger", "annotations"},
    # The backend contract, shipped for a backend's own tests: the write path
    # it runs (the bus and the Stower) and the store it checks.
    "testing": {"core", "eventbus", "store", "stower"},
}


def _ours(module: str) -> str | None:
    """Which part an absolute import names, or None if it is not ours."""
    if module == "jobledger":
        return "ledger"
    if module.startswith("jobledger."):
        sub = module.split(".")[1]
        return sub if sub in ALLOWED else "ledger"
    return None


MAX_MODULE_LINES = 650
"""A module past about 600 lines holds more than one concept (issue 14)."""


@pytest.mark.parametrize("part", sorted(PARTS))
def test_no_module_holds_more_than_one_concept(part: str) -> None:
    """Every module of every part is at most ``MAX_MODULE_LINES`` lines and
    opens with a docstring naming its concept."""
    for path in sorted((ROOT / part).rglob("*.py")):
        source = path.read_text()
        lines = source.count("\n")
        assert lines <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)}: {lines} lines"
        assert ast.get_docstring(ast.parse(source)), f"{path.relative_to(ROOT)}: no docstring"


ENTRY_POINTS = {"ledger/__main__.py": {"cli"}}
"""Modules that only run a part above their own (``python -m jobledger`` runs
the command line); nothing imports them, so they add no edge to the graph."""


def test_imports_point_only_downward() -> None:
    wrong = []
    for part in ALLOWED:
        for path in (ROOT / part).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif isinstance(node, ast.ImportFrom) and node.level > 1:
                    wrong.append(f"{path}: relative import out of its part")
                for name in names:
                    target = _ours(name)
                    entry = ENTRY_POINTS.get(str(path.relative_to(ROOT)), set())
                    allowed = ALLOWED[part] | entry
                    if target is not None and target != part and target not in allowed:
                        wrong.append(f"{path.relative_to(ROOT)} imports {name}")
                    if name.split(".")[0] in ALLOWED:
                        wrong.append(f"{path.relative_to(ROOT)} imports bare {name}")
    assert wrong == []


def test_nothing_in_the_engine_may_import_the_application_or_the_command_line() -> None:
    # The layer rule the import walk above enforces, stated for the two
    # parts above the face: no engine part lists them, and they list the face.
    assert [part for part in ENGINE if ALLOWED[part] & {"annotations", "cli"}] == []
    assert "ledger" in ALLOWED["annotations"] and "annotations" in ALLOWED["cli"]
    assert "cli" not in ALLOWED["annotations"]


def _loaded_after(statement: str, tmp_path: Path) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``statement``."""
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_importing_jobledger_loads_neither_httpx_nor_the_application(tmp_path: Path) -> None:
    loaded = _loaded_after(
        "import jobledger, jobledger.core, jobledger.eventbus, jobledger.store,"
        " jobledger.stower, jobledger.workers, jobledger.terminal",
        tmp_path,
    )
    assert "jobledger.workers" in loaded  # the statement ran
    above = sorted(
        name
        for name in loaded
        if name == "httpx" or name.startswith(("httpx.", "jobledger.annotations", "jobledger.cli"))
    )
    assert above == []


def test_the_offline_application_and_the_command_line_need_no_httpx(tmp_path: Path) -> None:
    # httpx is the `openai` extra: only OpenAIClient imports it, on first use.
    loaded = _loaded_after("import jobledger.annotations.demo, jobledger.cli", tmp_path)
    assert {"jobledger.annotations", "jobledger.annotations.demo", "jobledger.cli"} <= loaded
    assert "httpx" not in loaded
    loaded = _loaded_after("from jobledger.annotations import OpenAIClient", tmp_path)
    assert {"httpx", "jobledger.annotations.openai_client"} <= loaded


@pytest.mark.parametrize("module_name", sorted([*PARTS.values(), "jobledger.annotations.demo"]))
def test_every_package_declares_exactly_what_it_exports(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = set(module.__all__)
    assert len(exported) == len(module.__all__), "duplicates in __all__"
    for name in exported:
        assert hasattr(module, name), f"{module_name}.{name} is in __all__ but missing"
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, type(sys))
    }
    assert public - exported == set(), f"public but not in __all__: {public - exported}"


# What an embedding application writes (docs/api.md, "What is at the top level").
TOP_LEVEL = {
    # opening and holding the ledger, and what its methods return
    *("open", "Ledger", "JobPage", "LedgerStatistics", "NewJob"),
    # declaring job types
    *("JobType", "RetryPolicy"),
    # writing workers
    *("JobWorker", "JobContext", "PartialResult", "SkipJob", "NonRetryableError"),
    # the values the ledger hands back
    *("Job", "JobStatus", "User", "Progress", "Envelope", "Mark", "Resource", "Asset"),
    # building marks
    *("Annotation", "Target", "TextPositionSelector", "TextQuoteSelector", "TextualBody"),
    *("SpecificResource", "Agent", "BodyAdd", "BodyRemove", "BodyReplace", "to_jsonld"),
    # the errors an application catches
    *("JobledgerError", "ValidationError", "NotFound", "InvalidTransition"),
    *("CancelRequested", "LedgerClosed", "WaitTimeout"),
    # testing with time under control
    *("ManualClock", "__version__"),
}
# Names that left the top level (issue 14, item 8), by the part that defines them.
MOVED = {
    "jobledger.core": (
        *("SYSTEM_USER", "TERMINAL", "TRANSITIONS", "Clock", "SystemClock", "Command"),
        *("JobCreate", "JobStart", "JobProgress", "JobHeartbeat", "JobComplete", "JobPartial"),
        *("JobSkip", "JobFail", "JobCancel", "JobSuspend", "JobResume", "JobDelete"),
        *("JobExpire", "JobRelease", "AssetCreate", "MarkCreate", "MarkDelete"),
        *("MarkUpdateBody", "ResourceCreate", "Event", "Projection", "Lease", "Holder"),
        *("ContentStore", "ConcurrencyConflict", "StaleAttempt", "StorageError"),
        *("CorruptionError", "InternalError"),
    ),
    "jobledger.store": (
        *("EventLog", "SqliteLog", "MemoryLog", "ContentFolder", "Head", "LogLine"),
        *("VerifyReport", "Problem"),
    ),
    "jobledger.eventbus": ("EventBus", "BusStatistics"),
    "jobledger.stower": ("StowerStatistics", "SweeperStatistics"),
    "jobledger.workers": ("WorkerStatistics",),
}


def test_the_top_level_is_small() -> None:
    assert len(jobledger.__all__) <= 40


def test_the_top_level_is_exactly_what_an_application_uses() -> None:
    assert sorted(jobledger.__all__) == sorted(TOP_LEVEL)
    public = {name for name in vars(jobledger) if not name.startswith("_")}
    parts = {name for name, value in vars(jobledger).items() if isinstance(value, type(sys))}
    assert public - parts == TOP_LEVEL - {"__version__"}


@pytest.mark.parametrize("part", sorted(MOVED))
def test_a_name_that_left_the_top_level_is_importable_from_its_part(part: str) -> None:
    module = importlib.import_module(part)
    for name in MOVED[part]:
        assert name in module.__all__, f"{part}.{name}"
        assert name not in jobledger.__all__ and not hasattr(jobledger, name), name


def test_the_api_page_lists_the_top_level_and_says_where_the_rest_lives() -> None:
    page = (ROOT / "docs" / "api.md").read_text()
    section = page.split("## What is at the top level", 1)[1].split("\n## ", 1)[0]
    missing = [n for n in TOP_LEVEL if f"`{n}`" not in section]
    assert missing == []
    for part in MOVED:
        assert f"`{part}`" in section, part


def test_every_top_level_name_is_documented() -> None:
    docs = "\n".join(p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
    missing = [n for n in jobledger.__all__ if n != "__version__" and n not in docs]
    assert missing == []


def test_every_name_of_the_application_is_documented() -> None:
    import jobledger.annotations

    pages = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    docs = "\n".join(p.read_text() for p in pages)
    missing = [n for n in jobledger.annotations.__all__ if n not in docs]
    assert missing == []


def test_importing_jobledger_prints_nothing_and_configures_no_logging(tmp_path: Path) -> None:
    code = (
        "import logging, jobledger;"
        "root = logging.getLogger();"
        "assert root.handlers == [], root.handlers;"
        "assert logging.getLogger('jobledger').handlers[0].__class__.__name__ == 'NullHandler'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``pip wheel`` builds of this checkout."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        cwd=out,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob("jobledger-*.whl")
    return built


def test_the_wheel_holds_exactly_the_jobledger_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"jobledger", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    for part in ("core", "eventbus", "store", "stower", "workers", "annotations", "cli", "testing"):
        assert f"jobledger/{part}/__init__.py" in names
        assert f"jobledger/{part}/py.typed" in names
    # The demo's sample documents travel with the application.
    assert "jobledger/annotations/samples/analytical-engine.md" in names
    assert "jobledger/annotations/demo/__init__.py" in names
    assert "jobledger/cli/__main__.py" in names
    assert "jobledger/__init__.py" in names and "jobledger/py.typed" in names
    assert not [n for n in names if "tests/" in n or "__pycache__" in n]


_CONTRACT_FROM_THE_WHEEL = """
import pytest

import jobledger
from jobledger.store import MEMORY, MemoryLog, SqliteLog
from jobledger.testing import BackendContract


def test_this_is_the_installed_wheel():
    assert jobledger.__file__.startswith({target!r}), jobledger.__file__


class TestMemoryLog(BackendContract):
    @pytest.fixture
    def new_backend(self):
        return MemoryLog


class TestSqliteInMemory(BackendContract):
    @pytest.fixture
    def new_backend(self):
        return lambda: SqliteLog(MEMORY)
"""


def test_the_contract_suite_runs_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    # Installed from the wheel into a folder of its own (its dependencies are
    # this environment's), and run by a separate pytest as a backend's own
    # suite would run it: nothing of this checkout on the path.
    target = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    suite = tmp_path / "suite" / "test_my_backend.py"
    suite.parent.mkdir()
    suite.write_text(_CONTRACT_FROM_THE_WHEEL.format(target=str(target)))
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)],
        capture_output=True,
        text=True,
        cwd=suite.parent,
        env={**os.environ, "PYTHONPATH": str(target)},
        timeout=600,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    # Both backends keep their storage to themselves: the one test that needs
    # another handle on the same storage is skipped, visibly, for each.
    count = 1 + 2 * (len([n for n in dir(BackendContract) if n.startswith("test_")]) - 1)
    assert f"{count} passed, 2 skipped" in ran.stdout, ran.stdout[-500:]


def test_the_package_is_imported_from_the_install_not_bare_folders() -> None:
    # With --import-mode=importlib the repo root is not on sys.path, so `core`
    # and friends must not be importable as top-level modules.
    for bare in PARTS:
        assert importlib.util.find_spec(bare) is None, bare


def test_mypy_strict_passes() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from typecheck import run_mypy  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    result = run_mypy()
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_passes() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    for args in (["check", "."], ["format", "--check", "."]):
        done = subprocess.run([ruff, *args], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stdout + done.stderr
