"""The commands that change jobs: ``submit``, ``cancel``, ``suspend``,
``resume`` and ``delete``. Each opens an existing log to write (a typo in
``--db`` makes no new log for a job to wait in forever; as the operator: no
ownership check, the actor ``system`` unless ``--user`` is given), sends
one command, and prints the job: a line for a person, or with ``--json``
the job's :class:`~jobledger.views.JobView` (one JSON document) for a
script. Errors are the command's exit codes (``main.exit_code``): an
unknown job 3, an illegal transition 4.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.text import Text

from jobledger import open as open_ledger
from jobledger.core import Job, JobStatus, ValidationError
from jobledger.views import job_view

from .common import _existing, _MissingFile
from .formatting import _print_json, _status

__all__: list[str] = []

_PARAMS_LIMIT = 1 << 20  # bytes of --params or --params-file (the command's own limit is 1 MiB)


def _params(args: argparse.Namespace) -> dict[str, Any]:
    """``--params`` (JSON) or the JSON of ``--params-file``: an object."""
    if args.params is not None and args.params_file is not None:
        raise ValidationError("give --params or --params-file, not both", field="--params")
    if args.params_file is not None:
        path = Path(args.params_file)
        if not path.is_file():
            raise _MissingFile(args.params_file)
        raw = path.read_bytes()
        field = "--params-file"
    elif args.params is not None:
        raw, field = args.params.encode(), "--params"
    else:
        return {}
    if len(raw) > _PARAMS_LIMIT:
        raise ValidationError(f"{field}: more than {_PARAMS_LIMIT} bytes", field=field)
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ValidationError(f"{field}: not JSON: {exc}", field=field) from None
    if not isinstance(value, dict):
        raise ValidationError(f"{field}: params are a JSON object", field=field)
    return value


def _print_job(out: Console, job: Job, now: Any, as_json: bool, line: Text) -> None:
    if as_json:
        _print_json(out, job_view(job, now))
    else:
        out.print(line, soft_wrap=True)


async def _submit(args: argparse.Namespace, out: Console) -> int:
    params = _params(args)
    async with open_ledger(_existing(args.db)) as ledger:
        job = await ledger.submit(
            args.job_type,
            params,
            user=args.user,
            idempotency_key=args.idempotency_key,
            priority=args.priority,
            run_at=args.run_at,
        )
        if args.wait:
            job = await ledger.wait(job.id, timeout=args.timeout)
        now = ledger.clock.now()
    line = Text(job.id)
    if args.wait:
        line = Text.assemble(job.id, " ", _status(job.status))
    _print_job(out, job, now, args.json, line)
    return 0 if not args.wait or job.status is JobStatus.COMPLETED else 1


async def _change(args: argparse.Namespace, out: Console) -> int:
    """``cancel``, ``suspend``, ``resume`` and ``retry``: the job as the command left it."""
    async with open_ledger(_existing(args.db)) as ledger:
        if args.command == "cancel":
            job = await ledger.cancel(args.job_id, user=args.user, reason=args.reason)
        elif args.command == "suspend":
            job = await ledger.suspend(args.job_id, user=args.user)
        elif args.command == "retry":
            job = await ledger.retry(args.job_id, user=args.user, reason=args.reason)
        else:
            job = await ledger.resume(args.job_id, user=args.user)
        now = ledger.clock.now()
    said = _status(job.status)
    if job.cancel_requested and job.status is JobStatus.RUNNING:
        said = Text("cancel requested (running: its worker stops it)", "yellow")
    elif job.suspend_requested and job.status is JobStatus.RUNNING:
        said = Text("suspend requested (running: its worker stops it)", "yellow")
    _print_job(out, job, now, args.json, Text.assemble(job.id, " ", said))
    return 0


async def _cleanup(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db)) as ledger:
        deleted = await ledger.cleanup(args.older_than, statuses=args.statuses)
    if args.json:
        _print_json(out, {"deleted": deleted})
    else:
        out.print(Text(f"deleted {deleted} job(s)"))
    return 0


async def _delete(args: argparse.Namespace, out: Console) -> int:
    async with open_ledger(_existing(args.db)) as ledger:
        await ledger.delete(args.job_id, user=args.user)
    if args.json:
        _print_json(out, {"id": args.job_id, "deleted": True})
    else:
        out.print(Text.assemble("deleted ", args.job_id), soft_wrap=True)
    return 0
