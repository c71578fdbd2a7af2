"""The read-model values: users, jobs, progress, leases and marks.

All are frozen, keyword-only msgspec Structs. They are what a projection of
the event log produces and what the public API returns.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec

from .holder import Holder
from .status import JobStatus, is_terminal

__all__ = [
    "DEFAULT_MAX_RECOVERIES",
    "SYSTEM_USER",
    "Asset",
    "Job",
    "Lease",
    "Mark",
    "Progress",
    "Queue",
    "Resource",
    "RetryPolicy",
    "User",
]


class User(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """Who a job belongs to. ``id`` is what ownership checks compare.

    ``name``, ``email`` and ``domain`` travel with the job so workers can name
    the creator of what they make (for example a W3C Agent for annotations);
    ``tenant`` scopes a user inside a multi-tenant application.
    """

    id: str
    name: str | None = None
    email: str | None = None
    domain: str | None = None
    tenant: Annotated[str, msgspec.Meta(min_length=1)] | None = None


SYSTEM_USER = User(id="system")
"""The user of jobs submitted without one."""

DEFAULT_MAX_RECOVERIES = 3
"""How many times a job is recovered from a lost worker (its lease expired,
or its holder died) before it fails as a job that kills its workers."""


class Progress(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """The last progress a worker reported for a job.

    ``percent`` is 0-100. ``processed`` and ``total`` count items when the work
    is countable; ``stage`` and ``message`` are free text for people.
    """

    percent: float = 0.0
    stage: str | None = None
    message: str | None = None
    processed: int | None = None
    total: int | None = None
    eta: datetime | None = None
    checkpoint: dict[str, Any] | None = None


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """How long to wait before retry number ``n`` (1, 2, …) of a failed job.

    Exponential backoff with full jitter and a cap: the delay is drawn
    uniformly from ``[0, min(max_delay, base_delay * factor ** (n - 1))]``.
    The draw is a hash of the job id and attempt, so it is spread across jobs
    but the same on every replay. ``jitter=False`` takes the upper bound.
    """

    base_delay: float = 1.0
    max_delay: float = 300.0
    factor: float = 2.0
    jitter: bool = True


class Lease(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """A running job's claim: which worker holds it, for which attempt, until
    when; ``granted_at`` is when that expiry was granted (the claim or the
    last heartbeat), on the clock of the process that granted it, so
    ``expires_at - granted_at`` is the lease's length whatever other clocks
    say. ``holder`` names the process holding it (host, pid, start time), so
    a ledger opened on the same host can prove it dead and recover the job
    at once (``None`` in leases written before holders were recorded).
    ``started_event_id`` is the id of the ``job.started`` event that began
    the attempt and ``granted_event_id`` the id of the event that granted
    the current expiry (that one or the last ``job.lease_renewed``): what the
    attempt's reports and the sweeper's expiries name as their cause."""

    worker: str
    attempt: int
    expires_at: datetime
    granted_at: datetime | None = None
    holder: Holder | None = None
    started_event_id: str | None = None
    granted_event_id: str | None = None


class Job(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A job as the log says it is now.

    ``version`` is the version of the last event in the job's stream; a claim
    (``job:start``) must name it. ``created_seq`` is the log position of
    ``job.created`` and orders jobs of equal priority (FIFO). ``attempt``
    counts claims: 0 while never started, 1 for the first run, and so on
    (a resume after a suspend is a new attempt too). ``failures`` counts the
    attempts that failed; a job is retried while ``failures <= max_retries``,
    so it fails for good on failure number ``max_retries + 1``. ``error`` is
    the last error (kept while a retry is scheduled, cleared on success). ``cancel_requested`` and
    ``suspend_requested`` are set while a running job is asked to stop.
    ``recoveries`` counts the attempts whose worker was lost (its lease
    expired): such an attempt spends no retry; the job fails once
    ``recoveries`` would exceed ``max_recoveries``.
    ``stop_requested_event_id`` is the id of the ``job.cancel_requested`` (or
    ``job.suspend_requested``) event that stands: the cause the worker's
    confirmation names.
    """

    id: str
    job_type: str
    status: JobStatus
    params: dict[str, Any]
    user: User
    priority: int = 0
    run_at: datetime | None = None
    max_retries: int = 0
    max_recoveries: int = DEFAULT_MAX_RECOVERIES
    timeout: float | None = None
    idempotency_key: str | None = None
    queue: str = "default"
    suspendable: bool = False
    retry: RetryPolicy | None = None
    attempt: int = 0
    failures: int = 0
    recoveries: int = 0
    progress: Progress | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    lease: Lease | None = None
    cancel_requested: bool = False
    cancel_reason: str | None = None
    suspend_requested: bool = False
    stop_requested_event_id: str | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    version: int
    created_seq: int

    @property
    def is_terminal(self) -> bool:
        """True once the job can no longer change."""
        return is_terminal(self.status)

    @property
    def deadline(self) -> datetime | None:
        """When the running attempt times out (``started_at + timeout``), if it can."""
        if self.timeout is None or self.started_at is None or self.lease is None:
            return None
        return self.started_at + timedelta(seconds=self.timeout)

    @property
    def retries_left(self) -> int:
        """How many more times the job may be retried after a failure."""
        return max(0, self.max_retries - self.failures)


