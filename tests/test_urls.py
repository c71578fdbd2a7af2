"""Backends named by URL: every accepted form opens the backend it names, every
malformed or unknown one is a ``ValidationError`` naming the accepted forms
and creates nothing, a path with a colon stays a path, and the command line
takes ``--db URL``, then ``JOBLEDGER_DB``, then ``jobledger.db``."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import pytest

import jobledger
import jobledger.store
from jobledger.cli import main
from jobledger.store import (
    BackendURL,
    ContentFolder,
    MemoryContent,
    MemoryLog,
    SqliteLog,
    backend_for,
)
from jobledger.store.url import FORMS


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``JOBLEDGER_DB`` unless a test sets it; plain, unwrapped CLI output."""
    for name in ("JOBLEDGER_DB", "FORCE_COLOR", "COLUMNS", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


async def _submit_then_reopen(target: str | Path, file: Path) -> None:
    """Submit a job on ``target``, close, reopen ``target``: the job is there, in ``file``."""
    async with jobledger.open(target) as ledger:
        job = await ledger.submit("echo", {"n": 1})
        assert await asyncio.to_thread(os.path.samefile, ledger.path, file)
    assert await asyncio.to_thread(os.path.isfile, file)
    async with jobledger.open(target) as ledger:
        assert (await ledger.get(job.id)).params == {"n": 1}
    async with jobledger.open(file) as ledger:  # the same file, named by its path
        assert (await ledger.get(job.id)).status == "pending"


# -- the accepted forms --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("jobs.db", "jobs.db"),
        ("./a:b.db", "./a:b.db"),
        ("a:b.db", "a:b.db"),
        ("C:\\x\\jobs.db", "C:\\x\\jobs.db"),
        ("C://x/jobs.db", "C://x/jobs.db"),  # one letter: a Windows drive, not a scheme
        ("http:x", "http:x"),  # a scheme we do not know, without '//': a name
        ("jobs.db?synchronous=NORMAL", "jobs.db?synchronous=NORMAL"),  # a path has no query
        ("sqlite:///relative/jobs.db", "relative/jobs.db"),
        ("sqlite:////absolute/jobs.db", "/absolute/jobs.db"),
        ("SQLite:///jobs.db", "jobs.db"),  # schemes are case-insensitive
        ("sqlite:///jobs.db?", "jobs.db"),
    ],
)
def test_a_file_is_named_by_a_path_or_a_sqlite_url(text: str, path: str) -> None:
    url = BackendURL.parse(text)
    assert url == BackendURL(scheme="sqlite", path=path)
    assert not url.in_memory
    log, content = backend_for(url)
    assert type(log) is SqliteLog
    assert log.path == path
    assert isinstance(content, ContentFolder)
    assert content.root == Path(path).with_name(Path(path).name + ".content")


def test_a_path_object_is_always_a_path() -> None:
    assert BackendURL.parse(Path("./x:y.db")) == BackendURL(scheme="sqlite", path="x:y.db")
    absolute = BackendURL(scheme="sqlite", path="/tmp/jobs.db")
    assert BackendURL.parse(Path("/tmp/jobs.db")) == absolute


@pytest.mark.parametrize("text", [":memory:", "memory://", "MEMORY://"])
def test_memory_forms_open_the_memory_backend(text: str) -> None:
    url = BackendURL.parse(text)
    assert url.in_memory
    assert url.path is None
    log, content = backend_for(url)
    assert type(log) is MemoryLog
    assert type(content) is MemoryContent


@pytest.mark.parametrize("text", ["sqlite://", "sqlite:///:memory:", "sqlite://:memory:"])
def test_sqlite_in_memory_forms_open_sqlite_in_memory(text: str) -> None:
    url = BackendURL.parse(text)
    assert url == BackendURL(scheme="sqlite")
    assert url.in_memory
    log, content = backend_for(url)
    assert type(log) is SqliteLog
    assert log.path == ":memory:"
    assert type(content) is MemoryContent


@pytest.mark.parametrize(
    ("query", "synchronous"),
    [("synchronous=FULL", "FULL"), ("synchronous=normal", "NORMAL"), ("", None)],
)
def test_sqlite_takes_synchronous_in_its_query(query: str, synchronous: str | None) -> None:
    url = BackendURL.parse(f"sqlite:///jobs.db?{query}")
    assert (url.path, url.synchronous) == ("jobs.db", synchronous)
    log, _ = backend_for(url)
    assert log._synchronous == (synchronous or "FULL")  # type: ignore[attr-defined]


def test_the_canonical_text_of_a_url_parses_back_to_it() -> None:
    for text, canonical in [
        ("jobs.db", "sqlite:///jobs.db"),
        ("sqlite:////abs/jobs.db?synchronous=normal", "sqlite:////abs/jobs.db?synchronous=NORMAL"),
        ("sqlite:///:memory:", "sqlite://"),
        ("memory://", "memory://"),
    ]:
        url = BackendURL.parse(text)
        assert str(url) == canonical
        assert BackendURL.parse(str(url)) == url


