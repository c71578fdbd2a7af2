"""Storage faults for the reliability battery (issue 6, items 3, 4 and 12):
power loss with a torn WAL, a full disk and failing writes, and a WAL under a
long reader.

Power loss. A writer process (``faults.py``'s child: submits in groups of
four, acknowledged in the ``acks`` file, while its workers run the jobs) is
frozen with SIGSTOP at random moments. While it is stopped nothing writes the
files, so a copy of the database, its WAL and its ``-shm`` is the state the
disk would hold had the power gone at that instant, with everything the
writer had handed to the kernel written. The ``acks`` file, read while the
writer is stopped, lists exactly the submits acknowledged before that
instant. The copy is opened without its ``-shm`` (SQLite rebuilds the WAL
index from the WAL, as after a reboot).

What a power cut can lose on top of that is what was not yet synced: the
WAL's unsynced tail. The ``-shm`` copy tells where it begins: ``mxFrame``,
the last frame of the last commit, which under ``synchronous=FULL`` was
fsynced before ``COMMIT`` returned. Each frozen copy is opened three ways:

- ``whole``: the WAL as it is: every acknowledged submit is in the log;
- ``tail``: the WAL cut at a random byte past ``mxFrame`` (a power cut
  under ``FULL``): every acknowledged submit is in the log;
- ``synced``: the WAL cut at a random byte between the last frame already
  copied into the database (``nBackfill``) and ``mxFrame``, as a disk that
  loses synced writes would (or a power cut under ``synchronous=NORMAL``):
  acknowledged submits may be lost, but only as a suffix (the log is a
  prefix of what was acknowledged: no hole, no half batch).

Every copy must keep the other invariants of ``faults.check_invariants``.
A cut below ``nBackfill`` is not tested: the database then holds pages
newer than the WAL that is left, which no power cut can produce (SQLite
syncs the WAL before it copies frames into the database).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import faults

import jobledger
import jobledger.core
from jobledger import Job, JobContext, JobWorker
from jobledger.store import SqliteLog

# -- power loss (item 3) -------------------------------------------------


@dataclass(frozen=True)
class WalIndex:
    """What the ``-shm`` says of the WAL: the last committed frame
    (``mx_frame``), how far frames were copied into the database
    (``backfilled``, the larger of nBackfill and nBackfillAttempted), and the
    salt of the WAL generation it indexes. ``consistent`` is false when the
    writer was stopped half-way through updating it."""

    mx_frame: int
    backfilled: int
    salt: bytes
    consistent: bool


def wal_index(shm: bytes) -> WalIndex:
    """Parse the WAL-index header and checkpoint info of a ``-shm`` copy
    (native byte order; https://sqlite.org/walformat.html)."""
    first, second = shm[:48], shm[48:96]
    (mx_frame,) = struct.unpack_from("=I", first, 16)
    (n_backfill,) = struct.unpack_from("=I", shm, 96)
    (attempted,) = struct.unpack_from("=I", shm, 128)
    return WalIndex(mx_frame, max(n_backfill, attempted), first[32:40], first == second)


def frame_end(frame: int, page_size: int) -> int:
    """The byte offset just past WAL frame ``frame`` (1-based; 0: the header)."""
    return 32 + frame * (24 + page_size)


@dataclass(frozen=True)
class Frozen:
    """One copy taken while the writer was stopped, with the records of that instant."""

    db: Path
    wal: bytes
    index: WalIndex | None  # None: no -shm
    sent: set[str]
    acked: dict[str, str]
    order: list[str]  # acknowledged keys in the order of the acks file


def _stopped(pid: int) -> None:
    """Wait until the process ``pid`` is stopped (every thread)."""
    os.waitid(os.P_PID, pid, os.WSTOPPED)


def freeze_copies(
    db: Path, workdir: Path, copies: int, rng: random.Random, *, jobs: int, jitter: float = 0.0
) -> list[Frozen]:
    """Run a writer on ``db`` (``jobs`` jobs, in groups of four) and take
    ``copies`` copies, each while it is stopped (SIGSTOP) after a random
    acknowledged group (and ``jitter`` seconds at most more)."""
    groups = jobs // 4
    moments = sorted(rng.sample(range(1, groups), min(copies, groups - 1)))
    proc = subprocess.Popen(
        [sys.executable, faults.__file__, str(db), str(workdir), str(jobs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    taken: list[Frozen] = []
    try:
        seen = 0
        for moment in moments:
            while seen < moment:
                if not proc.stdout.readline():
                    raise RuntimeError("the writer ended early")
                seen += 1
            if jitter:
                time.sleep(rng.uniform(0, jitter))  # a random moment, not a wait for something
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                _stopped(proc.pid)
                taken.append(_copy(db, workdir, len(taken)))
            finally:
                os.kill(proc.pid, signal.SIGCONT)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    return taken


def _copy(db: Path, workdir: Path, n: int) -> Frozen:
    target = workdir / f"copy-{n}.db"
    shutil.copyfile(db, target)
    wal = Path(f"{db}-wal").read_bytes() if Path(f"{db}-wal").exists() else b""
    shm = Path(f"{db}-shm").read_bytes() if Path(f"{db}-shm").exists() else b""
    sent, acked = faults.records(workdir)
    order = [line.split()[0] for line in (workdir / "acks").read_text().splitlines()]
    index = wal_index(shm) if len(shm) >= 136 else None
    return Frozen(target, wal, index, sent, acked, [k for k in order if k in acked])


def cuts(frozen: Frozen, rng: random.Random) -> dict[str, int]:
    """Where to cut this copy's WAL, by kind (see the module docstring)."""
    wal, index = frozen.wal, frozen.index
    found = {"whole": len(wal)}
    if len(wal) < 32 or index is None or not index.consistent or wal[16:24] != index.salt:
        return found  # no WAL, or a WAL whose frames are all in the database already
    (page_size,) = struct.unpack_from(">I", wal, 8)
    synced_end = frame_end(index.mx_frame, page_size)
    if len(wal) > synced_end:
        found["tail"] = rng.randrange(synced_end, len(wal))
    low = frame_end(index.backfilled, page_size)
    if synced_end > low:
        found["synced"] = rng.randrange(low, synced_end)
    return found


async def _created_keys(db: Path) -> set[str]:
    async with jobledger.open(db, sweep_interval=3600) as ledger:
        return {
            env.data.idempotency_key  # type: ignore[union-attr]
            async for env in ledger.events(types=["job.created"])
        }


def _reset(frozen: Frozen, cut: int) -> Path:
    """The frozen copy's database with its WAL cut at ``cut``, and no ``-shm``."""
    db = frozen.db.with_name(frozen.db.stem + "-open.db")
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(frozen.db, db)
    if frozen.wal:
        Path(f"{db}-wal").write_bytes(frozen.wal[:cut])
    return db


async def check_cut(frozen: Frozen, kind: str, cut: int) -> int:
    """Open the copy with its WAL cut at ``cut`` and check it; returns how
    many acknowledged submits it lost (only a ``synced`` cut may lose any)."""
    db = _reset(frozen, cut)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",), (kind, cut)
    finally:
        conn.close()
    present = await _created_keys(db)
    lost = [key for key in frozen.order if key not in present]
    if kind != "synced":
        assert not lost, f"{kind} cut at {cut}: acknowledged submits lost: {lost}"
    elif lost:
        # A prefix: nothing acknowledged after the first lost group survives.
        # (Groups of four are submitted together: within one, order is free.)
        first = frozen.order.index(lost[0]) // 4 * 4
        assert not present & set(frozen.order[first + 4 :]), f"a hole in the log at {cut}"
    kept = {key: job for key, job in frozen.acked.items() if key in present}
    await faults.check_invariants(db, frozen.sent, kept)
    return len(lost)


async def power_cuts(
    workdir: Path, copies: int, seed: int, *, jobs: int, jitter: float = 0.0
) -> dict[str, Any]:
    """Take ``copies`` frozen copies of a writer's files and check every cut
    of each; returns the figures."""
    rng = random.Random(seed)
    db = workdir / "power.db"
    taken = freeze_copies(db, workdir, copies, rng, jobs=jobs, jitter=jitter)
    kinds: Counter[str] = Counter()
    lost = acked = 0
    salts = {frozen.wal[16:24] for frozen in taken if frozen.wal}
    for frozen in taken:
        acked = max(acked, len(frozen.acked))
        for kind, cut in cuts(frozen, rng).items():
            kinds[kind] += 1
            lost += await check_cut(frozen, kind, cut)
    return {
        "copies": len(taken),
        "wal_generations": len(salts),  # the WAL restarted after checkpoints between copies
        "cuts": dict(kinds),
        "acked": acked,
        "lost_in_synced_cuts": lost,
    }


# -- a full disk, failing writes (item 4) --------------------------------


class Brisk(JobWorker):
    """Reports progress, then completes, under a short lease: a report lost
    to a full disk is retried soon (the lease runs out, the sweeper expires
    it). It writes no file of its own, which the limit would refuse."""

    job_types = ("work",)
    concurrency = 4
    lease_seconds = 0.5
    progress_interval = 0.0

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        await ctx.progress(50)
        return {"n": job.params["n"]}


_RETRY = jobledger.RetryPolicy(base_delay=0.05, max_delay=0.1)


def _say(line: str) -> None:
    """A record for the parent, on stdout: a pipe, which no file-size limit touches."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _floor(db: str) -> int:
    """The lowest limit on file size that leaves the WAL no room to grow yet
    lets the ``-shm`` be: the end of the WAL's last committed frame (the WAL
    file may be longer: its old frames are written over from the start). The
    database file may be above it: then a checkpoint that must write past the
    limit fails too."""
    wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
    end = 0
    if wal.exists() and shm.exists() and wal.stat().st_size >= 32:
        with wal.open("rb") as file:
            (page_size,) = struct.unpack_from(">I", file.read(32), 8)
        end = frame_end(wal_index(shm.read_bytes()).mx_frame, page_size)
    return max(64 * 1024, end, shm.stat().st_size if shm.exists() else 0)


async def _group(ledger: jobledger.Ledger, keys: list[str], errors: Counter[str]) -> list[Job]:
    """Submit one group (said to be sent first); acknowledge the ones that
    succeeded; count the others' errors, which must be exactly ``StorageError``."""
    for key in keys:
        _say(f"sent {key}")
    results = await asyncio.gather(
        *(
            ledger.submit("work", {"n": key}, idempotency_key=key, max_retries=2, retry=_RETRY)
            for key in keys
        ),
        return_exceptions=True,
    )
    done: list[Job] = []
    for key, result in zip(keys, results, strict=True):
        if isinstance(result, Job):
            _say(f"ack {key} {result.id}")
            done.append(result)
        elif type(result) is not jobledger.core.StorageError:
            raise AssertionError(f"not a StorageError: {result!r}") from result
        else:
            errors[str(result.__cause__)] += 1
    return done


class _Limit:
    """Lowers the space a writer has, and gives it back: a limit on file
    size (RLIMIT_FSIZE: writes past it fail with EFBIG, which SQLite reports
    as an I/O error), or, with ``ballast``, a file that fills the file system
    the log is on but for ``room`` bytes (writes fail with ENOSPC: SQLite's
    "database or disk is full")."""

    def __init__(self, db: str, ballast: str | None) -> None:
        self.db = db
        self.ballast = ballast
        self.soft, self.hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)

    def lower(self, room: int) -> None:
        if self.ballast is None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (_floor(self.db) + room, self.hard))
            return
        with open(self.ballast, "wb") as file:
            for _ in range(100):
                stat = os.statvfs(os.path.dirname(self.ballast))
                size = stat.f_bavail * stat.f_frsize - room
                if size <= 0:
                    return
                try:
                    os.posix_fallocate(file.fileno(), 0, size)
                    return
                except OSError:  # the writer took some of the space meanwhile: again
                    continue
            raise RuntimeError("could not fill the file system")

    def restore(self) -> None:
        if self.ballast is None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.soft, self.hard))
        else:
            os.unlink(self.ballast)


