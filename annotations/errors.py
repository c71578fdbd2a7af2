"""The application's one error: a model that could not give a usable answer.

:class:`InferenceError` derives from the engine's root, ``JobledgerError``,
so an application catches it with the rest; it is not part of the engine's
tree (``jobledger.core.errors``), which knows nothing of models. The worker
runner learns whether to retry it from its ``retryable`` attribute, as it
does for any exception (see ``docs/lifecycle.md``).
"""

from __future__ import annotations

from jobledger.core import JobledgerError

__all__ = ["InferenceError"]


class InferenceError(JobledgerError):
    """Raised when a model (an inference server) could not give a usable answer.

    ``retryable`` says whether the same request may succeed later: True for a
    timeout, a connection failure, HTTP 429 and 5xx (after the client's own
    bounded retries ran out); False for any other 4xx (a wrong key, model or
    request) and for a reply that is not JSON or lacks ``choices``,
    ``message`` or ``content``. A worker runner fails the job at once, without
    a retry, when ``execute`` raises one with ``retryable=False`` (the engine's
    rule for any exception whose ``retryable`` attribute is False).
    ``status`` is the HTTP status when there was one; ``retry_after`` the
    seconds the server asked to wait, when it said.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
