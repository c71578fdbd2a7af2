"""What a worker asks a model for, and what it gets back: the
:class:`InferenceClient` protocol, a :class:`Generation` with its
:class:`Usage`, and a client's :class:`InferenceStatistics`.

Two clients implement the protocol: :class:`~jobledger.annotations.OpenAIClient`,
for any server that speaks OpenAI's chat-completions API (llama.cpp, vLLM,
Ollama, hosted services; it needs the ``openai`` extra, ``httpx``), and
:class:`~jobledger.annotations.OfflineClient`, a deterministic extractive
stand-in that needs no model at all (``offline = True``). This module imports
neither, so the offline demo runs without httpx installed.

Every failure of a client is an :class:`~jobledger.annotations.InferenceError`;
its ``retryable`` tells the worker runner whether the job may be retried (a
timeout, a 429 or a 5xx) or fails at once (a wrong key or model, a malformed
reply).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import msgspec

from jobledger.core import ValidationError

__all__ = ["Generation", "InferenceClient", "InferenceStatistics", "Usage"]


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """What one generation cost and how it ended, as the server reported it.

    Token counts are ``None`` when the server did not report them (the
    offline client counts whitespace-separated words instead of tokens).
    ``model`` is the model that answered (the server's name for it);
    ``finish_reason`` is ``"stop"`` for a complete answer, ``"length"`` when
    ``max_tokens`` cut it short, or whatever else the server said.
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    model: str
    finish_reason: str | None = None


class Generation(msgspec.Struct, frozen=True, kw_only=True):
    """A model's answer with its :class:`Usage`.

    ``truncated`` is True exactly when ``usage.finish_reason == "length"``:
    the text is what the model wrote before ``max_tokens`` ran out. Building
    one where the two disagree raises ``ValidationError``.
    """

    text: str
    usage: Usage
    truncated: bool

    def __post_init__(self) -> None:
        if self.truncated != (self.usage.finish_reason == "length"):
            raise ValidationError(
                "must be True exactly when usage.finish_reason is 'length'", field="truncated"
            )


@runtime_checkable
class InferenceClient(Protocol):
    """What a worker needs of a model.

    ``name`` is what results and marks record as their generator; ``offline``
    is True for a client that runs no model (its answers are extractive, see
    :class:`~jobledger.workers.offline.OfflineClient`). Both methods raise
    :class:`~jobledger.core.errors.InferenceError` when no usable answer came,
    and ``ValidationError`` for a ``max_tokens`` below 1 or a negative or
    non-finite ``temperature``; they never return an empty string.
    """

    name: str
    offline: bool

    async def generate_text(self, prompt: str, *, max_tokens: int, temperature: float) -> str:
        """The answer to ``prompt``: at most ``max_tokens`` tokens of text."""
        ...

    async def generate(self, prompt: str, *, max_tokens: int, temperature: float) -> Generation:
        """The answer to ``prompt`` with its usage and whether it was truncated."""
        ...


class InferenceStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A client's counts since it was made: ``requests`` sent over HTTP (each
    try counts), ``retries`` among them, ``generations`` answered, ``failures``
    (calls that raised), ``truncated`` answers, and the tokens reported."""

    requests: int
    retries: int
    generations: int
    failures: int
    truncated: int
    prompt_tokens: int
    completion_tokens: int


def _check_request(max_tokens: int, temperature: float) -> None:
    """Raise ``ValidationError`` unless ``max_tokens >= 1`` and ``temperature``
    is finite and not negative."""
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValidationError(f"must be an int >= 1, got {max_tokens!r}", field="max_tokens")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not math.isfinite(temperature)
        or temperature < 0
    ):
        raise ValidationError(
            f"must be a finite number >= 0, got {temperature!r}", field="temperature"
        )