async def test_a_relative_sqlite_url_is_a_file_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "relative").mkdir()
    await _submit_then_reopen("sqlite:///relative/jobs.db", tmp_path / "relative" / "jobs.db")
    assert os.listdir(tmp_path) == ["relative"]


async def test_an_absolute_sqlite_url_is_that_file(tmp_path: Path) -> None:
    file = tmp_path / "absolute.db"
    assert str(file).startswith("/")
    await _submit_then_reopen(f"sqlite:///{file}", file)  # sqlite: + // + /tmp/...


async def test_a_plain_path_keeps_working_as_text_and_as_a_path(tmp_path: Path) -> None:
    await _submit_then_reopen(str(tmp_path / "text.db"), tmp_path / "text.db")
    await _submit_then_reopen(tmp_path / "path.db", tmp_path / "path.db")


async def test_a_path_with_a_colon_is_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    await _submit_then_reopen("./a:b.db", tmp_path / "a:b.db")
    assert (tmp_path / "a:b.db").is_file()


async def test_the_synchronous_option_of_a_url_reaches_the_file(tmp_path: Path) -> None:
    import sqlite3

    file = tmp_path / "normal.db"
    async with jobledger.open(f"sqlite:///{file}?synchronous=NORMAL") as ledger:
        await ledger.submit("echo")
        log = ledger._log
        assert isinstance(log, SqliteLog)
        synchronous = await log._conn().call(
            lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]
        )
    assert synchronous == 1  # NORMAL (FULL is 2)
    assert sqlite3.connect(file).execute("SELECT count(*) FROM events").fetchone() == (1,)


