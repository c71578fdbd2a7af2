"""Submissions: new work in, as commands to the Stower (``submit``, a raw
``send``), and the job types that check it (``register``, ``job_types``)."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import msgspec

from jobledger.core import (
    SYSTEM_USER,
    Clock,
    Command,
    IdFactory,
    Job,
    JobCreate,
    JobType,
    Registry,
    RetryPolicy,
    ValidationError,
    check_json,
    evolve_job,
    to_ms,
    validate_command,
)
from jobledger.eventbus import EventBus, Reply
from jobledger.store import ReadModel

from .arguments import UserArg, _as_user, _seconds

__all__ = ["NewJob", "Submissions"]


class NewJob(msgspec.Struct, frozen=True):
    """One job of :meth:`jobledger.Ledger.submit_many`: the arguments of
    :meth:`jobledger.Ledger.submit`, with the same meaning and defaults
    (``NewJob("report", {"month": "2026-01"}, priority=5)``)."""

    job_type: str
    params: Any = None
    user: Any = None
    idempotency_key: str | None = None
    priority: int = 0
    run_at: datetime | None = None
    max_retries: int | None = None
    timeout: float | timedelta | None = None
    retry: RetryPolicy | None = None
    correlation_id: str | None = None
    max_recoveries: int | None = None


class Submissions:
    """Submitting jobs to one log through its bus, checked against a registry.
    Each method's contract is that of the :class:`jobledger.Ledger` method of
    its name."""

    def __init__(
        self,
        log: ReadModel,
        bus: EventBus,
        *,
        registry: Registry,
        ids: IdFactory,
        clock: Clock,
        check_open: Callable[[], None],
    ) -> None:
        self._log = log
        self._bus = bus
        self._registry = registry
        self._ids = ids
        self._clock = clock
        self._check_open = check_open

    async def send(self, command: Command) -> Reply:
        self._check_open()
        return await self._bus.send(command)

    def register(self, job_type: JobType) -> None:
        if not isinstance(job_type, JobType):
            raise ValidationError("must be a jobledger.JobType", field="job_type")
        for name in ("params", "result"):
            kind = getattr(job_type, name)
            if kind is not None and not (
                isinstance(kind, type) and issubclass(kind, msgspec.Struct)
            ):
                raise ValidationError("must be a msgspec Struct type or None", field=name)
        if not isinstance(job_type.description, str):
            raise ValidationError("must be a string", field="description")
        if job_type.retry is not None and not isinstance(job_type.retry, RetryPolicy):
            raise ValidationError("must be a jobledger.RetryPolicy", field="retry")
        # Its rules are checked as a submission of the type would be.
        validate_command(
            JobCreate(
                job_id="job_type",
                job_type=job_type.name,
                user=SYSTEM_USER,
                max_retries=job_type.max_retries,
                max_recoveries=job_type.max_recoveries,
                timeout=_seconds(job_type.timeout, "timeout"),
                queue=job_type.queue,
                suspendable=job_type.suspendable,
                retry=job_type.retry,
            )
        )
        self._registry.register(job_type)

    def job_types(self) -> builtins.list[JobType]:
        return self._registry.all()

    async def submit(
        self,
        job_type: str,
        params: Mapping[str, Any] | msgspec.Struct | None = None,
        *,
        user: UserArg = None,
        idempotency_key: str | None = None,
        priority: int = 0,
        run_at: datetime | None = None,
        max_retries: int | None = None,
        timeout: float | timedelta | None = None,
        retry: RetryPolicy | None = None,
        correlation_id: str | None = None,
        max_recoveries: int | None = None,
    ) -> Job:
        self._check_open()
        command = self._command(
            NewJob(
                job_type,
                params,
                user=user,
                idempotency_key=idempotency_key,
                priority=priority,
                run_at=run_at,
                max_retries=max_retries,
                timeout=timeout,
                retry=retry,
                correlation_id=correlation_id,
                max_recoveries=max_recoveries,
            )
        )
        return await self._created(command, await self._bus.send(command))

    async def submit_many(self, jobs: Iterable[NewJob]) -> builtins.list[Job]:
        self._check_open()
        if isinstance(jobs, str | bytes | Mapping) or not isinstance(jobs, Iterable):
            raise ValidationError("must be a list of jobledger.NewJob", field="jobs")
        commands: builtins.list[JobCreate] = []
        for index, job in enumerate(jobs):
            if not isinstance(job, NewJob):
                raise ValidationError("must be a jobledger.NewJob", field=f"jobs[{index}]")
            try:
                commands.append(self._command(job))
            except ValidationError as exc:
                where = f"jobs[{index}]" + (f".{exc.field}" if exc.field else "")
                raise ValidationError(
                    str(exc).removeprefix(f"{exc.field}: "), field=where
                ) from None
        # Sent in one turn of the loop: they reach the Stower together, and it
        # decides them in one batch (each as if alone) and commits them at once.
        replies = await asyncio.gather(
            *(self._bus.send(command) for command in commands), return_exceptions=True
        )
        created: builtins.list[Job] = []
        for command, reply in zip(commands, replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply
            created.append(await self._created(command, reply))
        return created

    def _command(self, new: NewJob) -> JobCreate:
        """The ``job:create`` a submission sends, checked: ``ValidationError``
        for a bad argument (nothing is sent)."""
        owner = _as_user(new.user) or SYSTEM_USER
        job_type, params, run_at, retry = new.job_type, new.params, new.run_at, new.retry
        if not isinstance(job_type, str):
            raise ValidationError("must be a string", field="job_type")
        if run_at is not None and (not isinstance(run_at, datetime) or run_at.tzinfo is None):
            raise ValidationError("must be an aware datetime", field="run_at")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ValidationError("must be a jobledger.RetryPolicy", field="retry")
        if isinstance(params, msgspec.Struct | Mapping):
            # JSON values only, checked before a Struct is converted (which
            # would turn sets into lists and bytes into base64, silently).
            check_json(params if isinstance(params, msgspec.Struct) else dict(params), "params")
        rules = self._registry.resolve(
            job_type,
            params,
            timeout=_seconds(new.timeout, "timeout"),
            max_retries=new.max_retries,
            max_recoveries=new.max_recoveries,
            retry=retry,
        )
        job_id = self._ids.make("job", to_ms(self._clock.now()))
        return JobCreate(
            job_id=job_id,
            job_type=job_type,
            params=rules.params,
            user=owner,
            priority=new.priority,
            run_at=run_at,
            max_retries=rules.max_retries,
            max_recoveries=rules.max_recoveries,
            timeout=rules.timeout,
            idempotency_key=new.idempotency_key,
            queue=rules.queue,
            suspendable=rules.suspendable,
            retry=rules.retry,
            actor=owner.id,
            correlation_id=new.correlation_id or job_id,
        )

    async def _created(self, command: JobCreate, envelopes: Reply) -> Job:
        """The job a ``job:create`` left: folded from its events, or (nothing
        written) the live job holding its idempotency key."""
        if not envelopes and command.idempotency_key is not None:
            existing = await self._log.job_by_key(
                command.user.id, command.user.tenant, command.idempotency_key
            )
            if existing is not None:
                return existing
        job: Job | None = None
        for env in envelopes:
            job = evolve_job(job, env)
        assert job is not None
        return job
