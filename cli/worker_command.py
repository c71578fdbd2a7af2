"""``jobledger worker``: run an application's workers on a log until stopped.

``--app MODULE:ATTR`` names the workers: ``ATTR`` is a ``JobWorker``, a list
or tuple of them, or a callable (sync or async) that returns either. The
folder ``--app-dir`` (default: the working directory) is put first on the
import path, as uvicorn and celery do, so ``--app myapp.workers:WORKERS``
works from the project's root.

Signals: the first SIGTERM or SIGINT stops claiming and gives running jobs
``--grace`` seconds; then they are cancelled and their leases released
(``job.released``: pending again at once, for another worker, with no retry
or recovery spent), and the command exits 0. A second signal ends the grace
at once. If the ledger fails (a part of it died), the command exits 1, so a
process manager restarts it.

Logs go to stderr, one JSON object a line (structlog): ``job started`` and
``job ended`` for every job, with the ``job_id`` and ``worker`` the runner
binds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import logging
import os
import signal
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import structlog
from rich.console import Console

from jobledger import open as open_ledger
from jobledger.core import ValidationError, get_logger
from jobledger.workers import JobWorker

__all__: list[str] = []

log = get_logger("cli")


async def load_workers(
    spec: str,
    *,
    app_dir: str = ".",
    types: Iterable[str] | None = None,
    concurrency: int | None = None,
) -> list[JobWorker]:
    """The workers ``spec`` (``MODULE:ATTR``) names, those of ``types`` only
    (every one when ``None``), each with ``concurrency`` slots when given.
    ``ValidationError`` (field ``--app``) for anything else: a malformed
    spec, a module that does not import, an attribute that is missing or
    holds no workers, no worker of ``types``."""
    value = _resolve(spec, app_dir)
    if inspect.isawaitable(value):  # an async factory
        try:
            value = await value
        except Exception as exc:
            raise ValidationError(
                f"--app {spec!r}: the factory failed: {type(exc).__name__}: {exc}",
                field="--app",
            ) from None
    return _select(spec, value, types, concurrency)


def _resolve(spec: str, app_dir: str) -> Any:
    """What ``MODULE:ATTR`` names, called if it is a factory."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValidationError(f"--app {spec!r}: expected MODULE:ATTR", field="--app")
    folder = os.path.abspath(app_dir)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # (an ImportError, or the module's own error)
        raise ValidationError(
            f"--app {spec!r}: cannot import {module_name}: {type(exc).__name__}: {exc}",
            field="--app",
        ) from None
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            raise ValidationError(f"--app {spec!r}: {module_name} has no {attr}", field="--app")
        value = getattr(value, part)
    if callable(value) and not isinstance(value, JobWorker):
        try:
            value = value()
        except Exception as exc:
            raise ValidationError(
                f"--app {spec!r}: calling {attr} failed: {type(exc).__name__}: {exc}",
                field="--app",
            ) from None
    return value


def _select(
    spec: str, value: Any, types: Iterable[str] | None, concurrency: int | None
) -> list[JobWorker]:
    workers = [value] if isinstance(value, JobWorker) else value
    if not isinstance(workers, list | tuple) or not all(isinstance(w, JobWorker) for w in workers):
        raise ValidationError(
            f"--app {spec!r}: expected a JobWorker or a list of them, got {type(value).__name__}",
            field="--app",
        )
    if types is not None:
        wanted = set(types)
        workers = [w for w in workers if wanted & set(w.job_types)]
    if not workers:
        raise ValidationError(f"--app {spec!r}: no worker for those job types", field="--types")
    if concurrency is not None:
        for worker in workers:
            worker.concurrency = concurrency
    return list(workers)


@contextlib.contextmanager
def _log_json() -> Iterator[None]:
    """While in the block: jobledger's log records as JSON lines on stderr,
    at INFO and above, with the fields each record carries (``job_id``,
    ``worker``, ...). The logger is as it was after it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger("jobledger")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def _worker(args: argparse.Namespace, out: Console) -> int:
    types = None if args.types is None else [t for t in args.types.split(",") if t]
    workers = await load_workers(
        args.app, app_dir=args.app_dir, types=types, concurrency=args.concurrency
    )
    with _log_json():
        return await _run(args, workers)


async def _run(args: argparse.Namespace, workers: list[JobWorker]) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals: list[int] = []
    try:
        async with open_ledger(args.db, workers=workers, stop_timeout=args.grace) as ledger:

            def on_signal(signum: int) -> None:
                signals.append(signum)
                name = signal.Signals(signum).name
                if len(signals) == 1:
                    log.info("stopping: no new claims", signal=name, grace=args.grace)
                    stop.set()
                else:
                    log.info("stopping at once", signal=name)
                    ledger.end_grace()

            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, on_signal, signum)
            log.info("worker running", workers=[w.name for w in workers], db=args.db)
            stopped = asyncio.ensure_future(stop.wait())
            closed = asyncio.ensure_future(ledger.wait_closed())
            await asyncio.wait({stopped, closed}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            closed.cancel()
        # (the handlers stay through the close: a second signal ends its grace)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    health = ledger.health()
    failed = [part for part in health.parts if part.state == "failed"]
    if failed:
        for part in failed:
            log.error("the ledger failed", part=part.part, error=part.error)
        return 1
    log.info("worker stopped")
    return 0
