"""A fake OpenAI-compatible model server with recorded replies, for tests and examples.

It is a real HTTP server (stdlib ``http.server``, in a thread) on 127.0.0.1
with an ephemeral port, answering ``POST /v1/chat/completions``. Nothing of
httpx or of jobledger is mocked: the client under test talks HTTP to it.

Which reply a request gets: the first rule added with :meth:`ModelServer.on`
whose text occurs in the prompt; else the next reply queued with
:meth:`ModelServer.queue`; else the ``default`` (a function of the prompt),
which is by default an HTTP 500 saying no reply was scripted, so a test that
asks more than it scripted fails loudly. Every request is recorded
(:attr:`ModelServer.requests`): path, headers and JSON body.

Replies: :func:`answer` (a normal reply), :func:`truncated` (finish_reason
"length"), :func:`malformed` (a body that is not JSON), :func:`no_content`,
:func:`http_error` (any status, optionally with Retry-After), :func:`held`
(no reply until the server closes or :meth:`ModelServer.release` is called:
for timeouts) and :func:`dropped` (the connection closes with no reply).

As a pytest fixture: ``model_server`` in tests/conftest.py. From a script::

    with ModelServer(default=echo) as server:
        client = OpenAIClient(base_url=server.url, model="fake")

Run it alone (``python tests/model_server.py``) to get an echoing server on
a free port until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = [
    "ModelServer",
    "Recorded",
    "Reply",
    "answer",
    "dropped",
    "echo",
    "held",
    "http_error",
    "malformed",
    "no_content",
    "truncated",
]

MODEL = "fake-model"


@dataclass(frozen=True)
class Reply:
    """One scripted reply: a status, a body (bytes as is, anything else as
    JSON), extra headers; ``hold`` waits for release before answering,
    ``drop`` closes the connection without answering."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False
    drop: bool = False


@dataclass(frozen=True)
class Recorded:
    """One request the server got."""

    path: str
    headers: dict[str, str]
    body: Any

    @property
    def prompt(self) -> str:
        """The content of the last message, or "" if the body has none."""
        try:
            return str(self.body["messages"][-1]["content"])
        except (KeyError, IndexError, TypeError):
            return ""


def completion(
    text: str | None,
    *,
    finish_reason: str = "stop",
    model: str = MODEL,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A chat-completions reply body in OpenAI's shape."""
    counted = usage or {
        "prompt_tokens": 7,
        "completion_tokens": len((text or "").split()),
        "total_tokens": 7 + len((text or "").split()),
    }
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
        "usage": counted,
    }


def answer(text: str, *, model: str = MODEL, usage: dict[str, int] | None = None) -> Reply:
    """A complete answer (finish_reason "stop")."""
    return Reply(body=completion(text, model=model, usage=usage))


def truncated(text: str) -> Reply:
    """An answer cut short by max_tokens (finish_reason "length")."""
    return Reply(body=completion(text, finish_reason="length"))


def malformed(body: bytes = b'{"choices": [{"message": ') -> Reply:
    """HTTP 200 with a body that is not JSON."""
    return Reply(body=body)


def no_content() -> Reply:
    """HTTP 200, valid JSON, but the message has no content (null)."""
    return Reply(body=completion(None))


def http_error(
    status: int, message: str = "scripted error", retry_after: str | None = None
) -> Reply:
    """An error status with OpenAI's error body, and a Retry-After if given."""
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return Reply(status=status, body={"error": {"message": message}}, headers=headers)


def held() -> Reply:
    """No answer until the server is released or closed (a client times out)."""
    return Reply(hold=True, body=completion("too late"))


def dropped() -> Reply:
    """The connection is closed without any answer."""
    return Reply(drop=True)


def echo(prompt: str) -> Reply:
    """A default that answers every prompt with ``echo: <prompt>``."""
    return answer(f"echo: {prompt}")


def _unscripted(prompt: str) -> Reply:
    return http_error(500, f"no reply was scripted for {prompt[:60]!r}")


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # many clients connecting at once are queued, not refused


class ModelServer:
    """The fake server; a context manager (see the module docstring)."""

    def __init__(self, default: Callable[[str], Reply] = _unscripted) -> None:
        self._default = default
        self._queue: deque[Reply] = deque()
        self._rules: list[tuple[str, Reply]] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self.requests: list[Recorded] = []
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="fake-model-server", daemon=True
        )
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}/v1"

    def queue(self, *replies: Reply) -> ModelServer:
        """Serve ``replies`` in order, one per request no rule matched."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def on(self, contains: str, reply: Reply) -> ModelServer:
        """Serve ``reply`` to every request whose prompt contains ``contains``."""
        with self._lock:
            self._rules.append((contains, reply))
        return self

    def release(self) -> None:
        """Let every held reply (and any later one) be answered."""
        self._released.set()

    def close(self) -> None:
        """Release held replies, stop serving, and free the port."""
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _choose(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            for contains, reply in self._rules:
                if contains in recorded.prompt:
                    return reply
            if self._queue:
                return self._queue.popleft()
        return self._default(recorded.prompt)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw
                headers = {k.lower(): v for k, v in self.headers.items()}
                recorded = Recorded(path=self.path, headers=headers, body=body)
                if self.path != "/v1/chat/completions":
                    reply = http_error(404, f"no route {self.path}")
                    server.requests.append(recorded)
                else:
                    reply = server._choose(recorded)
                if reply.hold:
                    server._released.wait()
                if reply.drop:
                    self.close_connection = True
                    return
                payload = (
                    reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                )
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (a timeout)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        return Handler


if __name__ == "__main__":
    with ModelServer(default=echo) as running:
        print(f"fake model server at {running.url} (model {MODEL!r}); Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
