"""How a run of ``execute`` ends: the report it becomes.

The runner hands :func:`report_of` the job, its context and the finished (or
abandoned) ``execute``; it answers with the one command that tells the
Stower how the attempt ended (see :mod:`jobledger.workers.worker` for the
rules a worker's author relies on). Pure but for a log line: it sends
nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from jobledger.core import (
    Job,
    JobCancel,
    JobComplete,
    JobFail,
    JobPartial,
    JobRelease,
    JobSkip,
    JobSuspend,
    NotFound,
    Registry,
    ValidationError,
    convert_params,
    get_logger,
)

from .worker import JobContext, PartialResult, SkipJob, result_of

__all__ = ["MAX_ERROR", "Report", "report_of", "retryable"]

log = get_logger("workers")

MAX_ERROR = 4000
"""The longest error text a report carries (longer ones are cut)."""

Report = JobComplete | JobFail | JobPartial | JobSkip | JobCancel | JobSuspend | JobRelease
"""The commands that end an attempt."""


def report_of(
    job: Job,
    ctx: JobContext,
    execution: asyncio.Future[Any],
    *,
    timed_out: bool,
    registry: Registry,
) -> Report:
    """The report of ``job``'s attempt, whose ``execute`` is ``execution``:
    a stop asked for wins (``job:cancel``/``job:suspend`` naming the
    request), then a timeout, then how ``execute`` ended (a cancelled or
    abandoned one fails; ``SkipJob``; an exception, retried unless
    :func:`retryable` says not; a ``PartialResult``; else the result, checked
    against the job type's ``result`` Struct if it has one)."""
    common: dict[str, Any] = {
        "job_id": job.id,
        "attempt": ctx.attempt,
        "actor": ctx.actor,
        "correlation_id": job.id,
    }
    if execution.done() and not execution.cancelled():
        execution.exception()  # retrieved whatever ends the job (a stop ignores it)
    # The cause: the stop request that ends the attempt, else its start.
    if ctx.cancel_requested:
        return JobCancel(causation_id=ctx.stop_cause, **common)
    if ctx.suspend_requested:
        return JobSuspend(causation_id=ctx.stop_cause, **common)
    common["causation_id"] = ctx.cause
    if timed_out:
        return JobFail(
            error=f"timed out after {job.timeout:g} s",
            error_type="Timeout",
            timed_out=True,
            **common,
        )
    if not execution.done() or execution.cancelled():  # (not done: abandoned)
        return JobFail(error="execute was cancelled", error_type="Cancelled", **common)
    error = execution.exception()
    if isinstance(error, SkipJob):
        return JobSkip(reason=error.reason[:MAX_ERROR], **common)
    if error is not None:
        log.info("job raised", error=repr(error))
        return JobFail(
            error=(str(error) or type(error).__name__)[:MAX_ERROR],
            error_type=type(error).__name__[:200],
            retryable=retryable(error),
            **common,
        )
    value = execution.result()
    if isinstance(value, PartialResult):
        return JobPartial(result=value.result, error=value.error[:MAX_ERROR], **common)
    try:
        result = result_of(value)
        job_type = registry.get(job.job_type)
        if job_type is not None and job_type.result is not None:
            # The registered result type is the contract: check it, keep its JSON.
            checked = convert_params(result or {}, job_type.result, field="result")
            result = msgspec.to_builtins(checked)
        return JobComplete(result=result, **common)
    except ValidationError as exc:
        return JobFail(error=str(exc), error_type="InvalidResult", retryable=False, **common)


def retryable(error: BaseException) -> bool:
    """Whether a job whose ``execute`` raised ``error`` may be retried: not for
    a ``ValidationError`` or ``NotFound`` (bad or missing input, such as a
    document that is not there: asking again gives the same answer), nor for
    an exception whose ``retryable`` attribute is ``False`` (a
    :class:`NonRetryableError` always; an application's own error when it
    knows, such as a model's reply that is final). Anything else is retried."""
    if isinstance(error, ValidationError | NotFound):
        return False
    return getattr(error, "retryable", True) is not False
