"""The job-type registry: what each job type takes, gives, and how it runs.

A :class:`JobType` names a type and its rules: the msgspec Struct its params
must fit (checked at submit: a bad param is a ``ValidationError`` naming the
field, and nothing is written), the type of its result, its timeout, retries
and retry policy, the queue it runs in, and whether it can be suspended.
The rules are resolved at submit and written into ``job.created``, so
deciding and replaying never need the registry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from .commands import field_error
from .errors import ValidationError
from .models import DEFAULT_MAX_RECOVERIES, RetryPolicy

__all__ = ["JobType", "Registry", "Resolved", "convert_params"]


class JobType(msgspec.Struct, frozen=True, kw_only=True):
    """A job type and its rules. Only ``name`` is required.

    ``params`` and ``result`` are msgspec Struct types (or ``None`` for free
    JSON objects). ``timeout`` is seconds per attempt; ``max_retries`` counts
    retries after the first attempt; ``max_recoveries`` counts the times a
    job is recovered from a lost worker before it fails; ``queue`` names the queue whose
    capacity the type's jobs share.
    """

    name: str
    description: str = ""
    params: type[msgspec.Struct] | None = None
    result: type[msgspec.Struct] | None = None
    timeout: float | None = None
    max_retries: int = 0
    max_recoveries: int = DEFAULT_MAX_RECOVERIES
    retry: RetryPolicy | None = None
    queue: str = "default"
    suspendable: bool = False


class Resolved(msgspec.Struct, frozen=True, kw_only=True):
    """What a submission becomes once its type's rules are applied."""

    params: dict[str, Any]
    timeout: float | None
    max_retries: int
    max_recoveries: int
    retry: RetryPolicy | None
    queue: str
    suspendable: bool


def convert_params(params: Any, to: type[msgspec.Struct], field: str = "params") -> Any:
    """Convert ``params`` to the Struct ``to``; ``ValidationError`` names the bad field."""
    try:
        return msgspec.convert(params, to, from_attributes=not isinstance(params, Mapping))
    except msgspec.ValidationError as exc:
        raise field_error(exc, field) from exc


class Registry:
    """The job types a ledger knows. Registering twice with the same rules is a no-op."""

    def __init__(self, types: Iterable[JobType] = ()) -> None:
        self._types: dict[str, JobType] = {}
        for job_type in types:
            self.register(job_type)

    def register(self, job_type: JobType) -> None:
        """Add a type. Raises ``ValidationError`` if another with that name differs."""
        known = self._types.get(job_type.name)
        if known is not None and known != job_type:
            raise ValidationError(
                f"job type {job_type.name!r} is registered with other rules", field="job_type"
            )
        self._types[job_type.name] = job_type

    def get(self, name: str) -> JobType | None:
        return self._types.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def all(self) -> list[JobType]:
        """Every registered type, by name."""
        return [self._types[name] for name in sorted(self._types)]

    def resolve(
        self,
        name: str,
        params: Any,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        max_recoveries: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> Resolved:
        """Validate ``params`` against the type (if registered) and merge the
        per-job overrides over the type's rules."""
        job_type = self._types.get(name) or JobType(name=name)
        if job_type.params is not None:
            params = msgspec.to_builtins(convert_params(params, job_type.params))
        elif isinstance(params, msgspec.Struct):
            params = msgspec.to_builtins(params)
        if params is None:
            params = {}
        if type(params) is not dict and not isinstance(params, Mapping):  # (dict: the fast way)
            raise ValidationError("must be a mapping or a msgspec Struct", field="params")
        return Resolved(
            params=dict(params),
            timeout=job_type.timeout if timeout is None else timeout,
            max_retries=job_type.max_retries if max_retries is None else max_retries,
            max_recoveries=(job_type.max_recoveries if max_recoveries is None else max_recoveries),
            retry=retry or job_type.retry,
            queue=job_type.queue,
            suspendable=job_type.suspendable,
        )
