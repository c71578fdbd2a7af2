"""Submissions: new work in, as commands to the Stower (``submit``, a raw
``send``), and the job types that check it (``register``, ``job_types``)."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
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

__all__ = ["Submissions"]


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
        owner = _as_user(user) or SYSTEM_USER
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
            timeout=_seconds(timeout, "timeout"),
            max_retries=max_retries,
            max_recoveries=max_recoveries,
            retry=retry,
        )
        job_id = self._ids.make("job", to_ms(self._clock.now()))
        envelopes = await self._bus.send(
            JobCreate(
                job_id=job_id,
                job_type=job_type,
                params=rules.params,
                user=owner,
                priority=priority,
                run_at=run_at,
                max_retries=rules.max_retries,
                max_recoveries=rules.max_recoveries,
                timeout=rules.timeout,
                idempotency_key=idempotency_key,
                queue=rules.queue,
                suspendable=rules.suspendable,
                retry=rules.retry,
                actor=owner.id,
                correlation_id=correlation_id or job_id,
            )
        )
        if not envelopes and idempotency_key is not None:
            existing = await self._log.job_by_key(owner.id, owner.tenant, idempotency_key)
            if existing is not None:
                return existing
        job: Job | None = None
        for env in envelopes:
            job = evolve_job(job, env)
        assert job is not None
        return job
