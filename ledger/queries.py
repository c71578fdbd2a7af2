"""Queries: what the committed read model says (jobs, their history and
assets, marks, resources and their content), checked for ownership, never
writing."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from jobledger.core import (
    Asset,
    ContentStore,
    Envelope,
    Job,
    JobCreated,
    JobStatus,
    Mark,
    NotFound,
    Resource,
    ValidationError,
    to_jsonld,
)
from jobledger.core.w3c import check_base_iri
from jobledger.store import Backend

from .arguments import (
    _STATUS_NAMES,
    UserArg,
    _as_user,
    _count,
    _id,
    _optional_text,
    _owns,
    _owns_user,
    _seq,
)

__all__ = ["JobPage", "Queries"]


class JobPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of ``Ledger.list``: iterate it for its jobs; pass ``cursor`` for the next.

    ``cursor`` is ``None`` on the last page.
    """

    jobs: tuple[Job, ...]
    cursor: int | None

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)


class Queries:
    """Reads of one log's read model and its content store. Each method's
    contract is that of the :class:`jobledger.Ledger` method of its name."""

    def __init__(self, log: Backend, content: ContentStore, check_open: Callable[[], None]) -> None:
        self._log = log
        self._content = content
        self._check_open = check_open

    async def get(self, job_id: str, *, user: UserArg = None) -> Job:
        self._check_open()
        owner = _as_user(user)
        job = await self._log.get_job(_id(job_id, "job_id"))
        if job is None or not _owns(job, owner):
            raise NotFound("job", job_id)
        return job

    async def list(
        self,
        *,
        user: UserArg = None,
        status: JobStatus | str | None = None,
        job_type: str | None = None,
        limit: int = 100,
        cursor: int | None = None,
    ) -> JobPage:
        self._check_open()
        owner = _as_user(user)
        if status is not None:
            if not isinstance(status, str) or status not in _STATUS_NAMES:
                statuses = ", ".join(_STATUS_NAMES)
                raise ValidationError(f"must be one of {statuses}", field="status")
            status = JobStatus(status)
        limit = _count(limit, "limit")
        job_type = _optional_text(job_type, "job_type")
        if cursor is not None:
            cursor = _seq(cursor, "cursor")
        jobs = await self._log.list_jobs(
            user_id=None if owner is None else owner.id,
            tenant=None if owner is None else owner.tenant,
            status=status,
            job_type=job_type,
            before_seq=cursor,
            limit=limit + 1,
        )
        more = len(jobs) > limit
        page = tuple(jobs[:limit])
        return JobPage(jobs=page, cursor=page[-1].created_seq if more and page else None)

    async def history(self, job_id: str, *, user: UserArg = None) -> builtins.list[Envelope]:
        self._check_open()
        owner = _as_user(user)
        events = await self._log.stream(_id(job_id, "job_id"))
        created = events[0].data if events else None
        if not isinstance(created, JobCreated) or not _owns_user(created.user, owner):
            raise NotFound("job", job_id)
        return events

    async def assets(self, job_id: str, *, user: UserArg = None) -> builtins.list[Asset]:
        await self.get(job_id, user=user)
        return await self._log.assets_of(job_id)

    async def head(self) -> int:
        self._check_open()
        return (await self._log.head()).seq

    # -- marks and resources (the application's to guard: no user) ------

    async def marks(self, resource_id: str) -> builtins.list[Mark]:
        self._check_open()
        return await self._log.marks_of(_id(resource_id, "resource_id"))

    async def mark(self, mark_id: str) -> Mark:
        self._check_open()
        found = await self._log.get_mark(_id(mark_id, "mark_id"))
        if found is None:
            raise NotFound("mark", mark_id)
        return found

    async def annotations(
        self, resource_id: str, *, base_iri: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        check_base_iri(base_iri)
        return [to_jsonld(m, base_iri=base_iri) for m in await self.marks(resource_id)]

    async def resource(self, resource_id: str) -> Resource:
        self._check_open()
        found = await self._log.get_resource(_id(resource_id, "resource_id"))
        if found is None:
            raise NotFound("resource", resource_id)
        return found

    async def resources(self, *, after_seq: int = 0, limit: int = 100) -> builtins.list[Resource]:
        self._check_open()
        limit = _count(limit, "limit")
        after_seq = _seq(after_seq, "after_seq")
        return await self._log.list_resources(after_seq=after_seq, limit=limit)

    async def content(self, resource_id: str) -> bytes:
        found = await self.resource(resource_id)
        return await self._content.get(found.digest)