async def full_child(db: str, rounds: int, step: int, ballast: str | None = None) -> None:
    """Rounds of a full disk, in one process: leave the WAL ``round * step``
    bytes to grow (``_Limit``), submit until writes fail, check the failure
    (a ``StorageError``; a command on a job the Stower's cache holds fails
    too and leaves it as it was), give the space back and check that the
    Stower serves; at the end every acknowledged job must end. Says what it
    sent and what was acknowledged on stdout, then the figures, as JSON."""
    limit = _Limit(db, ballast)
    errors: Counter[str] = Counter()
    acked: list[Job] = []
    under_limit = 0  # submits that fitted under a limit before one failed
    async with jobledger.open(db, workers=[Brisk()], sweep_interval=0.1) as ledger:
        for r in range(rounds):
            keys = iter(f"{os.getpid()}-{r}-{n}" for n in range(100_000))
            acked += await _group(ledger, [next(keys) for _ in range(4)], errors)
            # A pending job the Stower's cache holds (no worker runs "probe").
            _say(f"sent probe-{r}")
            probe = await ledger.submit("probe", idempotency_key=f"probe-{r}")
            _say(f"ack probe-{r} {probe.id}")
            limit.lower(r * step)
            try:
                failures = sum(errors.values())
                while sum(errors.values()) == failures:  # until a write fails
                    fitted = await _group(ledger, [next(keys) for _ in range(4)], errors)
                    acked += fitted
                    under_limit += len(fitted)
                try:
                    await ledger.cancel(probe.id)
                    cancelled = True
                except jobledger.core.StorageError as exc:
                    if type(exc) is not jobledger.core.StorageError:
                        raise
                    cancelled = False
            finally:
                limit.restore()
            assert ledger.statistics().stower.running
            # The cache holds what was committed, not what was rolled back.
            assert (await ledger.get(probe.id)).status == ("cancelled" if cancelled else "pending")
            seen = errors.copy()
            after = await _group(ledger, [next(keys) for _ in range(4)], errors)
            assert len(after) == 4, f"the Stower fails once space returns: {errors - seen}"
            acked += after
            if not cancelled:
                assert (await ledger.cancel(probe.id)).status == "cancelled"
        for job in acked:
            await ledger.wait(job.id, timeout=60)
    figures = {"acked": len(acked), "under_limit": under_limit, "errors": dict(errors)}
    _say(json.dumps(figures))


