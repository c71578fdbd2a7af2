"""Administration: changing what exists (cancel, suspend, resume, delete and
clean up jobs; create, change and delete marks; store resources), each as a
command to the Stower, answered from the read model once committed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from jobledger.core import (
    SYSTEM_USER,
    Annotation,
    BodyOperation,
    Clock,
    Command,
    ContentStore,
    IdFactory,
    Job,
    JobCancel,
    JobDelete,
    JobResume,
    JobRetry,
    JobStatus,
    JobSuspend,
    Mark,
    MarkCreate,
    MarkDelete,
    MarkUpdateBody,
    NotFound,
    Resource,
    ValidationError,
    to_ms,
)
from jobledger.core.annotations import annotation_json
from jobledger.eventbus import EventBus
from jobledger.store import Backend
from jobledger.workers import store_resource

from .arguments import UserArg, _actor, _as_user, _count, _endings
from .queries import Queries

__all__ = ["Administration"]


class Administration:
    """Control of jobs, marks and resources on one log through its bus; reads
    back through ``queries``. Each method's contract is that of the
    :class:`jobledger.Ledger` method of its name."""

    def __init__(
        self,
        log: Backend,
        bus: EventBus,
        *,
        queries: Queries,
        content: ContentStore,
        ids: IdFactory,
        clock: Clock,
        check_open: Callable[[], None],
    ) -> None:
        self._log = log
        self._bus = bus
        self._queries = queries
        self._content = content
        self._ids = ids
        self._clock = clock
        self._check_open = check_open

    # -- jobs --------------------------------------------------------------

    async def _control(self, command: Command, user: UserArg) -> Job:
        """Send a control command for a job the caller owns; the job after it
        (``NotFound`` if a delete got there in between)."""
        job_id: str = command.job_id  # type: ignore[attr-defined]
        await self._queries.get(job_id, user=user)
        await self._bus.send(command)
        job = await self._log.get_job(job_id)
        if job is None:
            raise NotFound("job", job_id)
        return job

    @staticmethod
    def _actor(user: UserArg) -> str:
        owner = _as_user(user)
        return owner.id if owner is not None else SYSTEM_USER.id

    async def cancel(self, job_id: str, *, user: UserArg = None, reason: str | None = None) -> Job:
        return await self._control(
            JobCancel(job_id=job_id, reason=reason, actor=self._actor(user), correlation_id=job_id),
            user,
        )

    async def suspend(self, job_id: str, *, user: UserArg = None) -> Job:
        return await self._control(
            JobSuspend(job_id=job_id, actor=self._actor(user), correlation_id=job_id), user
        )

    async def resume(self, job_id: str, *, user: UserArg = None) -> Job:
        return await self._control(
            JobResume(job_id=job_id, actor=self._actor(user), correlation_id=job_id), user
        )

    async def retry(self, job_id: str, *, user: UserArg = None, reason: str | None = None) -> Job:
        return await self._control(
            JobRetry(job_id=job_id, reason=reason, actor=self._actor(user), correlation_id=job_id),
            user,
        )

    async def delete(self, job_id: str, *, user: UserArg = None) -> None:
        await self._queries.get(job_id, user=user)
        await self._bus.send(
            JobDelete(job_id=job_id, actor=self._actor(user), correlation_id=job_id)
        )

    async def cleanup(
        self,
        older_than: timedelta | datetime,
        *,
        batch: int = 500,
        statuses: Iterable[JobStatus | str] | None = None,
    ) -> int:
        self._check_open()
        only = None if statuses is None else _endings(statuses)
        if isinstance(older_than, datetime) and older_than.tzinfo is not None:
            cutoff = older_than
        elif isinstance(older_than, timedelta) and older_than >= timedelta(0):
            try:
                cutoff = self._clock.now() - older_than
            except OverflowError:
                raise ValidationError(
                    "an age that reaches before year 1 finds nothing to delete", field="older_than"
                ) from None
        else:
            raise ValidationError("must be an aware datetime or an age >= 0", field="older_than")
        batch = _count(batch, "batch")
        deleted = 0
        while True:
            jobs = await self._log.finished_before(cutoff, batch, only)
            if not jobs:
                return deleted
            results = await asyncio.gather(
                *(
                    self._bus.send(
                        JobDelete(job_id=j.id, actor="system:cleanup", correlation_id=j.id)
                    )
                    for j in jobs
                ),
                return_exceptions=True,
            )
            done = sum(1 for r in results if not isinstance(r, BaseException))
            deleted += done
            if done == 0:
                return deleted

    # -- marks and resources (the application's to guard: no user) --------

    async def create_mark(
        self,
        resource_id: str,
        annotation: Annotation | Mapping[str, Any],
        *,
        actor: str = "system",
        mark_id: str | None = None,
    ) -> Mark:
        self._check_open()
        mark_id = mark_id or self._ids.make("mark", to_ms(self._clock.now()))
        await self._bus.send(
            MarkCreate(
                mark_id=mark_id,
                resource_id=resource_id,
                annotation=annotation_json(annotation),
                actor=_actor(actor),
            )
        )
        return await self._queries.mark(mark_id)

    async def update_mark_body(
        self, mark_id: str, operations: Sequence[BodyOperation], *, actor: str = "system"
    ) -> Mark:
        self._check_open()
        if isinstance(operations, str | bytes) or not isinstance(operations, Iterable):
            raise ValidationError("must be a sequence of body operations", field="operations")
        await self._bus.send(
            MarkUpdateBody(mark_id=mark_id, operations=list(operations), actor=_actor(actor))
        )
        return await self._queries.mark(mark_id)

    async def delete_mark(self, mark_id: str, *, actor: str = "system") -> None:
        self._check_open()
        await self._bus.send(MarkDelete(mark_id=mark_id, actor=_actor(actor)))

    async def create_resource(
        self,
        name: str,
        content: bytes | str,
        *,
        media_type: str = "text/markdown",
        actor: str = "system",
        resource_id: str | None = None,
    ) -> Resource:
        self._check_open()
        stored = await store_resource(
            self._content,
            self._bus,
            content,
            resource_id=resource_id or self._ids.make("res", to_ms(self._clock.now())),
            name=name,
            media_type=media_type,
            actor=_actor(actor),
        )
        return await self._queries.resource(stored)