class Mark(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An annotation on a resource (a document), usually made by a job.

    ``annotation`` is the W3C annotation's content as stored (the JSON form of
    :class:`~jobledger.core.annotations.Annotation`; free-form JSON in marks
    written before annotations were W3C);
    ``job_id`` names the job that made it, if any; ``created_seq`` is the log
    position of ``mark.created`` and orders a resource's marks.
    """

    id: str
    resource_id: str
    annotation: dict[str, Any]
    job_id: str | None = None
    created_by: str
    created_at: datetime
    version: int
    created_seq: int

    @property
    def motivation(self) -> str | None:
        """Why the mark was made (W3C motivation: ``highlighting``, ``commenting`` …)."""
        value = self.annotation.get("motivation")
        return value if isinstance(value, str) else None

    @property
    def exact(self) -> str | None:
        """The text the mark quotes (the ``exact`` of its first
        ``TextQuoteSelector``), if it has one."""
        selector = self._selector("TextQuoteSelector")
        exact = selector.get("exact") if selector else None
        return exact if isinstance(exact, str) else None

    @property
    def span(self) -> tuple[int, int] | None:
        """The ``(start, end)`` of its first ``TextPositionSelector``, if it has one."""
        selector = self._selector("TextPositionSelector")
        if selector is None:
            return None
        start, end = selector.get("start"), selector.get("end")
        return (start, end) if isinstance(start, int) and isinstance(end, int) else None

    def _selector(self, kind: str) -> dict[str, Any] | None:
        """The first selector of type ``kind`` of the mark's targets (a target
        and a selector may each be one or a list, as the W3C model has them)."""
        targets = self.annotation.get("target")
        for target in targets if isinstance(targets, list) else [targets]:
            if not isinstance(target, dict):
                continue
            selectors = target.get("selector", [])
            for selector in selectors if isinstance(selectors, list) else [selectors]:
                if isinstance(selector, dict) and selector.get("type") == kind:
                    return selector
        return None


class Asset(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A file a job produced: where it is (``url``, ``storage_path`` relative to
    the asset root), what it is (``asset_type``) and how big (``size`` bytes)."""

    id: str
    job_id: str
    asset_type: str
    url: str | None = None
    storage_path: str
    size: int
    created_by: str
    created_at: datetime
    created_seq: int


class Resource(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A document jobledger stores (for example one a generation job wrote):
    its ``name``, ``media_type``, and the ``digest`` (``sha256:…``) and
    ``size`` (bytes) of its content, kept content-addressed beside the log.
    ``job_id`` names the job that made it, if a job did."""

    id: str
    name: str
    media_type: str
    digest: str
    size: int
    job_id: str | None = None
    created_by: str
    created_at: datetime
    created_seq: int


class Queue(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A queue whose capacity the log records (``queue.configured``): at most
    ``capacity`` of its jobs run at once, across every process and host that
    shares the log (``None``: no limit). ``running`` is how many of its jobs
    run now; ``configured_seq`` the ``seq`` of the event that last set the
    capacity. A queue never configured has no record: it is unbounded."""

    name: str
    capacity: int | None = None
    running: int = 0
    configured_seq: int = 0

    @property
    def full(self) -> bool:
        """Whether a job of this queue may not start now."""
        return self.capacity is not None and self.running >= self.capacity