def run_full_child(
    db: Path, *, rounds: int, step: int, ballast: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one ``full_child`` process on ``db``."""
    extra = [] if ballast is None else [str(ballast)]
    return subprocess.run(
        [sys.executable, __file__, "full", str(db), str(rounds), str(step), *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )


def said(stdout: str) -> tuple[set[str], dict[str, str]]:
    """What a child said it sent (keys) and had acknowledged (key → job id)."""
    sent: set[str] = set()
    acked: dict[str, str] = {}
    for line in stdout.splitlines():
        parts = line.split()
        if parts[0] == "sent":
            sent.add(parts[1])
        elif parts[0] == "ack":
            acked[parts[1]] = parts[2]
    return sent, acked


async def disk_full(
    workdir: Path, *, rounds: int, step: int, small_fs: Path | None = None
) -> dict[str, Any]:
    """A ``full_child`` run, then the invariants on its file; returns the
    figures. With ``small_fs`` (a small file system of its own, such as a
    tmpfs), the log lives there and a ballast file fills it."""
    db = (small_fs or workdir) / "full.db"
    ballast = None if small_fs is None else small_fs / "ballast"
    result = run_full_child(db, rounds=rounds, step=step, ballast=ballast)
    if result.returncode != 0:
        raise RuntimeError(f"the disk-full child failed\n{result.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    figures["entries"] = await faults.check_invariants(db, *said(result.stdout))
    figures["rounds"] = rounds
    return figures


# -- the environment (item 12) ---------------------------------------------


def _wal_size(db: Path) -> int:
    wal = Path(f"{db}-wal")
    return wal.stat().st_size if wal.exists() else 0


async def wal_under_a_long_reader(
    db: Path, *, held: int, after: int, wal_size_limit: int
) -> dict[str, int]:
    """Submit ``held`` jobs while another connection holds one read
    transaction open (its snapshot keeps every frame since in the WAL), let
    it go, submit ``after`` more; then close the ledger while that connection
    stays open (not reading). Returns the WAL's size at each step."""
    ledger = jobledger.Ledger(SqliteLog(db, wal_size_limit=wal_size_limit))
    await ledger.start()
    reader = sqlite3.connect(db, isolation_level=None)
    try:
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM events").fetchone()  # the snapshot is taken
            for n in range(held):
                await ledger.submit("work", {"n": n})
            held_size = _wal_size(db)
            reader.execute("COMMIT")  # the reader lets go
            for n in range(after):
                await ledger.submit("work", {"n": n})
            after_size = _wal_size(db)
        finally:
            await ledger.aclose()
        closed_size = _wal_size(db)
    finally:
        reader.close()
    return {"while_held": held_size, "after_release": after_size, "after_close": closed_size}


async def fork_child(db: str) -> None:
    """In a process of its own: open a ledger, fork; the child tries the
    parent's ledger (each call must fail with a typed error at once), opens
    its own on the same file and writes, and ends with ``os._exit`` (as a
    multiprocessing child does); the parent writes meanwhile, then checks the
    file. Prints the outcome, as JSON."""
    async with jobledger.open(db) as ledger:
        job = await ledger.submit("t")
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            outcome = asyncio.run(_in_the_child(db, ledger, job.id))
            os.write(write, json.dumps(outcome).encode())
            os._exit(0)
        os.close(write)
        for n in range(20):
            await ledger.submit("parent", {"n": n})
        loop = asyncio.get_running_loop()
        _, status = await loop.run_in_executor(None, os.waitpid, pid, 0)
        with os.fdopen(read) as said_by_child:
            outcome = json.loads(said_by_child.read() or "{}")
        outcome["child_status"] = status
        await ledger.submit("parent", {"n": "after"})
        outcome["parent_head"] = await ledger.head()
        outcome["parent_verify"] = (await ledger.verify()).ok
    async with jobledger.open(db) as ledger:
        outcome["reopened_head"] = await ledger.head()
        outcome["reopened_verify"] = (await ledger.verify()).ok
    print(json.dumps(outcome), flush=True)


async def _in_the_child(db: str, ledger: jobledger.Ledger, job_id: str) -> dict[str, Any]:
    outcome: dict[str, Any] = {}
    calls = {
        "get": lambda: ledger.get(job_id),
        "submit": lambda: ledger.submit("t"),
        "log.get_job": lambda: ledger._log.get_job(job_id),  # the store beneath
    }
    for name, call in calls.items():
        try:
            await asyncio.wait_for(call(), 10)
            outcome[name] = "answered"
        except Exception as exc:
            outcome[name] = type(exc).__name__
    await ledger.aclose()  # lets go of the parent's ledger without touching it
    async with jobledger.open(db) as own:
        for n in range(20):
            await own.submit("child", {"n": n})
        outcome["child_verify"] = (await own.verify()).ok
    return outcome


if __name__ == "__main__":
    if sys.argv[1] == "full":
        ballast = sys.argv[5] if len(sys.argv) > 5 else None
        asyncio.run(full_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), ballast))
    elif sys.argv[1] == "fork":
        asyncio.run(fork_child(sys.argv[2]))