@pytest.mark.parametrize("text", ["memory://", "sqlite://", "sqlite:///:memory:", None])
async def test_an_in_memory_ledger_writes_no_file(
    text: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with jobledger.open(text) as ledger:
        job = await ledger.submit("echo")
        assert (await ledger.get(job.id)).status == "pending"
        assert ledger.path == ":memory:"
    async with jobledger.open(text) as ledger:  # a new, empty log
        assert await ledger.head() == 0
    assert os.listdir(tmp_path) == []


async def test_sqlite_in_memory_leaves_nothing_behind_after_close() -> None:
    folder = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
    before = set(folder.iterdir())
    async with jobledger.open("sqlite://") as ledger:
        await ledger.submit("echo")
        made = set(folder.iterdir()) - before
        assert [p.name.startswith("jobledger-") for p in made] == [True]
    assert set(folder.iterdir()) - before == set()


# -- what is refused -----------------------------------------------------------


BAD = [
    "sqlite:/x.db",
    "sqlite:x.db",
    "SQLITE:x.db",
    "sqlite:",
    "memory:",
    "memory:/",
    "postgresql:",
    "sqlite:///",
    "sqlite://host/x.db",
    "sqlite://x.db",
    "memory://x",
    "memory://?synchronous=FULL",
    "sqlite://?synchronous=FULL",
    "sqlite:///x.db?timeout=5",
    "sqlite:///x.db?synchronous=OFF",
    "sqlite:///x.db?synchronous",
    "sqlite:///x.db?synchronous=FULL&synchronous=FULL",
    "sqlite+aiosqlite:///x.db",
    "http://x",
    "file://x",
    "file:///x.db",
    "",
    "jobs\x00.db",
    "sqlite:///jobs\x00.db",
]


@pytest.mark.parametrize("text", BAD)
async def test_a_malformed_or_unknown_url_is_refused_and_creates_nothing(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(jobledger.ValidationError) as caught:
        BackendURL.parse(text)
    assert type(caught.value) is jobledger.ValidationError
    assert caught.value.field == "url"
    assert FORMS in str(caught.value)
    assert "sqlite:////absolute/jobs.db" in str(caught.value)
    with pytest.raises(jobledger.ValidationError, match="accepted forms"):
        async with jobledger.open(text):
            pass
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("text", "dsn", "schema"),
    [
        ("postgresql://user@host/jobs", "postgresql://user@host/jobs", None),
        ("postgres://host/jobs", "postgres://host/jobs", None),
        ("postgresql://u:pw@h:5433/db?schema=tenant_a", "postgresql://u:pw@h:5433/db", "tenant_a"),
        (
            "postgresql://h/db?sslmode=require&schema=s1&application_name=x",
            "postgresql://h/db?sslmode=require&application_name=x",
            "s1",
        ),
    ],
)
def test_a_postgresql_url_names_the_server_and_the_schema(
    text: str, dsn: str, schema: str | None
) -> None:
    url = BackendURL.parse(text)
    assert (url.scheme, url.dsn, url.schema, url.path) == ("postgresql", dsn, schema, None)
    assert not url.in_memory
    assert "pw" not in str(url)  # (a URL shown never holds the password)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("postgresql+psycopg://h/db", "url"),
        ("postgresql://", "url"),
        ("postgresql://h/db?schema=Bad", "schema"),
        ("postgresql://h/db?schema=a;drop", "schema"),
        ("postgresql://h/db?schema=" + "x" * 54, "schema"),
        ("postgresql://h/db?schema=pg_catalog", "schema"),
        ("postgresql://h/db?schema=", "schema"),
        ("postgresql://h/db?schema=a&schema=b", "url"),
    ],
)
async def test_a_bad_postgresql_url_is_refused_and_creates_nothing(
    text: str, field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(jobledger.ValidationError) as caught:
        async with jobledger.open(text):
            pass
    assert type(caught.value) is jobledger.ValidationError
    assert caught.value.field == field
    assert os.listdir(tmp_path) == []


def test_text_that_is_not_a_path_or_url_is_refused() -> None:
    with pytest.raises(jobledger.ValidationError, match="not int"):
        BackendURL.parse(42)  # type: ignore[arg-type]


async def test_synchronous_given_twice_must_agree(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}?synchronous=NORMAL"
    with pytest.raises(jobledger.ValidationError) as caught:
        async with jobledger.open(url, synchronous="FULL"):
            pass
    assert caught.value.field == "synchronous"
    assert not (tmp_path / "x.db").exists()
    async with jobledger.open(url, synchronous="NORMAL") as ledger:
        await ledger.submit("echo")
    with pytest.raises(jobledger.ValidationError) as caught:
        async with jobledger.open(tmp_path / "y.db", synchronous="OFF"):  # type: ignore[arg-type]
            pass
    assert caught.value.field == "synchronous"
    assert not (tmp_path / "y.db").exists()


# -- the command line ----------------------------------------------------------


def _log_with_a_job(file: Path) -> jobledger.store.Head:
    async def make() -> jobledger.store.Head:
        async with jobledger.open(file) as ledger:
            await ledger.submit("echo")
            return await ledger.digest()

    return asyncio.run(make())


def test_the_cli_takes_db_as_a_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = _log_with_a_job(tmp_path / "jobs.db")
    assert main(["digest", "--db", f"sqlite:///{tmp_path / 'jobs.db'}"]) == 0
    assert capsys.readouterr().out == f"{head.seq}:{head.hash}\n"
    assert main(["digest", "--db", str(tmp_path / "jobs.db")]) == 0  # a path, as before
    assert capsys.readouterr().out == f"{head.seq}:{head.hash}\n"


def test_the_cli_falls_back_to_jobledger_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    head = _log_with_a_job(tmp_path / "from-env.db")
    other = _log_with_a_job(tmp_path / "other.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JOBLEDGER_DB", f"sqlite:///{tmp_path / 'from-env.db'}")
    assert main(["digest"]) == 0
    assert capsys.readouterr().out == f"{head.seq}:{head.hash}\n"
    assert main(["digest", "--db", "other.db"]) == 0  # --db comes first
    assert capsys.readouterr().out == f"{other.seq}:{other.hash}\n"
    assert not (tmp_path / "jobledger.db").exists()


def test_the_cli_defaults_to_jobledger_db_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    head = _log_with_a_job(tmp_path / "jobledger.db")
    assert main(["digest"]) == 0
    assert capsys.readouterr().out == f"{head.seq}:{head.hash}\n"
    monkeypatch.setenv("JOBLEDGER_DB", "")  # set but empty: the default
    assert main(["digest"]) == 0
    assert capsys.readouterr().out == f"{head.seq}:{head.hash}\n"


def test_the_demo_writes_the_one_default_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--no-live", "--jobs", "1", "--pause", "0"]) == 0
    assert (tmp_path / "jobledger.db").is_file()
    capsys.readouterr()
    assert main(["verify"]) == 0  # the other commands find it by the same default
    assert "verify: ok" in capsys.readouterr().out


def test_the_demo_runs_in_memory_and_writes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--db", "memory://", "--no-live", "--jobs", "1", "--pause", "0"]) == 0
    out = capsys.readouterr().out
    assert "verify: ok" in out
    assert "log: in memory, gone now" in out
    assert "inspect it with" not in out  # no command could find it
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("text", ["http://x", "sqlite:x.db", "postgresql+x://h/db", "memory://"])
def test_the_cli_refuses_a_bad_db_with_exit_2_and_creates_nothing(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["list", "--db", text]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jobledger: error: --db: ")
    assert ("sqlite:////absolute/jobs.db" in err) or ("in memory" in err)
    monkeypatch.setenv("JOBLEDGER_DB", text)
    assert main(["import", os.devnull]) == 2
    assert capsys.readouterr().err.startswith("jobledger: error: JOBLEDGER_DB: ")
    assert os.listdir(tmp_path) == []
