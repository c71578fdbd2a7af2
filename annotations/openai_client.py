"""The OpenAI-compatible client: :class:`OpenAIClient` speaks the
chat-completions API over httpx (llama.cpp, vLLM, Ollama, hosted services).

httpx is the ``openai`` extra (``pip install 'jobledger[openai]'``); nothing
else of jobledger imports this module, so the engine and the offline demo
run without it. Every failure is an
:class:`~jobledger.annotations.InferenceError` whose ``retryable`` says
whether asking again may help.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from jobledger.core import ValidationError

from .errors import InferenceError
from .inference import Generation, InferenceStatistics, Usage, _check_request

__all__ = ["OpenAIClient"]


Sleep = Callable[[float], Awaitable[None]]

# Statuses worth asking again: the server is busy, restarting or overloaded.
_RETRY_STATUSES = frozenset({408, 429})
_MAX_BODY_IN_ERROR = 300


class OpenAIClient:
    """A client for an OpenAI-compatible chat-completions server, over httpx.

    Each call POSTs ``{base_url}/chat/completions`` with one user message
    (``messages=[{"role": "user", "content": prompt}]``), ``model``,
    ``max_tokens`` and ``temperature``, and an ``Authorization: Bearer`` header
    when there is an ``api_key`` (local servers need none).

    Configuration comes from the arguments, else from ``env`` (default
    ``os.environ``): ``base_url`` from ``JOBLEDGER_MODEL_URL`` then
    ``OPENAI_BASE_URL``; ``model`` from ``JOBLEDGER_MODEL`` then
    ``OPENAI_MODEL``; ``api_key`` from ``OPENAI_API_KEY``. A missing URL or
    model is a ``ValidationError`` (there is no default server: nothing is
    sent anywhere the embedder did not name). ``name`` defaults to the model.

    Failures: a timeout (``timeout`` seconds for connecting, and for each read
    or write), a connection error, HTTP 408, 429 or any 5xx is tried again
    up to ``max_retries`` times, waiting ``backoff * 2**n`` seconds or the
    ``Retry-After`` the server sent, either way at most ``max_backoff``. When
    the tries run out the call raises ``InferenceError`` with
    ``retryable=True``, so the job itself can be retried later. Any other 4xx
    and any unusable reply (including JSON nested too deeply to decode) raise
    ``InferenceError`` with ``retryable=False`` at once. ``sleep`` is how the
    client waits between tries (inject one in tests). The API key never
    appears in errors, logs or ``repr``.

    Use it as an async context manager, or call :meth:`close`; a closed
    client raises ``InferenceError`` (not retryable). Pass ``http_client`` to
    share an ``httpx.AsyncClient`` (the caller then closes it).
    """

    offline = False

    def __init__(
        self,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        name: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        sleep: Sleep | None = None,
        env: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        env = os.environ if env is None else env
        url = base_url or env.get("JOBLEDGER_MODEL_URL") or env.get("OPENAI_BASE_URL")
        if not url:
            raise ValidationError(
                "no model server: pass base_url or set JOBLEDGER_MODEL_URL (or OPENAI_BASE_URL)",
                field="base_url",
            )
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ValidationError(f"{url!r} is not a URL: {exc}", field="base_url") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValidationError(
                f"must be an http(s) URL with a host, got {url!r}", field="base_url"
            )
        chosen = model or env.get("JOBLEDGER_MODEL") or env.get("OPENAI_MODEL")
        if not chosen:
            raise ValidationError(
                "no model: pass model or set JOBLEDGER_MODEL (or OPENAI_MODEL)", field="model"
            )
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ValidationError(f"must be a positive number, got {timeout!r}", field="timeout")
        if max_retries < 0:
            raise ValidationError(f"must be >= 0, got {max_retries!r}", field="max_retries")
        if backoff < 0 or max_backoff < 0:
            raise ValidationError("backoff and max_backoff must be >= 0", field="backoff")
        self.base_url = url.rstrip("/")
        self.model = chosen
        self.name = name or chosen
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._api_key = api_key if api_key is not None else env.get("OPENAI_API_KEY") or None
        self._sleep: Sleep = sleep if sleep is not None else asyncio.sleep
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient()
        self._closed = False
        self._counts = dict.fromkeys(InferenceStatistics.__struct_fields__, 0)

    def __repr__(self) -> str:
        return f"OpenAIClient(base_url={self.base_url!r}, model={self.model!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP connections (unless ``http_client`` was passed in).
        Idempotent; later calls raise ``InferenceError``."""
        if self._closed:
            return
        self._closed = True
        if self._owns_http:
            await self._http.aclose()

    def statistics(self) -> InferenceStatistics:
        """The client's counts so far (never blocks)."""
        return InferenceStatistics(**self._counts)

    async def generate_text(self, prompt: str, *, max_tokens: int, temperature: float) -> str:
        """The answer's text (possibly cut short by ``max_tokens``: use
        :meth:`generate` to know). Raises as :meth:`generate` does."""
        return (await self.generate(prompt, max_tokens=max_tokens, temperature=temperature)).text

    async def generate(self, prompt: str, *, max_tokens: int, temperature: float) -> Generation:
        """Ask the server; return its first choice with the reported usage.

        Raises ``ValidationError`` for bad arguments, a prompt that cannot be
        UTF-8 (a lone surrogate) among them, with nothing sent; and
        ``InferenceError`` when no usable answer came (see the class docstring
        for which are retryable).
        """
        _check_request(max_tokens, temperature)
        if not isinstance(prompt, str):
            raise ValidationError("must be a str", field="prompt")
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError as exc:  # httpx would raise it untyped while sending
            raise ValidationError(
                f"is not valid Unicode text (a lone surrogate at index {exc.start})",
                field="prompt",
            ) from exc
        if self._closed or self._http.is_closed:
            raise InferenceError(f"{self!r} is closed", retryable=False)
        payload = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        try:
            reply = await self._post_with_retries(payload)
            generation = self._parse(reply)
        except InferenceError:
            self._counts["failures"] += 1
            raise
        self._counts["generations"] += 1
        self._counts["truncated"] += generation.truncated
        self._counts["prompt_tokens"] += generation.usage.prompt_tokens or 0
        self._counts["completion_tokens"] += generation.usage.completion_tokens or 0
        return generation

    async def _post_with_retries(self, payload: dict[str, Any]) -> httpx.Response:
        url = f"{self.base_url}/chat/completions"
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        tries = self.max_retries + 1
        for attempt in range(1, tries + 1):
            failure: InferenceError
            self._counts["requests"] += 1
            try:
                response = await self._http.post(
                    url, json=payload, headers=headers, timeout=httpx.Timeout(self.timeout)
                )
            except httpx.TimeoutException as exc:
                failure = InferenceError(
                    f"POST {url}: no reply within {self.timeout:g} s ({type(exc).__name__})",
                    retryable=True,
                )
                failure.__cause__ = exc
            except httpx.HTTPError as exc:
                failure = InferenceError(f"POST {url}: {type(exc).__name__}: {exc}", retryable=True)
                failure.__cause__ = exc
            else:
                if response.status_code < 400:
                    return response
                failure = _status_error(url, response)
                if not failure.retryable:
                    raise failure
            asked = failure.retry_after
            wait = min(
                asked if asked is not None else self.backoff * 2 ** (attempt - 1),
                self.max_backoff,
            )
            if attempt == tries:
                detail = f"after {attempt} tries" if attempt > 1 else "on the first try"
                raise InferenceError(
                    f"{failure} ({detail})",
                    retryable=True,
                    status=failure.status,
                    retry_after=failure.retry_after,
                ) from failure.__cause__
            self._counts["retries"] += 1
            await self._sleep(wait)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _parse(self, response: httpx.Response) -> Generation:
        where = f"the reply of {self.base_url}/chat/completions"
        try:
            body = json.loads(response.content)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # too deep: unusable
            raise InferenceError(
                f"{where} is not valid JSON: {_snippet(response.text)}", retryable=False
            ) from exc
        if not isinstance(body, dict):
            raise InferenceError(f"{where} is not a JSON object", retryable=False)
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices:
            raise InferenceError(f"{where} has no choices", retryable=False)
        choice = choices[0]
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise InferenceError(f"{where} has no choices[0].message", retryable=False)
        content = message.get("content")
        if not isinstance(content, str):
            raise InferenceError(f"{where} has no choices[0].message.content", retryable=False)
        finish = choice.get("finish_reason")
        finish_reason = finish if isinstance(finish, str) else None
        if not content.strip():
            raise InferenceError(
                f"{where} has an empty content (finish_reason={finish_reason!r})",
                retryable=False,
            )
        reported = body.get("usage")
        counts = reported if isinstance(reported, dict) else {}
        model = body.get("model")
        usage = Usage(
            prompt_tokens=_count(counts.get("prompt_tokens")),
            completion_tokens=_count(counts.get("completion_tokens")),
            total_tokens=_count(counts.get("total_tokens")),
            model=model if isinstance(model, str) and model else self.model,
            finish_reason=finish_reason,
        )
        return Generation(text=content, usage=usage, truncated=finish_reason == "length")


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= _MAX_BODY_IN_ERROR else text[:_MAX_BODY_IN_ERROR] + "…")


def _status_error(url: str, response: httpx.Response) -> InferenceError:
    """The error for an HTTP error status, with the server's own message if it
    sent one in OpenAI's ``{"error": {"message": ...}}`` shape."""
    status = response.status_code
    detail = _snippet(response.text)
    try:
        body = json.loads(response.content)
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            message = body["error"].get("message")
            if isinstance(message, str):
                detail = _snippet(message)
    except (ValueError, UnicodeDecodeError, RecursionError):
        pass
    retryable = status in _RETRY_STATUSES or status >= 500
    return InferenceError(
        f"POST {url}: HTTP {status}: {detail}",
        retryable=retryable,
        status=status,
        retry_after=_retry_after(response.headers.get("retry-after")) if retryable else None,
    )


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number, or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None
